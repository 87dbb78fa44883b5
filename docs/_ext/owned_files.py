"""A ``.. fruitclf-owned-files:: run|evaluation|explanation|learning-curve``
directive: the files a command owns,
rendered from their one declaration in ``fruitclf._ownership``."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


class OwnedFiles(SphinxDirective):
    """A table of file name, phase and what the file holds."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from fruitclf._ownership import (
            CURVE_FILES,
            EVALUATION_FILES,
            EXPLANATION_FILES,
            RUN_FILES,
        )

        files = {"run": RUN_FILES, "evaluation": EVALUATION_FILES,
                 "explanation": EXPLANATION_FILES,
                 "learning-curve": CURVE_FILES}[self.arguments[0]]
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (3, 2, 6):
            group += nodes.colspec(colwidth=width)
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body
        head += self._row(("file", "written", "what it holds"))
        for f in files:
            body += self._row((f.name, f.phase, f.description))
        return [table]

    @staticmethod
    def _row(cells: tuple[str, str, str]) -> nodes.row:
        row = nodes.row()
        for i, text in enumerate(cells):
            paragraph = nodes.paragraph()
            paragraph += nodes.literal(text=text) if i == 0 else nodes.Text(text)
            entry = nodes.entry()
            entry += paragraph
            row += entry
        return row


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("fruitclf-owned-files", OwnedFiles)
    return {"parallel_read_safe": True}
