"""A ``.. fruitclf-cli::`` directive: the CLI reference, rendered from the argparse parser."""

from __future__ import annotations

import argparse
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


class CliReference(SphinxDirective):
    """Render ``fruitclf --help`` and each subcommand's ``--help`` as literal blocks."""

    def run(self) -> list[nodes.Node]:
        from fruitclf.cli import build_parser

        parser = build_parser()
        out: list[nodes.Node] = [nodes.literal_block(text=parser.format_help())]
        for name, sub in _subparsers(parser).items():
            section = nodes.section(ids=[f"cli-{name}"])
            section += nodes.title(text=f"fruitclf {name}")
            section += nodes.literal_block(text=sub.format_help())
            out.append(section)
        return out


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("fruitclf-cli", CliReference)
    return {"parallel_read_safe": True}
