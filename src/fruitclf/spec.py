"""Declarative CNN specs: frozen dataclasses that serialise to JSON and explain themselves.

A :class:`CNNSpec` says everything :func:`fruitclf.build_cnn` needs; it is validated when it
is made, before any layer exists, and :meth:`CNNSpec.describe` computes each layer's output
shape and parameter count from the spec alone, with the arithmetic that gives them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from . import _files
from ._validation import check_choice, check_float, check_image_size, check_int, invalid
from .backbones import BACKBONES
from .exceptions import SpecError

__all__ = [
    "Augmentation",
    "CNNSpec",
    "ConvBlock",
    "DenseLayer",
    "LayerRow",
    "PlannedLayer",
    "SpecDescription",
]

SPEC_FORMAT = "fruitclf-cnnspec"
ACTIVATIONS = ("relu", "elu", "gelu", "leaky_relu", "selu", "sigmoid", "silu", "swish", "tanh",
               "linear")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
PADDINGS = ("same", "valid")
POOLS = ("max", "average")
HEADS = ("flatten", "global_average", "global_max")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
                "lecun_normal", "random_normal", "random_uniform", "truncated_normal", "zeros",
                "ones", "orthogonal")
REGULARIZERS = ("l1", "l2", "l1_l2")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical")


class _SpecPart:
    """to_dict/from_dict shared by the spec dataclasses (strict about unknown keys)."""

    _nested: ClassVar[dict[str, type[_SpecPart]]] = {}

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain JSON types."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, _SpecPart):
                value = value.to_dict()
            elif isinstance(value, tuple) and value and isinstance(value[0], _SpecPart):
                value = [v.to_dict() for v in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def _from_mapping(cls, data: Any, where: str) -> Any:
        if not isinstance(data, Mapping):
            raise SpecError(f"`{where}` must be a JSON object. Received: {data!r}")
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("format", "version") and cls is CNNSpec:
                continue
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise SpecError(
                    f"Unknown field {key!r} in `{where}`.{hint} Allowed: {', '.join(names)}"
                )
            nested = cls._nested.get(key)
            if nested is not None and value is not None:
                if isinstance(value, list):
                    value = tuple(nested._from_mapping(v, f"{where}.{key}[{i}]")
                                  for i, v in enumerate(value))
                else:
                    value = nested._from_mapping(value, f"{where}.{key}")
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        try:
            return cls(**kwargs)
        except SpecError as exc:
            raise SpecError(f"In `{where}`: {exc}") from None


@dataclasses.dataclass(frozen=True)
class ConvBlock(_SpecPart):
    """A convolution, optionally batch-normalised, activated, pooled and dropped out.

    Examples
    --------
    >>> ConvBlock(32, kernel_size=3, padding="same").filters
    32
    """

    #: Number of convolution kernels (output channels)
    filters: int
    #: Kernel height, width
    kernel_size: tuple[int, int] | int = (3, 3)
    #: Convolution stride
    strides: int = 1
    #: "same" keeps the size at stride 1; "valid" shrinks it
    padding: str = "same"
    #: Activation after the convolution (or batch norm)
    activation: str = "relu"
    #: "max", "average" or None
    pool: str | None = "max"
    #: Pooling window
    pool_size: int = 2
    #: Pooling stride; None means pool_size
    pool_strides: int | None = None
    #: Batch normalisation between convolution and activation
    batch_norm: bool = False
    #: Momentum of its moving mean and variance
    batch_norm_momentum: float = 0.99
    #: Dropout rate after pooling
    dropout: float = 0.0
    #: "l1", "l2", "l1_l2" or None
    kernel_regularizer: str | None = None
    #: Regulariser factor
    regularization: float = 0.01

    def __post_init__(self) -> None:
        check_int(self.filters, "filters", min_value=1, error=SpecError)
        object.__setattr__(self, "kernel_size",
                           check_image_size(self.kernel_size, "kernel_size", error=SpecError))
        check_int(self.strides, "strides", min_value=1, error=SpecError)
        check_choice(self.padding, "padding", PADDINGS, error=SpecError)
        check_choice(self.activation, "activation", ACTIVATIONS, error=SpecError)
        check_choice(self.pool, "pool", (*POOLS, None), error=SpecError)
        check_int(self.pool_size, "pool_size", min_value=1, error=SpecError)
        if self.pool_strides is not None:
            check_int(self.pool_strides, "pool_strides", min_value=1, error=SpecError)
        if not isinstance(self.batch_norm, bool):
            raise invalid("batch_norm", "a bool", self.batch_norm, SpecError)
        check_float(self.batch_norm_momentum, "batch_norm_momentum",
                    min_value=0.0, max_value=0.9999, error=SpecError)
        check_float(self.dropout, "dropout", min_value=0.0, max_value=0.99, error=SpecError)
        check_choice(self.kernel_regularizer, "kernel_regularizer", (*REGULARIZERS, None),
                     error=SpecError)
        check_float(self.regularization, "regularization", min_value=0.0, error=SpecError)


@dataclasses.dataclass(frozen=True)
class DenseLayer(_SpecPart):
    """A fully connected hidden layer, optionally followed by dropout.

    Examples
    --------
    >>> DenseLayer(64).units
    64
    """

    #: Neurons
    units: int
    #: Activation
    activation: str = "relu"
    #: Dropout rate after the layer
    dropout: float = 0.0
    #: "l1", "l2", "l1_l2" or None
    kernel_regularizer: str | None = None
    #: Regulariser factor
    regularization: float = 0.01

    def __post_init__(self) -> None:
        check_int(self.units, "units", min_value=1, error=SpecError)
        check_choice(self.activation, "activation", ACTIVATIONS, error=SpecError)
        check_float(self.dropout, "dropout", min_value=0.0, max_value=0.99, error=SpecError)
        check_choice(self.kernel_regularizer, "kernel_regularizer", (*REGULARIZERS, None),
                     error=SpecError)
        check_float(self.regularization, "regularization", min_value=0.0, error=SpecError)


@dataclasses.dataclass(frozen=True)
class Augmentation(_SpecPart):
    """Random changes applied to training images inside the model (inactive at inference).

    Examples
    --------
    >>> Augmentation(flip="horizontal", rotation=0.05).rotation
    0.05
    """

    #: "horizontal", "vertical", "horizontal_and_vertical"
    flip: str | None = "horizontal"
    #: Max rotation, as a fraction of a full turn
    rotation: float = 0.05
    #: Max zoom in or out, as a fraction of the size
    zoom: float = 0.1
    #: Max contrast change, as a fraction
    contrast: float = 0.1
    #: Max shift, as a fraction of the size
    translation: float = 0.0

    def __post_init__(self) -> None:
        check_choice(self.flip, "flip", (*FLIPS, None), error=SpecError)
        for name in ("rotation", "zoom", "contrast", "translation"):
            check_float(getattr(self, name), name, min_value=0.0, max_value=1.0, error=SpecError)

    @property
    def active(self) -> bool:
        """True when at least one change is enabled."""
        return bool(self.flip or self.rotation or self.zoom or self.contrast or self.translation)


#: The augmentation of the ``small-data`` preset, for photos of objects: mirror images, a
#: little rotation (up to 18 degrees), zoom and shifts that crop differently each epoch, and
#: contrast changes. No vertical flips and no hue changes: colour often tells classes apart.
SMALL_DATA_AUGMENTATION = Augmentation(flip="horizontal", rotation=0.05, zoom=0.2,
                                       contrast=0.2, translation=0.1)


@dataclasses.dataclass(frozen=True)
class PlannedLayer:
    """One layer of a spec's model, before any shape is known.

    :meth:`CNNSpec.layer_plan` lists them in order; :meth:`CNNSpec.describe` measures each
    and :func:`fruitclf.build_cnn` builds each, so the table and the model cannot disagree.

    Examples
    --------
    >>> [layer.name for layer in CNNSpec.preset("keras-mnist").layer_plan()][:4]
    ['rescaling', 'conv1', 'pool1', 'conv2']
    """

    #: The Keras layer name in the built model
    name: str
    #: The Keras layer class ("Backbone" for a pretrained backbone, "Sequential" for the
    #: augmentation)
    kind: str
    #: The conv block or dense layer it belongs to, if any
    part: ConvBlock | DenseLayer | None = None
    #: That block's (or dense layer's) position, from 1
    index: int = 0
    #: Dropout rate (Dropout layers)
    rate: float = 0.0
    #: Output units (Dense layers)
    units: int = 0
    #: Added to the build seed, so that each random layer has its own stream
    seed_offset: int = 0


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One line of :meth:`CNNSpec.describe`: a layer, its output shape, its parameters.

    Examples
    --------
    >>> CNNSpec.preset("keras-mnist").describe().rows[1].params
    320
    """

    #: The Keras layer name in the built model
    name: str
    #: The Keras layer class
    kind: str
    #: Without the batch dimension
    output_shape: tuple[int, ...]
    #: Weights (trainable and not)
    params: int
    #: How the output shape follows from the input
    shape_math: str
    #: How the parameter count follows
    params_math: str


