"""Every setting of a run, declared once: name, type, bounds, help, default, commands.

In the style of scikit-learn's parameter constraints, each :class:`Setting` is the one place
that says what a value may be. The command line builds its options from
:data:`~fruitclf.settings.SETTINGS` (flags, types, choices, defaults and help),
:func:`fruitclf.run`, :class:`fruitclf.Recipe`, :class:`fruitclf.Trainer` and
:meth:`fruitclf.ImageFolderDataset.split` validate with
:meth:`~fruitclf.settings.Setting.check`,
and the docs' settings table is rendered from it; a test holds every entry point to it.

A setting whose default is :data:`FROM_RECIPE` takes its value from the recipe of the chosen
preset (:meth:`fruitclf.Recipe.preset`) when left unset; the help text names the recipes'
values, read from the recipes themselves.

Examples
--------
>>> SETTINGS["validation_split"].check(0.2)
0.2
>>> SETTINGS["patience"].check(-1)
Traceback (most recent call last):
ValueError: `patience` must be an int >= 0. Received: patience=-1. Use 0 to train every epoch
>>> SETTINGS["seed"].default
123
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._validation import MAX_IMAGE_SIDE, check_choice, check_float, check_int

__all__ = ["FROM_RECIPE", "INTERPOLATIONS", "NEAR_DUPLICATE_THRESHOLD", "PRECISIONS", "SETTINGS",
           "Setting"]

#: Resize methods (all antialiased when downscaling).
INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5", "gaussian",
                  "mitchellcubic")
#: The largest default fingerprint distance of near duplicates (``--duplicate-threshold``;
#: see :data:`fruitclf.data.quality.NEAR_DUPLICATE_THRESHOLD`).
NEAR_DUPLICATE_THRESHOLD = 0.03
#: Dtype policies; ``auto``: bfloat16 where the hardware computes it natively.
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16", "auto")


class _FromRecipe:
    """The default of a setting that the chosen preset's recipe decides."""

    def __repr__(self) -> str:
        return "FROM_RECIPE"


#: Default of the settings that come from the recipe of the chosen preset.
FROM_RECIPE: Any = _FromRecipe()


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: what it is, what it may be, where it is taken."""

    #: The keyword name (``run(name=...)``, ``RunConfig.name``).
    name: str
    #: ``int``, ``float``, ``str`` or ``bool``.
    kind: type
    #: One line of help, without the default (added from ``default``).
    help: str
    #: The default, or :data:`FROM_RECIPE`.
    default: Any = FROM_RECIPE
    #: Smallest allowed value (numbers).
    min_value: float | None = None
    #: Largest allowed value (numbers).
    max_value: float | None = None
    #: Whether ``min_value`` itself is excluded.
    exclusive_min: bool = False
    #: The allowed values (strings).
    choices: tuple[str, ...] | None = None
    #: What to do about a wrong value, appended to the error.
    hint: str = ""
    #: The commands that take it as an option (``train``, ``demo``); empty: Python only.
    commands: tuple[str, ...] = ("train", "demo")
    #: Older option spellings, still accepted with a deprecation note.
    aliases: tuple[str, ...] = ()
    #: The placeholder in ``--help``.
    metavar: str | None = None

    @property
    def flag(self) -> str:
        """The command-line option: ``--validation-split``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any, *, error: type[Exception] = ValueError) -> Any:
        """Return ``value`` if the setting allows it; else raise naming the setting."""
        if self.choices is not None:
            return check_choice(value, self.name, self.choices, error=error)
        if self.kind is int:
            return check_int(value, self.name, min_value=_int(self.min_value),
                             max_value=_int(self.max_value), hint=self.hint, error=error)
        if self.kind is float:
            return check_float(value, self.name, min_value=self.min_value,
                               max_value=self.max_value, exclusive=self.exclusive_min,
                               hint=self.hint, error=error)
        if self.kind is bool and not isinstance(value, bool):
            raise error(f"`{self.name}` must be True or False. Received: {self.name}={value!r}")
        if self.kind is str and not isinstance(value, str):
            raise error(f"`{self.name}` must be a str. Received: {self.name}={value!r}")
        return value

    def resolve(self, value: Any, recipe: Any) -> Any:
        """``value`` checked, or the recipe's value when ``value`` is None."""
        if value is None and self.default is FROM_RECIPE:
            value = getattr(recipe, self.name)
        return self.check(value)

    def bounds(self) -> str:
        """The allowed values in words, for the docs: ``>= 0``, ``0 to 0.9``, ``auto, ...``."""
        if self.choices is not None:
            return ", ".join(self.choices)
        low, high = self.min_value, self.max_value
        if low is not None and high is not None:
            return f"{'> ' if self.exclusive_min else ''}{_num(low)} to {_num(high)}"
        if low is not None:
            return f"{'>' if self.exclusive_min else '>='} {_num(low)}"
        return "any" if self.kind is not bool else "true or false"

    def default_text(self) -> str:
        """The default for ``--help`` and the docs: a value, or the recipes' values."""
        if self.default is not FROM_RECIPE:
            return str(self.default)
        return "the recipe's: " + recipe_values(self.name)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _num(value: float) -> str:
    return f"{value:g}"


