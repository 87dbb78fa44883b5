"""A ``.. fruitclf-compatibility::`` directive: the table of the last test run on each supported
TensorFlow, rendered from ``docs/compatibility.json`` (written by ``nox -s compat_table``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

TABLE = Path(__file__).resolve().parents[1] / "compatibility.json"
COLUMNS = ("TensorFlow", "Keras", "numpy", "ml_dtypes", "onnx", "TFLite runtime", "tests run",
           "passed", "failed", "skipped", "minutes", "date")


def _cell(text: str) -> nodes.entry:
    entry = nodes.entry()
    entry += nodes.paragraph(text=text)
    return entry


def _row(session: dict[str, Any]) -> list[str]:
    versions = session["versions"]
    litert = versions.get("ai-edge-litert")
    return [versions["tensorflow"], versions["keras"], versions["numpy"],
            versions.get("ml_dtypes") or "-", versions.get("onnx") or "-",
            f"LiteRT {litert}" if litert else "tf.lite.Interpreter",
            session["selection"], str(session["passed"]), str(session["failed"]),
            str(session["skipped"]), f"{session['seconds'] / 60:.1f}", session["date"]]


class CompatibilityTable(SphinxDirective):
    """One row per ``tests`` session of the last matrix run."""

    def run(self) -> list[nodes.Node]:
        self.env.note_dependency(str(TABLE))
        data = json.loads(TABLE.read_text(encoding="utf-8"))
        table = nodes.table()
        group = nodes.tgroup(cols=len(COLUMNS))
        table += group
        for _ in COLUMNS:
            group += nodes.colspec(colwidth=1)
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body
        row = nodes.row()
        for title in COLUMNS:
            row += _cell(title)
        head += row
        for session in data["sessions"]:
            row = nodes.row()
            for text in _row(session):
                row += _cell(text)
            body += row
        caption = nodes.paragraph(text=(
            f"Generated {data['generated']} by nox -s tests compat_table on Python "
            f"{data['python']}, {data['machine']}."))
        return [table, caption]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("fruitclf-compatibility", CompatibilityTable)
    return {"parallel_read_safe": True}
