"""The run report: one list of sections, written as ``report.md`` and as ``report.html``.

Both files come from the same sections, so they say the same things. ``report.html`` is one
self-contained page (figures embedded as PNG data, no scripts, no external files) that reads
on a phone: text wraps, figures scale to the screen, wide tables scroll sideways.
"""

from __future__ import annotations

import dataclasses
import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _html
from ._ownership import RUN_FILE, RUN_FILES

__all__ = ["Block", "Section", "render_html", "render_markdown", "run_sections"]

#: What each file of a run folder holds, by role (the report's "Files" section).
FILE_ROLES = {f.role: f.description for f in RUN_FILES}


@dataclasses.dataclass(frozen=True)
class Block:
    """One piece of a section: ``text`` (a paragraph), ``pre`` (fixed-width text), ``table``
    (``rows``, the first one the header), ``image`` (a figure, by file name) or ``items``."""

    kind: str
    text: str = ""
    rows: Sequence[Sequence[str]] = ()
    alt: str = ""


@dataclasses.dataclass(frozen=True)
class Section:
    """A titled part of the report."""

    title: str
    blocks: Sequence[Block]


def text(value: str) -> Block:
    return Block("text", value)


def pre(value: str) -> Block:
    return Block("pre", value)


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int | None = None
          ) -> Block:
    """A table; with ``digits``, floats are shown with that many decimals."""
    return Block("table", rows=[list(header), *[[_html.cell(v, digits) for v in row]
                                                for row in rows]])


def image(name: str, alt: str) -> Block:
    return Block("image", name, alt=alt)


def items(values: Sequence[str]) -> Block:
    return Block("items", rows=[[v] for v in values])


def run_sections(
    *,
    metrics: Mapping[str, Any],
    data_summary: str,
    test_summary: str | None,
    settings: Mapping[str, Any],
    layers: str,
    test_set: Section | None,
    leakage: Section | None,
    label_errors: Section,
    files: Mapping[str, Path],
    versions: Mapping[str, str],
    unlabeled: Section | None = None,
) -> list[Section]:
    """The sections of a run's report, in order."""
    data = [pre(data_summary)]
    if test_summary is not None:
        data += [text("Test folder:"), pre(test_summary)]
    sections = [
        Section("Results", [text(headline(metrics)),
                            table(("metric", "value"), list(metrics.items()), digits=4)]),
        Section("Data", [*data, image(RUN_FILE["samples"].name, "One image per class")]),
        Section("Settings", [text("Every setting of this run, defaults included:"),
                             table(("setting", "value"), list(settings.items()))]),
        Section("Model", [pre(layers)]),
        Section("Training curves", [
            text("Loss and accuracy per epoch; the marked epoch is the one the saved model "
                 "comes from."),
            image(RUN_FILE["history"].name, "Loss and accuracy")]),
    ]
    if test_set is not None:
        sections.append(test_set)
    if leakage is not None:
        sections.append(leakage)
    if unlabeled is not None:
        sections.append(unlabeled)
    sections.append(label_errors)
    sections.append(Section("Files", [items(
        [f"`{path.name}`: {FILE_ROLES.get(role, role)}" for role, path in files.items()])]))
    sections.append(Section("Versions", [table(("package", "version"),
                                               list(versions.items()))]))
    return sections


#: The metrics a person reads first, in order: the console summary and the notebook show
#: these (when the run has them); ``metrics.json`` has all.
KEY_METRICS = ("val_accuracy", "test_accuracy", "test_accuracy_without_leaked", "test_loss",
               "num_leaked_test_images", "pseudo_labeled_images", "first_model_test_accuracy",
               "first_model_test_accuracy_without_leaked", "best_epoch", "epochs_run",
               "non_finite_epoch", "train_seconds", "images_per_second", "workers",
               "global_batch_size")