def recipe_values(name: str) -> str:
    """What the recipes set ``name`` to: ``small-data 64; worksheet 128; backbones 224``."""
    from .backbones import BACKBONES
    from .config import Recipe

    parts = []
    for label, preset in (("small-data", "small-data"), ("worksheet", "worksheet"),
                          ("backbones", next(iter(BACKBONES)))):
        recipe = Recipe.preset(preset)
        value = getattr(recipe, name)
        if name == "epochs" and value is None:
            value = (f"from the data size (about {recipe.images_seen:,} images shown, "
                     f"{recipe.min_epochs}-{recipe.max_epochs} epochs)")
        parts.append(f"{label} {value}")
    return "; ".join(parts)


#: Every setting, by name, in the order of ``--help``.
SETTINGS: dict[str, Setting] = {s.name: s for s in (
    Setting("image_size", int, "input height and width in pixels", min_value=1,
            max_value=MAX_IMAGE_SIDE, metavar="N"),
    Setting("batch_size", int, "images per batch", min_value=1, metavar="N"),
    Setting("epochs", int, "epochs to train", min_value=1, hint="Train for at least one epoch",
            metavar="N"),
    Setting("patience", int, "early stopping patience in epochs, 0: off", min_value=0,
            hint="Use 0 to train every epoch", metavar="N"),
    Setting("validation_split", float, "share of each class held out for validation, "
            "0: train on every image", min_value=0.0, max_value=0.9,
            hint="Use 0 to train on every image, or a share such as 0.2",
            aliases=("--val-split",), metavar="SHARE"),
    Setting("group_duplicates", bool, "keep copies of one photo (near duplicates) on one "
            "side of the train/validation split", default=True),
    Setting("seed", int, "seed of the split, shuffling, weights and augmentation",
            default=123, min_value=0, metavar="N"),
    Setting("augment", bool, "random changes to training images (the preset's: flips, "
            "rotation, zoom, shifts, contrast)", default=True),
    Setting("learning_rate", float, "peak learning rate", min_value=0.0, max_value=10.0,
            exclusive_min=True, metavar="RATE"),
    Setting("weights", str, "backbone presets: ImageNet weights (downloaded by Keras), a "
            "weights file, or none to train from scratch", default="imagenet",
            metavar="imagenet|PATH|none"),
    Setting("tta", int, "test-time augmentation: views averaged per test image, 1: off",
            min_value=1, max_value=8, metavar="N"),
    Setting("pseudo_label_threshold", float, "with --unlabeled: the calibrated confidence "
            "(the share of such labels expected right) from which the first model's class "
            "for an unlabelled photo is trusted, so that the photo trains the final model",
            min_value=0.0, max_value=1.0, commands=("train",),
            hint="Use 0 to train on every unlabelled photo", metavar="P"),
    Setting("precision", str, "dtype policy; auto = bfloat16 where the hardware has it "
            "natively", choices=PRECISIONS),
    Setting("interpolation", str, "resize method (antialiased)", default="bilinear",
            choices=INTERPOLATIONS),
    Setting("cache", str, "decoded-image cache: auto, memory, none, or a file cache path",
            default="auto", metavar="auto|memory|none|PATH"),
    Setting("checkpoint_interval", float, "seconds between checkpoint writes; a kill loses "
            "at most about this long or one epoch (0: every epoch)", default=60.0,
            min_value=0.0, hint="Use 0 to write every epoch", metavar="SECONDS"),
    Setting("optimizer", str, "Keras optimizer name", commands=()),
    Setting("weight_decay", float, "decoupled weight decay (adamw only)", min_value=0.0,
            max_value=1.0, commands=()),
    Setting("schedule", str, "cosine: linear warm-up, then cosine decay to 0; constant",
            choices=("constant", "cosine"), commands=()),
    Setting("warmup_epochs", int, "warm-up epochs of the cosine schedule", min_value=0,
            commands=()),
    Setting("label_smoothing", float, "share of the target spread over the other classes",
            min_value=0.0, max_value=0.5, commands=()),
    Setting("keep", str, "weights kept at the end: the last epoch's or the best monitored "
            "epoch's", choices=("best", "last"), commands=()),
    Setting("freeze_epochs", int, "backbones: epochs with the backbone frozen before "
            "fine-tuning", min_value=0, commands=()),
    Setting("fine_tune_learning_rate", float, "backbones: peak learning rate of fine-tuning",
            min_value=0.0, max_value=10.0, exclusive_min=True, commands=()),
)}
