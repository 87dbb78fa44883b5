"""A ``.. fruitclf-settings::`` directive: the table of run settings, rendered from their
one declaration in ``fruitclf.settings``."""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _cell(text: str, *, literal: bool = False) -> nodes.entry:
    paragraph = nodes.paragraph()
    paragraph += nodes.literal(text=text) if literal else nodes.Text(text)
    entry = nodes.entry()
    entry += paragraph
    return entry


class SettingsTable(SphinxDirective):
    """Setting, option, allowed values, default, meaning."""

    def run(self) -> list[nodes.Node]:
        from fruitclf.settings import SETTINGS

        table = nodes.table()
        group = nodes.tgroup(cols=5)
        table += group
        for width in (3, 3, 3, 4, 6):
            group += nodes.colspec(colwidth=width)
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body
        row = nodes.row()
        for title in ("setting", "option", "allowed", "default", "what it does"):
            row += _cell(title)
        head += row
        for setting in SETTINGS.values():
            row = nodes.row()
            row += _cell(setting.name, literal=True)
            row += _cell(setting.flag if setting.commands else "Python only",
                         literal=bool(setting.commands))
            row += _cell(setting.bounds())
            row += _cell(setting.default_text())
            row += _cell(setting.help)
            body += row
        return [table]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("fruitclf-settings", SettingsTable)
    return {"parallel_read_safe": True}
