"""Training recipes and the settings of a whole run, without TensorFlow.

A :class:`Recipe` is how a preset is trained: input size, batch, epochs, optimizer and
schedule, label smoothing, validation and stopping. :func:`fruitclf.run` and ``fruitclf
train`` take their defaults from the recipe of the chosen preset; every value can be
overridden. :class:`RunConfig` records the settings a run actually used (``report.md``).
Kept apart so that the command line can show every default in ``--help`` without starting
TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ._validation import check_int
from .settings import SETTINGS

__all__ = ["Recipe", "RunConfig", "TrainingChoices"]

SCHEDULES = SETTINGS["schedule"].choices
KEEP = SETTINGS["keep"].choices


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingChoices:
    """The optimisation settings a :class:`Recipe` proposes and a :class:`RunConfig` records.

    Examples
    --------
    >>> TrainingChoices().schedule, TrainingChoices(keep="best").keep
    ('cosine', 'best')
    """

    #: Keras optimizer name
    optimizer: str = "adamw"
    #: Peak learning rate
    learning_rate: float = 2e-3
    #: Decoupled weight decay (adamw only)
    weight_decay: float = 0.05
    #: "cosine": linear warm-up from a tenth of the peak, then cosine decay to 0; "constant"
    schedule: str = "cosine"
    #: Warm-up epochs of the cosine schedule
    warmup_epochs: int = 3
    #: Label smoothing: the share of the target spread over the other classes
    label_smoothing: float = 0.1
    #: Weights kept at the end: the "last" epoch's, or the "best" monitored epoch's
    keep: str = "last"
    #: Backbones: epochs with the backbone frozen before fine-tuning
    freeze_epochs: int = 0


_CHOICES = [f.name for f in dataclasses.fields(TrainingChoices)]
#: RunConfig's fields that only a run with unlabelled photos records.
_UNLABELED = ("unlabeled", "pseudo_label_threshold")


@dataclasses.dataclass(frozen=True)
class Recipe(TrainingChoices):
    """How to train a preset: the defaults of :func:`fruitclf.run` for it.

    ``Recipe.preset(name)`` gives the recipe of a :meth:`fruitclf.CNNSpec.preset`; change a
    field with ``dataclasses.replace`` or pass it to :func:`fruitclf.run` directly.

    Examples
    --------
    >>> Recipe.preset("small-data").schedule
    'cosine'
    >>> Recipe.preset("small-data").epochs_for(180)
    200
    >>> Recipe.preset("worksheet").epochs_for(180)
    250
    """

    #: The recipe's name (that of its preset)
    name: str
    #: Input height and width
    image_size: int = 64
    #: Images per batch
    batch_size: int = 32
    #: Epoch limit; None: from the data size (epochs_for)
    epochs: int | None = None
    #: With epochs=None: images shown in training in total ...
    images_seen: int = 36_000
    #: ... but at least this many epochs
    min_epochs: int = 40
    #: ... and at most this many
    max_epochs: int = 300
    #: Early stopping patience in epochs; 0: train every epoch
    patience: int = 0
    #: Share of each class held out for validation (0: none)
    validation_split: float = 0.0
    #: Backbones: peak learning rate of fine-tuning
    fine_tune_learning_rate: float = 1e-4
    #: Dtype policy (auto: bfloat16 where the hardware has it)
    precision: str = "auto"
    #: Test-time augmentation views averaged when evaluating the test folder
    tta: int = 4
    #: With unlabelled photos: the first model's calibrated confidence from which a photo
    #: trains
    pseudo_label_threshold: float = 0.8

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name in SETTINGS and not (field.name == "epochs" and value is None):
                SETTINGS[field.name].check(value)
        check_int(self.images_seen, "images_seen", min_value=1)
        check_int(self.min_epochs, "min_epochs", min_value=1)
        check_int(self.max_epochs, "max_epochs", min_value=self.min_epochs)

    @classmethod
    def preset(cls, name: str) -> Recipe:
        """Return the recipe of a spec preset.

        ``"small-data"`` (the default of ``fruitclf train``): every training image is used
        (no validation split: with a handful of images per class it is too noisy to choose an
        epoch, and costs a fifth of the data), 64x64 input, batch 32, AdamW (weight decay
        0.05) with 3 warm-up epochs and cosine decay from 0.002 to 0, label smoothing 0.1, a
        fixed budget of about 36,000 images shown (200 epochs for 180 images, 50 for 720,
        between 40 and 300), the last epoch kept; the test folder is evaluated with 4
        test-time augmentation views.

        ``"worksheet"`` (also ``"keras-mnist"``): the worksheet's way — 128x128, batch 16,
        Adam at 0.001, a 20% validation split, up to 250 epochs with early stopping (patience
        20) on validation loss and the best epoch kept.

        Backbone presets (``"mobilenetv3small"``, ...): 224x224, batch 32, the small-data
        schedule over 30 epochs, of which the first 10 train the head with the backbone
        frozen (AdamW at 0.001); then its top layers are fine-tuned at 0.0001. From random
        weights (``weights=None``) the whole network trains for the 30 epochs at 0.001.

        Raises
        ------
        ValueError
            For an unknown name, listing the known ones.
        """
        from .backbones import BACKBONES

        if name == "small-data":
            return cls(name="small-data")
        if name in ("worksheet", "keras-mnist"):
            return cls(name=name, image_size=128, batch_size=16, epochs=250, patience=20,
                       validation_split=0.2, optimizer="adam", learning_rate=1e-3,
                       weight_decay=0.0, schedule="constant", warmup_epochs=0,
                       label_smoothing=0.0, keep="best", tta=1)
        if name in BACKBONES:
            return cls(name=name, image_size=224, batch_size=32, epochs=30, learning_rate=1e-3,
                       warmup_epochs=1, freeze_epochs=10, tta=1)
        from .spec import CNNSpec

        raise ValueError(
            f"Unknown recipe {name!r}. Available recipes: {', '.join(CNNSpec.PRESETS)}")

    def epochs_for(self, num_train_images: int) -> int:
        """Epochs to train on ``num_train_images`` images: ``epochs`` when set, else
        ``images_seen / num_train_images`` within ``[min_epochs, max_epochs]``."""
        if self.epochs is not None:
            return self.epochs
        n = max(check_int(num_train_images, "num_train_images", min_value=0), 1)
        return int(min(max(math.ceil(self.images_seen / n), self.min_epochs), self.max_epochs))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class RunConfig(TrainingChoices):
    """Every setting a :func:`fruitclf.run` used, defaults resolved; written to ``report.md``.

    Examples
    --------
    >>> RunConfig(spec="small-data", image_size=(64, 64), epochs=200).epochs
    200
    """

    #: Preset name or spec JSON path
    spec: str = "small-data"
    #: Input height, width
    image_size: tuple[int, int] = (64, 64)
    #: Images per batch
    batch_size: int = 32
    #: Epochs trained at most
    epochs: int = 200
    #: Early stopping patience (None: train all epochs)
    patience: int | None = None
    #: Share of the training folder for validation
    validation_split: float = 0.0
    #: Copies of one photo kept on one side of the validation split
    group_duplicates: bool = SETTINGS["group_duplicates"].default
    #: Split, shuffling, initial weights and augmentation
    seed: int = SETTINGS["seed"].default
    #: Random changes to training images inside the model
    augment: bool = SETTINGS["augment"].default
    #: Backbone weights (None for a network without a backbone)
    weights: str | None = SETTINGS["weights"].default
    #: Dtype policy actually used
    precision: str = "auto"
    #: Resize method (the worksheet used "nearest")
    interpolation: str = SETTINGS["interpolation"].default
    #: Keep decoded images in memory when they fit
    cache: str = SETTINGS["cache"].default
    #: Views averaged per test image
    tta: int = 4
    #: Seconds between checkpoint writes (0: every epoch)
    checkpoint_interval: float = SETTINGS["checkpoint_interval"].default
    #: Folder of unlabelled photos the first model labelled (None: none given)
    unlabeled: str | None = None
    #: The first model's confidence from which an unlabelled photo trained (with unlabeled)
    pseudo_label_threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: what was trained on, then how (the :class:`TrainingChoices`),
        then the rest (the unlabelled photos' settings only when there were some)."""
        values = dataclasses.asdict(self)
        values["image_size"] = list(self.image_size)
        own = [f.name for f in dataclasses.fields(self) if f.name not in _CHOICES
               and (self.unlabeled is not None or f.name not in _UNLABELED)]
        cut = own.index("augment") + 1
        return {name: values[name] for name in [*own[:cut], *_CHOICES, *own[cut:]]}