def key_metrics(metrics: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``(name, value)`` of the :data:`KEY_METRICS` the run has (not None); a rate that has
    an interval (``{name}_interval``) is shown with it, as text."""
    return [(key, with_interval(metrics, key)) for key in KEY_METRICS
            if metrics.get(key) is not None]


def with_interval(metrics: Mapping[str, Any], key: str) -> Any:
    """``metrics[key]``; a float as text with 4 decimals, followed by its interval when the
    metrics hold one: ``"0.9667 (95% interval 0.8333–0.9941)"``."""
    value, interval = metrics.get(key), metrics.get(f"{key}_interval")
    if not isinstance(value, float):
        return value
    if not interval:
        return _html.cell(value)
    return f"{_html.cell(value)} (95% interval {_html.cell(list(interval))})"


def headline(metrics: Mapping[str, Any]) -> str:
    """The result in one sentence, as the report opens with it: the test (or validation)
    accuracy and the training time."""
    parts = []
    if metrics.get("test_accuracy") is not None:
        parts.append(f"Test accuracy {with_interval(metrics, 'test_accuracy')} on "
                     f"{metrics.get('num_test_images', '?')} images")
    elif metrics.get("val_accuracy") is not None:
        parts.append(f"Validation accuracy {metrics['val_accuracy']:.4f} on "
                     f"{metrics.get('num_val_images', '?')} images")
    parts.append(f"trained {metrics.get('epochs_run', '?')} epochs on "
                 f"{metrics.get('num_train_images', '?')} images in "
                 f"{float(metrics.get('train_seconds') or 0):.0f} s")
    sentence = "; ".join(parts)
    sentence = sentence[0].upper() + sentence[1:] + "."
    if metrics.get("non_finite_epoch"):
        epoch = int(metrics["non_finite_epoch"])
        kept = f"the weights of epoch {epoch - 1}" if epoch > 1 else "its initial weights"
        sentence += (f" Training stopped at epoch {epoch}: the loss or the weights became "
                     "infinite or NaN (most often a learning rate far too high); the model "
                     f"keeps {kept}, the last finite ones.")
    return sentence


def render_markdown(title: str, sections: Sequence[Section]) -> str:
    """The report as Markdown (figures linked by file name)."""
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            lines += [*_markdown_block(block), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _markdown_block(block: Block) -> list[str]:
    if block.kind == "text":
        return [block.text]
    if block.kind == "pre":
        return ["```", block.text.rstrip("\n"), "```"]
    if block.kind == "image":
        return [f"![{block.alt}]({block.text})"]
    if block.kind == "items":
        return [f"- {row[0]}" for row in block.rows]
    header, *rows = block.rows
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(row) + " |" for row in rows]]


_STYLE = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:62rem;padding:0 1rem 3rem;color:#1f2328;background:#fff}
h1{font-size:1.6rem;margin:1.2rem 0 .4rem}h2{font-size:1.25rem;margin:1.8rem 0 .6rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #d0d7de;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;font-size:.8rem;
line-height:1.35}img{max-width:100%;height:auto;display:block;margin:.6rem 0}
code{background:#f6f8fa;padding:0 .2rem}nav a{margin-right:.8rem;white-space:nowrap}
""".strip()


def render_html(title: str, sections: Sequence[Section], images: Mapping[str, bytes]) -> str:
    """The report as one self-contained HTML page; ``images`` maps figure file names to PNG
    bytes, embedded as data URLs."""
    nav = " ".join(f'<a href="#{_anchor(s.title)}">{html.escape(s.title)}</a>'
                   for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>", f"<nav>{nav}</nav>"]
    for section in sections:
        body.append(f'<h2 id="{_anchor(section.title)}">{html.escape(section.title)}</h2>')
        body += [_html_block(block, images) for block in section.blocks]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _anchor(title: str) -> str:
    return "-".join(title.lower().replace("/", " ").split())


def _inline(value: str) -> str:
    """Escape ``value``; text between backticks becomes ``<code>``."""
    parts = html.escape(value).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_block(block: Block, images: Mapping[str, bytes]) -> str:
    if block.kind == "text":
        return f"<p>{_inline(block.text)}</p>"
    if block.kind == "pre":
        return _html.pre(block.text)
    if block.kind == "image":
        data = images.get(block.text)
        if data is None:
            return f"<p>({html.escape(block.alt)}: {html.escape(block.text)} not found)</p>"
        return _html.image(data, block.alt, title=block.text)
    if block.kind == "items":
        return "<ul>" + "".join(f"<li>{_inline(row[0])}</li>" for row in block.rows) + "</ul>"
    header, *rows = block.rows
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def figure_png(figure: Any, *, dpi: int = 100) -> bytes:
    """A Matplotlib figure as PNG bytes."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    return buffer.getvalue()


def relative(path: str | os.PathLike[str], root: str) -> str:
    """``path`` relative to ``root`` for display, ``?`` when unknown."""
    return os.path.relpath(path, root) if path else "?"
