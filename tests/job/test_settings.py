"""Every entry point agrees with the one declaration of each setting (``fruitclf.settings``):
the CLI's options, ``run()``'s signature and docstring, ``RunConfig``, ``Recipe``,
``Trainer`` and ``ImageFolderDataset.split`` take the same defaults and refuse the same
values with the same message."""

from __future__ import annotations

import argparse
import inspect
import math

import pytest

import fruitclf
from fruitclf import ImageFolderDataset, Recipe, RunConfig, Trainer, run
from fruitclf.cli import build_parser, main
from fruitclf.settings import FROM_RECIPE, SETTINGS, Setting


def _options(command: str) -> dict[str, argparse.Action]:
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return {a.dest: a for a in commands.choices[command]._actions}


def _outside(setting: Setting) -> list[object]:
    """Values just outside the setting's bounds (or choices)."""
    if setting.choices is not None:
        return ["no-such-choice"]
    values: list[object] = []
    if setting.min_value is not None:
        step = 1 if setting.kind is int else 1e-9
        values.append(setting.min_value if setting.exclusive_min else setting.min_value - step)
    if setting.max_value is not None:
        values.append(setting.max_value + (1 if setting.kind is int else 1e-6))
    return [int(v) if setting.kind is int else v for v in values]  # type: ignore[call-overload]


BOUNDED = [(name, value) for name, s in SETTINGS.items() for value in _outside(s)]


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if "train" in s.commands])
def test_the_cli_options_are_the_declaration(name):
    """Check that each train option has the declared flag, type, choices, default and help."""
    setting = SETTINGS[name]
    for command in setting.commands:
        action = _options(command)[name]
        assert setting.flag in action.option_strings
        assert action.help is not None and action.help.startswith(setting.help.split(" (")[0])
        if command == "demo":
            continue
        expected = None if setting.default is FROM_RECIPE else setting.default
        assert action.default == expected
        if setting.default is FROM_RECIPE:
            assert f"(default: {setting.default_text()})" in action.help
        if setting.choices is not None:
            assert tuple(action.choices) == setting.choices
        elif setting.kind is not bool and name != "weights":
            assert action.type is setting.kind


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if "train" in s.commands])
def test_run_takes_each_setting_with_the_declared_default_and_documents_it(name):
    """Check that run() has a parameter per setting, defaulting to the declaration (None:
    from the recipe), documented in its docstring."""
    setting = SETTINGS[name]
    parameter = inspect.signature(run).parameters[name]
    expected = None if setting.default is FROM_RECIPE else setting.default
    assert parameter.default == expected
    assert f"\n    {name} :" in (run.__doc__ or "")


@pytest.mark.parametrize("name", [n for n, s in SETTINGS.items() if s.default is not FROM_RECIPE
                                  and n in RunConfig.__dataclass_fields__])
def test_run_config_defaults_are_the_declaration(name):
    """Check RunConfig's defaults against the declared ones."""
    assert getattr(RunConfig, name) == SETTINGS[name].default


@pytest.mark.parametrize("name", [n for n in SETTINGS if n in Recipe.__dataclass_fields__])
def test_every_recipe_value_is_allowed_by_the_declaration(name):
    """Check that each preset's recipe passes the declaration (and so every entry point)."""
    for preset in fruitclf.CNNSpec.PRESETS:
        value = getattr(Recipe.preset(preset), name)
        if value is not None:
            SETTINGS[name].check(value)


def _message(name: str, value: object) -> str:
    with pytest.raises((ValueError, TypeError)) as info:
        SETTINGS[name].check(value)
    return str(info.value)


@pytest.mark.parametrize(("name", "value"), BOUNDED)
def test_recipe_and_trainer_refuse_what_the_declaration_refuses(name, value, tiny_spec):
    """Check that Recipe and Trainer refuse a value just outside the declared bounds with the
    declaration's own message."""
    expected = _message(name, value)
    if name in Recipe.__dataclass_fields__:
        with pytest.raises((ValueError, TypeError)) as info:
            Recipe(name="test", **{name: value})
        assert str(info.value) == expected
    if name in inspect.signature(Trainer).parameters:
        with pytest.raises((ValueError, TypeError)) as info:
            Trainer(tiny_spec, **{name: value})
        assert str(info.value) == expected


@pytest.mark.parametrize(("name", "value"),
                         [(n, v) for n, v in BOUNDED if "train" in SETTINGS[n].commands])
def test_run_and_the_cli_refuse_what_the_declaration_refuses(name, value, image_folder,
                                                             tmp_path, capsys):
    """Check that run() and `fruitclf train` refuse a value just outside the declared bounds,
    before training, with the declaration's message (the CLI naming the option)."""
    expected = _message(name, value)
    with pytest.raises((ValueError, TypeError)) as info:
        run(image_folder, out=tmp_path / "run", **{name: value})
    assert str(info.value) == expected
    text = repr(value) if not isinstance(value, str) else value
    try:
        code = main(["train", str(image_folder), "--out", str(tmp_path / "cli"),
                     f"{SETTINGS[name].flag}={value}"])
    except SystemExit as exit_:  # argparse refuses a choice itself, naming the choices
        code = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert code in (1, 2) and (text in err or str(value) in err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("value", [v for n, v in BOUNDED if n == "validation_split"])
def test_dataset_split_refuses_what_the_declaration_refuses(image_folder, value):
    """Check ImageFolderDataset.split against the declared validation_split bounds."""
    expected = _message("validation_split", value)
    with pytest.raises(ValueError, match="validation_split") as info:
        ImageFolderDataset(image_folder).split(value)
    assert str(info.value) == expected


def test_patience_zero_means_off_everywhere(tiny_spec):
    """Check that patience 0 trains every epoch in the Trainer as in run() and the CLI."""
    assert Trainer(tiny_spec, patience=0).patience is None
    assert SETTINGS["patience"].check(0) == 0


def test_the_declaration_is_consistent():
    """Check that each declared default is allowed by its own bounds, and bounds are sane."""
    for setting in SETTINGS.values():
        if setting.default is not FROM_RECIPE:
            setting.check(setting.default)
        if setting.min_value is not None and setting.max_value is not None:
            assert setting.min_value < setting.max_value
        assert setting.help and not setting.help.endswith(".")
        assert not math.isnan(setting.min_value or 0.0)
