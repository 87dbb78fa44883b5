"""Build a Keras model from a :class:`~fruitclf.CNNSpec`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._compat import resolve_precision
from ._validation import check_int
from .backbones import BACKBONES, build_backbone
from .spec import Augmentation, CNNSpec, ConvBlock, DenseLayer, PlannedLayer

if TYPE_CHECKING:
    import keras

__all__ = ["build_cnn"]


def _seed(base: int | None, offset: int) -> int | None:
    return None if base is None else base + 1009 * offset


def _regularizer(kind: str | None, factor: float) -> Any:
    import keras

    if kind is None:
        return None
    if kind == "l1":
        return keras.regularizers.L1(factor)
    if kind == "l2":
        return keras.regularizers.L2(factor)
    return keras.regularizers.L1L2(l1=factor, l2=factor)


def _initializer(name: str, seed: int | None) -> Any:
    import keras

    initializer = keras.initializers.get(name)
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = seed
        initializer = initializer.__class__.from_config(config)
    return initializer


def build_augmentation(
    augmentation: Augmentation, *, seed: int | None = None, dtype: Any = None
) -> keras.Sequential:
    """Return a Keras ``Sequential`` of random layers for ``augmentation``.

    The layers act only when called with ``training=True`` (inside ``fit``).

    Examples
    --------
    >>> block = build_augmentation(Augmentation(flip="horizontal", rotation=0.1))
    >>> [layer.__class__.__name__ for layer in block.layers][:2]
    ['RandomFlip', 'RandomRotation']
    """
    import keras

    layers: list[Any] = []
    if augmentation.flip:
        layers.append(keras.layers.RandomFlip(augmentation.flip, seed=_seed(seed, 1), dtype=dtype))
    if augmentation.rotation:
        layers.append(keras.layers.RandomRotation(augmentation.rotation, seed=_seed(seed, 2),
                                                  dtype=dtype))
    if augmentation.zoom:
        layers.append(keras.layers.RandomZoom(augmentation.zoom, seed=_seed(seed, 3),
                                              dtype=dtype))
    if augmentation.translation:
        layers.append(keras.layers.RandomTranslation(
            augmentation.translation, augmentation.translation, seed=_seed(seed, 4), dtype=dtype))
    if augmentation.contrast:
        layers.append(keras.layers.RandomContrast(augmentation.contrast, seed=_seed(seed, 5),
                                                  dtype=dtype))
    return keras.Sequential(layers, name="augmentation")


def build_cnn(
    spec: CNNSpec, *, seed: int | None = None, precision: str = "float32"
) -> keras.Model:
    """Build the Keras model a spec describes.

    The model takes raw pixels (0–255, any numeric dtype), rescales them inside itself, and
    outputs class probabilities in ``float32``. Its layers carry the names of
    :meth:`CNNSpec.describe`'s rows, and the numbers agree with ``model.summary()``.

    Parameters
    ----------
    spec : CNNSpec
        What to build.
    seed : int, optional
        Seed for every initialiser, dropout and augmentation layer: the same seed gives the
        same initial weights, without touching any global random state.
    precision : {"float32", "mixed_bfloat16", "mixed_float16", "auto"}, default="float32"
        Dtype policy of the layers; the output layer always computes in ``float32``.
        ``"auto"`` picks ``mixed_bfloat16`` on CPUs with native bfloat16 (AVX512_BF16 or AMX)
        and GPUs that support it, else ``float32``.

    Returns
    -------
    keras.Model
        Not compiled; :class:`fruitclf.Trainer` compiles it.

    Examples
    --------
    >>> spec = CNNSpec.preset("keras-mnist")
    >>> build_cnn(spec, seed=0).count_params()
    225034
    """
    import keras

    if not isinstance(spec, CNNSpec):
        raise TypeError(
            f"`spec` must be a CNNSpec, e.g. CNNSpec.preset('worksheet'). "
            f"Received: {type(spec).__name__}"
        )
    if seed is not None:
        seed = check_int(seed, "seed", min_value=0)
    policy = resolve_precision(precision)
    inputs = keras.Input(shape=spec.input_shape, name="image")
    x = inputs
    for layer in spec.layer_plan():  # the same plan as describe(): names and order agree
        if layer.kind == "Backbone":
            x = _apply_backbone(spec, x, policy)
        else:
            x = _keras_layer(layer, spec, seed, policy)(x)
    return keras.Model(inputs, x, name=spec.name)


def _keras_layer(layer: PlannedLayer, spec: CNNSpec, seed: int | None, policy: str) -> Any:
    """The Keras layer of one planned layer (the output layer always computes in float32)."""
    import keras

    layers, name, part = keras.layers, layer.name, layer.part
    init = _initializer(spec.kernel_initializer, _seed(seed, layer.seed_offset))
    if layer.kind == "Sequential":
        assert spec.augmentation is not None  # planned only with an active augmentation
        return build_augmentation(spec.augmentation, seed=seed, dtype=policy)
    if layer.kind == "Rescaling":
        return layers.Rescaling(spec.rescale, name=name, dtype=policy)
    if layer.kind == "Dropout":
        return layers.Dropout(layer.rate, seed=_seed(seed, layer.seed_offset), name=name,
                              dtype=policy)
    if layer.kind in ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return getattr(layers, layer.kind)(name=name, dtype=policy)
    if layer.kind == "Dense" and isinstance(part, DenseLayer):
        return layers.Dense(
            part.units, activation=part.activation, kernel_initializer=init,
            kernel_regularizer=_regularizer(part.kernel_regularizer, part.regularization),
            name=name, dtype=policy)
    if layer.kind == "Dense":
        return layers.Dense(spec.num_classes, activation=spec.output_activation,
                            kernel_initializer=init, name=name, dtype="float32")
    assert isinstance(part, ConvBlock)  # the remaining kinds belong to a conv block
    if layer.kind == "Conv2D":
        return layers.Conv2D(
            part.filters, part.kernel_size, strides=part.strides, padding=part.padding,
            activation=None if part.batch_norm else part.activation, kernel_initializer=init,
            kernel_regularizer=_regularizer(part.kernel_regularizer, part.regularization),
            name=name, dtype=policy)
    if layer.kind == "BatchNormalization":
        return layers.BatchNormalization(momentum=part.batch_norm_momentum, name=name,
                                         dtype=policy)
    if layer.kind == "Activation":
        return layers.Activation(part.activation, name=name, dtype=policy)
    return getattr(layers, layer.kind)(part.pool_size, strides=part.pool_strides or
                                       part.pool_size, name=name, dtype=policy)


def _apply_backbone(spec: CNNSpec, x: Any, policy: str) -> Any:
    """Rescale as the backbone expects (unless it does so itself) and apply it: frozen when
    pretrained, wholly trainable from random weights."""
    import keras

    assert spec.backbone is not None  # only called for backbone specs
    info = BACKBONES[spec.backbone]
    if info.rescale is not None:
        scale, offset = info.rescale
        x = keras.layers.Rescaling(scale, offset=offset, name="rescaling", dtype=policy)(x)
    backbone = build_backbone(spec.backbone, spec.input_shape, spec.weights)
    backbone.name = "backbone"
    if spec.weights is None:
        # From scratch: every layer learns and batch normalisation follows the batches; a
        # short memory suits the few steps of a small folder (the statistics are recomputed
        # over the training images at the end, see refresh_batch_norm).
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.9
        return backbone(x)
    backbone.trainable = False
    # training=False keeps batch normalisation in inference mode even once layers are
    # unfrozen for fine-tuning, as Keras's transfer-learning guide prescribes.
    return backbone(x, training=False)


def backbone_of(model: Any) -> Any:
    """The ``backbone`` sub-model of a model built from a backbone spec, or None."""
    for layer in model.layers:
        if layer.name == "backbone":
            return layer
    return None


def from_scratch_backbone(spec: CNNSpec | None) -> bool:
    """True for a backbone preset with random initial weights: trained whole, in one phase."""
    return spec is not None and spec.backbone is not None and spec.weights is None


def refresh_batch_norm(model: Any, images: Any, *, batch_size: int = 128,
                       max_images: int = 1024) -> int:
    """Set the backbone's batch-norm statistics to those of ``images`` under the final weights.

    A from-scratch backbone trained on a small folder ends with moving averages taken while
    its weights still moved, over batches too small for its class-dependent features: the
    model is right in training mode and wrong in inference mode. Averaging the statistics
    of batches of ``batch_size`` images (up to ``max_images``, not augmented), with nothing
    else changed, gives the population statistics that inference needs. ``images`` is an
    iterable of image batches (or of ``(images, labels)``). Returns the number of images used.
    """
    import keras
    import tensorflow as tf

    backbone = backbone_of(model)
    layers = [] if backbone is None else [
        layer for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    pending: list[Any] = []
    used, waiting, batches = 0, 0, 0

    def flush() -> None:
        nonlocal batches, waiting
        for layer in layers:  # the mean over batches: this one weighs 1 / (batches + 1)
            layer.momentum = batches / (batches + 1)
        x = tf.concat(pending, axis=0)
        for layer in model.layers[1:model.layers.index(backbone)]:
            x = layer(x, training=False)  # rescaling as in inference, no augmentation
        backbone(x, training=True)
        batches += 1
        waiting = 0
        pending.clear()

    try:
        for element in images:
            batch = element[0] if isinstance(element, tuple) else element
            batch = batch[:max_images - used]
            pending.append(batch)
            used += int(batch.shape[0])
            waiting += int(batch.shape[0])
            if waiting >= batch_size:
                flush()
            if used >= max_images:
                break
        if pending:
            flush()
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return used


def set_fine_tuning(model: Any, layers: int) -> int:
    """Unfreeze the top ``layers`` layers of the backbone (batch norm stays frozen).

    Returns the number of layers made trainable.
    """
    import keras

    backbone = backbone_of(model)
    if backbone is None or layers <= 0:
        return 0
    backbone.trainable = True
    candidates = backbone.layers[-layers:]
    for layer in backbone.layers:
        layer.trainable = (layer in candidates
                           and not isinstance(layer, keras.layers.BatchNormalization))
    return sum(1 for layer in candidates if layer.trainable)
