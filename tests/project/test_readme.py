"""The README's Quickstart stays true: two commands, and CI runs the test one verbatim."""

from __future__ import annotations

import re

from _paths import ROOT


def _quickstart_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_has_exactly_two_commands():
    """Check the Quickstart: one command runs the demo, one runs the tests."""
    commands = _quickstart_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("fruitclf demo")
    assert commands[1].endswith("-m pytest")


def test_ci_runs_the_readme_test_command():
    """Check that .ci/run calls the README's test command verbatim."""
    assert _quickstart_commands()[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
