"""Small, escaped HTML pieces for notebook displays (``_repr_html_``).

Jupyter shows an object's ``_repr_html_`` instead of its ``repr``; fruitclf's results use these
pieces so that a notebook shows what matters first (a sentence, rounded numbers, a short
table), every value escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

__all__ = ["cell", "heading", "image", "paragraph", "pre", "table"]

#: Rows shown in a notebook table before "and N more".
MAX_ROWS = 20


def cell(value: Any, digits: int | None = 4) -> str:
    """A value as text: floats rounded to ``digits`` decimals (as they are with None), an
    interval ``[low, high]`` as ``low–high``, None as a dash. The run report's tables use it
    too."""
    if value is None:
        return "—"
    if isinstance(value, float) and digits is not None:
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple) and len(value) == 2 and all(
            isinstance(v, float) for v in value):  # an interval
        return f"{cell(value[0], digits)}–{cell(value[1], digits)}"
    return str(value)


def heading(text: str, level: int = 4) -> str:
    return f"<h{level}>{html.escape(text)}</h{level}>"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{html.escape(text.rstrip())}</pre>"


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *,
          limit: int = MAX_ROWS) -> str:
    """A table of at most ``limit`` rows (the rest counted below it), cells escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row)
                   + "</tr>" for row in rows[:limit])
    more = (f"<p>… and {len(rows) - limit} more</p>" if len(rows) > limit else "")
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def image(png: bytes, alt: str, title: str | None = None) -> str:
    """A PNG embedded as a data URL (the notebook displays and ``report.html``)."""
    encoded = base64.b64encode(png).decode()
    hover = f' title="{html.escape(title)}"' if title is not None else ""
    return f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(alt)}"{hover}>'