@dataclasses.dataclass(frozen=True)
class SpecDescription:
    """The worksheet's layer table for a spec; ``str()`` renders it as text.

    Examples
    --------
    >>> CNNSpec.preset("keras-mnist").describe().total_params
    225034
    """

    #: One row per layer, input to output
    rows: tuple[LayerRow, ...]
    #: The model input (height, width, channels)
    input_shape: tuple[int, int, int]

    @property
    def total_params(self) -> int:
        """Sum of all layers' parameters."""
        return sum(r.params for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """Return the table as plain JSON types."""
        return {"input_shape": list(self.input_shape),
                "layers": [dict(dataclasses.asdict(r), output_shape=list(r.output_shape))
                           for r in self.rows],
                "total_params": self.total_params}

    def __str__(self) -> str:
        header = ("Layer", "Output shape", "Params", "Shape arithmetic", "Parameter arithmetic")
        body = [(f"{r.name} ({r.kind})", str(r.output_shape), f"{r.params:,}", r.shape_math,
                 r.params_math) for r in self.rows]
        widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(5)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        out = [f"Input: {self.input_shape}", line.format(*header).rstrip(),
               "  ".join("-" * w for w in widths)]
        out += [line.format(*row).rstrip() for row in body]
        out.append(f"Total params: {self.total_params:,}")
        return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class CNNSpec(_SpecPart):
    """A convolutional classifier: input, conv blocks, dense layers, output.

    The built model takes raw pixels (0–255) and rescales them itself, so preprocessing can
    never be forgotten at prediction time.

    Examples
    --------
    >>> spec = CNNSpec(input_shape=(28, 28, 1), num_classes=10,
    ...                conv_blocks=(ConvBlock(32, padding="valid"),),
    ...                dense_layers=(DenseLayer(64),))
    >>> CNNSpec.from_dict(spec.to_dict()) == spec
    True
    >>> CNNSpec.preset("keras-mnist").describe().total_params
    225034
    """

    #: Height, width, channels
    input_shape: tuple[int, int, int] = (128, 128, 3)
    #: Output units
    num_classes: int = 2
    #: Feature extractor
    conv_blocks: tuple[ConvBlock, ...] = (ConvBlock(32), ConvBlock(32))
    #: Hidden dense layers
    dense_layers: tuple[DenseLayer, ...] = (DenseLayer(64),)
    #: "flatten", "global_average" or "global_max"
    head: str = "flatten"
    #: Activation of the output layer
    output_activation: str = "softmax"
    #: Initialiser of every kernel
    kernel_initializer: str = "glorot_uniform"
    #: Factor applied to raw pixels first (a backbone brings its own)
    rescale: float = 1 / 255
    #: Random changes in training, or None
    augmentation: Augmentation | None = None
    #: The Keras model name
    name: str = "cnn"
    #: Dropout rate between the head and the dense layers
    head_dropout: float = 0.0
    #: A keras.applications network instead of conv_blocks
    backbone: str | None = None
    #: Backbone weights: "imagenet", a file path, or None (random)
    weights: str | None = None
    #: Top backbone layers unfrozen after the frozen phase
    fine_tune_layers: int = 0

    _nested: ClassVar[dict[str, type[_SpecPart]]] = {
        "conv_blocks": ConvBlock, "dense_layers": DenseLayer, "augmentation": Augmentation,
    }
    PRESETS: ClassVar[tuple[str, ...]] = ("small-data", "worksheet", "keras-mnist",
                                          *BACKBONES)

    def __post_init__(self) -> None:
        shape = self.input_shape
        if (not isinstance(shape, Sequence) or len(shape) != 3
                or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in shape)):
            raise invalid("input_shape", "three positive ints (height, width, channels), "
                        "e.g. (128, 128, 3)", shape, SpecError)
        object.__setattr__(self, "input_shape", tuple(shape))
        if shape[2] not in (1, 3):
            raise invalid("input_shape", "an image shape with 1 (grayscale) or 3 (RGB) channels",
                        shape, SpecError)
        check_int(self.num_classes, "num_classes", min_value=2, error=SpecError)
        for field, kind in (("conv_blocks", ConvBlock), ("dense_layers", DenseLayer)):
            value = getattr(self, field)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, field, value)
            if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
                raise invalid(field, f"a sequence of {kind.__name__}", value, SpecError)
        check_choice(self.head, "head", HEADS, error=SpecError)
        check_choice(self.output_activation, "output_activation", OUTPUT_ACTIVATIONS,
                     error=SpecError)
        check_choice(self.kernel_initializer, "kernel_initializer", INITIALIZERS, error=SpecError)
        check_float(self.rescale, "rescale", min_value=0.0, error=SpecError)
        if self.augmentation is not None and not isinstance(self.augmentation, Augmentation):
            raise invalid("augmentation", "an Augmentation or None", self.augmentation, SpecError)
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise invalid("name", "a Python identifier, e.g. 'cnn'", self.name, SpecError)
        check_float(self.head_dropout, "head_dropout", min_value=0.0,
                    max_value=0.99, error=SpecError)
        self._check_backbone()
        self.describe()  # a spec whose shapes collapse to zero fails now, not in Keras

    def _check_backbone(self) -> None:
        check_int(self.fine_tune_layers, "fine_tune_layers", min_value=0, error=SpecError)
        if self.backbone is None:
            for field in ("weights", "fine_tune_layers"):
                if getattr(self, field):
                    raise invalid(field, "left unset without a `backbone`",
                                  getattr(self, field), SpecError)
            return
        check_choice(self.backbone, "backbone", tuple(BACKBONES), error=SpecError)
        if isinstance(self.weights, os.PathLike):
            object.__setattr__(self, "weights", os.fspath(self.weights))
        if self.conv_blocks:
            raise invalid("conv_blocks", "empty with a `backbone` (the backbone extracts the "
                        "features)", self.conv_blocks, SpecError)
        if self.input_shape[2] != 3:
            raise invalid("input_shape", f"RGB (3 channels) for the {self.backbone} backbone",
                        self.input_shape, SpecError)
        if any(v < 32 or v % 32 for v in self.input_shape[:2]):
            raise invalid("input_shape", "a height and width that are multiples of 32 (at least "
                        f"32) for the {self.backbone} backbone, e.g. (224, 224, 3)",
                        self.input_shape, SpecError)
        if self.weights is not None and not isinstance(self.weights, str):
            raise invalid("weights", "'imagenet', a weights file path, or None", self.weights,
                          SpecError)

    # ------------------------------------------------------------ construction

    @classmethod
    def preset(
        cls,
        name: str,
        *,
        num_classes: int | None = None,
        input_shape: Sequence[int] | None = None,
        augmentation: Augmentation | None = None,
        weights: str | os.PathLike[str] | None = "imagenet",
    ) -> CNNSpec:
        """Return a named spec.

        Parameters
        ----------
        name : str
            One of ``CNNSpec.PRESETS``:

            - ``"small-data"``: made for 50–2,000 photos trained from scratch. Four blocks of
              Conv(3x3, same) + BatchNorm (momentum 0.9) + ReLU + MaxPool(2) with 48, 96, 192
              and 384 filters, global average pooling, dropout 0.3, Dense(classes, softmax),
              on 64x64x3
              with photo augmentation (horizontal flips, small rotations, zoom, shifts and
              contrast). About 0.88 M parameters.
            - ``"worksheet"``: Conv(32, 3x3, same)+ReLU, MaxPool(2), Conv(32, 3x3, same)+ReLU,
              MaxPool(2), Flatten, Dense(64, ReLU), Dense(128, ReLU), Dense(classes, softmax)
              on 128x128x3 with 6 classes (2,116,454 parameters).
            - ``"keras-mnist"``: Conv(32, 3x3, valid), MaxPool(2), Conv(64, 3x3, valid),
              MaxPool(2), Flatten, Dense(128), Dense(10) on 28x28x1 (225,034 parameters).
            - ``"mobilenetv3small"``, ``"mobilenetv3large"``, ``"efficientnetv2b0"``,
              ``"resnet50v2"``: that ``keras.applications`` network without its classifier
              (``fruitclf.backbones.BACKBONES``), global average pooling, dropout 0.2 and
              Dense(classes, softmax), on 224x224x3; its top 20 layers are unfrozen after the
              frozen phase of training (with ``weights=None`` the whole network trains from
              the start).
        num_classes : int, optional
            Override the preset's classes.
        input_shape : (height, width, channels), optional
            Override the preset's input.
        augmentation : Augmentation, optional
            Replace the preset's augmentation.
        weights : {"imagenet"}, path-like or None, default="imagenet"
            Backbone presets only: ImageNet weights (downloaded and cached by Keras), a local
            weights file, or None for random initial weights.

        Examples
        --------
        >>> CNNSpec.preset("worksheet", num_classes=6).describe().total_params
        2116454
        >>> CNNSpec.preset("small-data", num_classes=6).head
        'global_average'
        >>> CNNSpec.preset("mobilenetv3small", num_classes=6, weights=None).backbone
        'mobilenetv3small'
        """
        if name == "small-data":
            spec = cls(
                input_shape=(64, 64, 3), num_classes=6,
                conv_blocks=tuple(ConvBlock(f, batch_norm=True, batch_norm_momentum=0.9)
                                  for f in (48, 96, 192, 384)),
                dense_layers=(), head="global_average", head_dropout=0.3,
                augmentation=SMALL_DATA_AUGMENTATION,
                name="small_data_cnn",
            )
        elif name == "worksheet":
            spec = cls(
                input_shape=(128, 128, 3), num_classes=6,
                conv_blocks=(ConvBlock(32, padding="same"), ConvBlock(32, padding="same")),
                dense_layers=(DenseLayer(64), DenseLayer(128)), name="worksheet_cnn",
            )
        elif name == "keras-mnist":
            spec = cls(
                input_shape=(28, 28, 1), num_classes=10,
                conv_blocks=(ConvBlock(32, padding="valid"), ConvBlock(64, padding="valid")),
                dense_layers=(DenseLayer(128),), name="keras_mnist_cnn",
            )
        elif name in BACKBONES:
            spec = cls(
                input_shape=(224, 224, 3), num_classes=6, conv_blocks=(), dense_layers=(),
                head="global_average", head_dropout=0.2, backbone=name,
                weights=None if weights is None else os.fspath(weights), fine_tune_layers=20,
                augmentation=SMALL_DATA_AUGMENTATION, name=f"{name}_classifier",
            )
        else:
            raise ValueError(
                f"Unknown preset {name!r}. Available presets: {', '.join(cls.PRESETS)}"
            )
        changes: dict[str, Any] = {}
        if num_classes is not None:
            changes["num_classes"] = num_classes
        if input_shape is not None:
            changes["input_shape"] = tuple(input_shape)
        if augmentation is not None:
            changes["augmentation"] = augmentation
        return spec.replace(**changes) if changes else spec

    def replace(self, **changes: Any) -> CNNSpec:
        """Return a copy with some fields changed (validated again).

        Examples
        --------
        >>> CNNSpec.preset("worksheet").replace(num_classes=3).num_classes
        3
        """
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise SpecError(f"{exc}. Fields: {', '.join(f.name for f in dataclasses.fields(self))}"
                            ) from None

    def with_image_size(self, image_size: int | Sequence[int]) -> CNNSpec:
        """Return a copy with the input height and width changed (channels kept)."""
        height, width = check_image_size(image_size)
        return self.replace(input_shape=(height, width, self.input_shape[2]))

    # ------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain JSON types; :meth:`from_dict` rebuilds it exactly."""
        return {"format": SPEC_FORMAT, "version": 1, **super().to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CNNSpec:
        """Rebuild a spec from :meth:`to_dict` output.

        Raises
        ------
        SpecError
            Naming an unknown field (with the closest known one) or an invalid value.
        """
        return cls._from_mapping(data, "spec")  # type: ignore[no-any-return]

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """Return the spec as JSON text, and write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            _files.write_text(path, text)
        return text

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> CNNSpec:
        """Read a spec from a JSON file path (or JSON text starting with ``{``).

        Raises
        ------
        SpecError
            If the file is missing or not valid JSON, or the spec is invalid.
        """
        text = os.fspath(source)
        if not text.lstrip().startswith("{"):
            try:
                text = Path(text).read_text(encoding="utf-8")
            except OSError as exc:
                raise SpecError(f"Cannot read spec file {os.fspath(source)!r}: {exc.strerror}"
                                ) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"Spec is not valid JSON ({exc}): {os.fspath(source)!r}") from None
        return cls.from_dict(data)

    # ------------------------------------------------------------ explanation

    def layer_plan(self) -> tuple[PlannedLayer, ...]:
        """The layers of the model this spec describes, in order, with their names.

        Examples
        --------
        >>> [layer.name for layer in CNNSpec.preset("keras-mnist").layer_plan()][-3:]
        ['flatten', 'dense1', 'predictions']
        """
        plan: list[PlannedLayer] = []
        if self.augmentation is not None and self.augmentation.active:
            plan.append(PlannedLayer("augmentation", "Sequential"))
        plan.append(PlannedLayer("backbone", "Backbone") if self.backbone is not None
                    else PlannedLayer("rescaling", "Rescaling"))
        for i, block in enumerate(self.conv_blocks, start=1):
            plan.append(PlannedLayer(f"conv{i}", "Conv2D", block, i, seed_offset=10 + i))
            if block.batch_norm:
                plan.append(PlannedLayer(f"bn{i}", "BatchNormalization", block, i))
                plan.append(PlannedLayer(f"act{i}", "Activation", block, i))
            if block.pool is not None:
                kind = "MaxPooling2D" if block.pool == "max" else "AveragePooling2D"
                plan.append(PlannedLayer(f"pool{i}", kind, block, i))
            if block.dropout:
                plan.append(PlannedLayer(f"conv_dropout{i}", "Dropout", block, i,
                                         rate=block.dropout, seed_offset=100 + i))
        plan.append(PlannedLayer("flatten", "Flatten") if self.head == "flatten" else
                    PlannedLayer("global_pool", "GlobalAveragePooling2D"
                                 if self.head == "global_average" else "GlobalMaxPooling2D"))
        if self.head_dropout:
            plan.append(PlannedLayer("head_dropout", "Dropout", rate=self.head_dropout,
                                     seed_offset=150))
        for j, dense in enumerate(self.dense_layers, start=1):
            plan.append(PlannedLayer(f"dense{j}", "Dense", dense, j, units=dense.units,
                                     seed_offset=200 + j))
            if dense.dropout:
                plan.append(PlannedLayer(f"dense_dropout{j}", "Dropout", dense, j,
                                         rate=dense.dropout, seed_offset=300 + j))
        plan.append(PlannedLayer("predictions", "Dense", units=self.num_classes,
                                 seed_offset=400))
        return tuple(plan)

    def describe(self) -> SpecDescription:
        """Compute every layer's output shape and parameter count from the spec alone.

        The rows match the layers of ``build_cnn(spec)`` one to one, with the arithmetic
        behind each number: ``(28 - 3)/1 + 1 = 26`` for a valid convolution,
        ``3*3*1*32 + 32 = 320`` for its parameters.

        Raises
        ------
        SpecError
            If a layer's output would be smaller than 1 pixel.

        Examples
        --------
        >>> rows = CNNSpec.preset("keras-mnist").describe().rows
        >>> rows[1].shape_math, rows[1].params_math
        ('(28 - 3)/1 + 1 = 26', '3*3*1*32 + 32 = 320')
        """
        rows: list[LayerRow] = []
        shape: tuple[int, ...] = self.input_shape
        for layer in self.layer_plan():
            row = (self._describe_backbone(rows) if layer.kind == "Backbone"
                   else _describe_layer(layer, shape, self))
            rows.append(row)
            shape = row.output_shape
            if isinstance(layer.part, ConvBlock) and min(shape[:2]) < 1:
                raise SpecError(
                    f"`conv_blocks[{layer.index - 1}]` shrinks the image to "
                    f"{shape[0]}x{shape[1]}: the input {self.input_shape[:2]} is too small for "
                    f"{len(self.conv_blocks)} blocks. Use a larger input, padding='same', or "
                    "fewer blocks."
                )
        return SpecDescription(tuple(rows), self.input_shape)

    def _describe_backbone(self, rows: list[LayerRow]) -> LayerRow:
        """The backbone's row; its own input rescaling, if any, goes into ``rows`` first."""
        assert self.backbone is not None  # only called for backbone specs
        info = BACKBONES[self.backbone]
        h, w, c = self.input_shape
        if info.rescale is not None:
            scale, offset = info.rescale
            rows.append(LayerRow("rescaling", "Rescaling", (h, w, c), 0,
                                 f"x * {scale:.6g} {offset:+g}", "0"))
        r = info.reduction
        return LayerRow(
            "backbone", info.keras_name, (h // r, w // r, info.channels), info.params,
            f"{h}/{r} = {h // r}" if h == w else f"{h}/{r} = {h // r}; width: {w // r}",
            f"{info.keras_name} without its classifier = {info.params}",
        )


def _describe_layer(layer: PlannedLayer, shape: tuple[int, ...], spec: CNNSpec) -> LayerRow:
    """The output shape and parameter count of one planned layer, with the arithmetic."""
    name, kind = layer.name, layer.kind
    if kind in ("Sequential", "Activation", "Dropout"):
        return LayerRow(name, kind, shape, 0, "unchanged", "0")
    if kind == "Rescaling":
        return LayerRow(name, kind, shape, 0, f"x * {spec.rescale:.6g}", "0")
    if kind == "BatchNormalization":
        c = shape[-1]
        return LayerRow(name, kind, shape, 4 * c, "unchanged",
                        f"4*{c} = {4 * c} (2*{c} trainable)")
    if kind == "Flatten":
        units = math.prod(shape)
        return LayerRow(name, kind, (units,), 0, "*".join(map(str, shape)) + f" = {units}",
                        "0")
    if kind.startswith("Global"):
        return LayerRow(name, kind, (shape[-1],), 0, f"one value per channel: {shape[-1]}",
                        "0")
    if kind == "Dense":
        n_in, n = shape[-1], layer.units
        return LayerRow(name, kind, (n,), n_in * n + n,
                        "units" if layer.part is not None else "num_classes",
                        f"{n_in}*{n} + {n} = {n_in * n + n}")
    return _describe_window(layer, shape)


def _describe_window(layer: PlannedLayer, shape: tuple[int, ...]) -> LayerRow:
    """A convolution or a pooling layer: the output size follows from the window."""
    block = layer.part
    assert isinstance(block, ConvBlock)  # the plan gives windows their block
    h, w, c = shape
    if layer.kind == "Conv2D":
        kh, kw = block.kernel_size  # type: ignore[misc]
        h2, hm = _conv_out(h, kh, block.strides, block.padding)
        w2, _ = _conv_out(w, kw, block.strides, block.padding)
        params = kh * kw * c * block.filters + block.filters
        return LayerRow(layer.name, layer.kind, (h2, w2, block.filters), params,
                        hm if h == w and kh == kw else f"{hm}; width: {w2}",
                        f"{kh}*{kw}*{c}*{block.filters} + {block.filters} = {params}")
    stride = block.pool_strides or block.pool_size
    h2, hm = _conv_out(h, block.pool_size, stride, "valid")
    w2, _ = _conv_out(w, block.pool_size, stride, "valid")
    return LayerRow(layer.name, layer.kind, (h2, w2, c), 0,
                    hm if h == w else f"{hm}; width: {w2}", "0")


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> tuple[int, str]:
    """Output size of a convolution or pooling window, and the arithmetic in words."""
    if padding == "same":
        out = math.ceil(size / stride)
        if stride == 1:
            return out, f"{size}/{stride} = {out}"
        return out, f"ceil({size}/{stride}) = {out}"
    out = (size - kernel) // stride + 1
    if (size - kernel) % stride == 0 or size < kernel:
        return out, f"({size} - {kernel})/{stride} + 1 = {out}"
    return out, f"floor(({size} - {kernel})/{stride}) + 1 = {out}"
