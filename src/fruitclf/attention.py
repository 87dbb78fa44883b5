"""Where the model looks: Grad-CAM heat maps.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the last convolutional feature map
by how much the class score rises with it, and keeps the positive sum: a coarse map of the
image regions that made the model choose the class. A heat map on the fruit rather than on
the table or the background is a model that learned the fruit.

:func:`explain` works on fruitclf's CNNs (the feature map of the last convolution block) and on
every backbone preset (the backbone's last feature map): models whose layers form one chain.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_class_names, check_int

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

    from .data import Preprocessing
    from .io import LoadedModel

__all__ = ["Explanation", "explain"]

_POOLING = ("MaxPooling2D", "AveragePooling2D")


@dataclasses.dataclass
class Explanation:
    """Grad-CAM heat maps of a batch of images.

    Attributes
    ----------
    heatmaps : numpy.ndarray of shape (n, height, width)
        Per image, in 0–1 at the model's input size: where the model looked for
        ``targets``.
    images : numpy.ndarray of shape (n, height, width, channels)
        The images as the model saw them (0–255).
    targets : list of str
        The class each heat map explains (by default the predicted one).
    predicted : list of str
        The predicted class per image.
    probabilities : numpy.ndarray of shape (n, n_classes)
        The model's probabilities.
    class_names : list of str
    layer : str
        The layer whose feature map was weighed.
    paths : list of str or None
        The image files, when explained from files.
    errors : dict of str to str
        Files that could not be read, with the reason.

    Examples
    --------
    >>> explanation = fruitclf.explain(loaded, ["photo.jpg"])  # doctest: +SKIP
    >>> explanation.heatmaps.shape, explanation.layer  # doctest: +SKIP
    ((1, 64, 64), 'act4')
    """

    heatmaps: np.ndarray
    images: np.ndarray
    targets: list[str]
    predicted: list[str]
    probabilities: np.ndarray
    class_names: list[str]
    layer: str
    paths: list[str] | None = None
    errors: dict[str, str] = dataclasses.field(default_factory=dict)

    def plot(self, *, max_images: int = 16, columns: int = 4) -> Figure:
        """Each image with its heat map over it, titled with the prediction."""
        from matplotlib import colormaps
        from matplotlib.figure import Figure

        count = min(len(self.heatmaps), check_int(max_images, "max_images", min_value=1))
        columns = max(1, min(check_int(columns, "columns", min_value=1), count or 1))
        rows = max(1, -(-count // columns))
        fig = Figure(figsize=(2.4 * columns, 2.7 * rows), layout="constrained")
        jet = colormaps["jet"]
        for i in range(rows * columns):
            ax = fig.add_subplot(rows, columns, i + 1)
            ax.axis("off")
            if i >= count:
                continue
            image = self.images[i].astype(np.float32) / 255.0
            if image.shape[-1] == 1:
                image = np.repeat(image, 3, axis=-1)
            heat = jet(self.heatmaps[i])[..., :3]
            ax.imshow(np.clip(0.55 * image + 0.45 * heat, 0, 1))
            index = self.class_names.index(self.predicted[i])
            title = f"{self.predicted[i]} ({self.probabilities[i, index]:.2f})"
            if self.targets[i] != self.predicted[i]:
                title += f"\nmap of: {self.targets[i]}"
            if self.paths is not None:
                title = f"{os.path.basename(self.paths[i])}\n{title}"
            ax.set_title(title, fontsize=8)
        if count == 0:
            fig.axes[0].text(0.5, 0.5, "no images", ha="center", va="center")
        fig.suptitle(f"Where the model looks (Grad-CAM on {self.layer})", fontsize=10)
        return fig


def explain(
    model: LoadedModel | keras.Model,
    images: Any,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    targets: Sequence[str] | None = None,
    layer: str | None = None,
    batch_size: int = 32,
    follow_links: bool = False,
) -> Explanation:
    """Grad-CAM heat maps: where ``model`` looked to classify each image.

    Parameters
    ----------
    model : LoadedModel or keras.Model
        A model :func:`fruitclf.load_model` read (class names and preprocessing come with
        it), or a Keras model built by :func:`fruitclf.build_cnn` with ``class_names``.
    images : path-like, sequence of path-like, or numpy.ndarray
        Image files or folders (checked with the training decoder; unreadable files are
        reported in ``errors``), or 0–255 images of the model's input shape.
    class_names : sequence of str, optional
        Needed with a plain Keras model.
    preprocessing : Preprocessing, optional
        How files become inputs (default: the loaded model's, or the input size).
    targets : sequence of str, optional
        The class to explain per image (default: the predicted one).
    layer : str, optional
        The layer whose feature map is weighed (default: the last convolutional feature map
        before the pooling head; a backbone's output for backbone presets).
    batch_size : int, default=32
    follow_links : bool, default=False
        Follow links to folders inside the folders given.

    Returns
    -------
    Explanation

    Raises
    ------
    ValueError
        A model whose layers do not form one chain, a layer without a spatial feature map,
        or a target class the model does not know.

    Examples
    --------
    >>> loaded = fruitclf.load_model("runs/fruits/model.keras")  # doctest: +SKIP
    >>> fruitclf.explain(loaded, "photos/").plot()  # doctest: +SKIP
    """
    from .data import Preprocessing
    from .evaluation import image_batch, is_file_inputs

    keras_model, names, prep = _model_parts(model, class_names, preprocessing)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    paths: list[str] | None = None
    errors: dict[str, str] = {}
    if is_file_inputs(images):
        paths, array, errors = _read_files(images, prep or Preprocessing(
            image_size=tuple(keras_model.input_shape[1:3])), batch_size, follow_links)
    else:
        array = image_batch(images, keras_model, "images")
    if targets is not None and len(targets) != len(array):
        raise ValueError(f"`targets` must name one class per image ({len(array)}). Received: "
                         f"{len(targets)} targets")
    chain, index = _feature_layer(keras_model, layer)
    maps, probabilities, wanted = [], [], []
    for start in range(0, len(array), batch_size):
        part = array[start:start + batch_size]
        chosen = (None if targets is None else
                  [_class_index(names, t) for t in targets[start:start + len(part)]])
        heat, probs, picked = _grad_cam(chain, index, part, chosen)
        if start == 0:
            _check_chain(keras_model, part, probs)
        maps.append(heat)
        probabilities.append(probs)
        wanted += picked
    heatmaps = np.concatenate(maps) if maps else np.zeros((0, *array.shape[1:3]))
    probs = np.concatenate(probabilities) if probabilities else np.zeros((0, len(names)))
    return Explanation(heatmaps, array.astype(np.uint8) if len(array) else array,
                       [names[i] for i in wanted], [names[i] for i in probs.argmax(axis=1)],
                       probs, names, chain[index].name, paths, errors)


def _model_parts(model: Any, class_names: Sequence[str] | None,
                 preprocessing: Preprocessing | None) -> tuple[Any, list[str], Any]:
    if hasattr(model, "class_names") and hasattr(model, "model"):  # a LoadedModel
        return (model.model, list(model.class_names),
                preprocessing if preprocessing is not None else model.preprocessing)
    if class_names is None:
        raise ValueError("`class_names` is needed with a Keras model (a model from "
                         "fruitclf.load_model carries them).")
    return model, check_class_names(class_names, int(model.output_shape[-1])), preprocessing


def _read_files(images: Any, preprocessing: Preprocessing, batch_size: int,
                follow_links: bool) -> tuple[list[str], np.ndarray, dict[str, str]]:
    from .evaluation import load_file_inputs

    _, checked, errors = load_file_inputs(images, preprocessing, batch_size=batch_size,
                                          follow_links=follow_links)
    array = checked.arrays()
    shape = (0, *preprocessing.image_size, preprocessing.channels)
    return checked.paths, array if len(checked.paths) else np.zeros(shape, np.float32), errors


def _class_index(names: list[str], target: str) -> int:
    if target not in names:
        raise ValueError(f"`targets` must be class names of the model ({', '.join(names)}). "
                         f"Received: {target!r}")
    return names.index(target)


def _feature_layer(model: Any, layer: str | None) -> tuple[list[Any], int]:
    """The model's layers as one chain, and the index of the feature map to weigh."""
    chain = [item for item in model.layers if type(item).__name__ != "InputLayer"]
    spatial = [i for i, item in enumerate(chain) if len(item.output.shape) == 4
               and type(item).__name__ not in _POOLING]
    if layer is not None:
        found = [i for i, item in enumerate(chain) if item.name == layer]
        if not found or found[0] not in spatial:
            raise ValueError(f"`layer` must name a layer with a spatial feature map, one of "
                             f"{', '.join(chain[i].name for i in spatial)}. Received: "
                             f"layer={layer!r}")
        return chain, found[0]
    if not spatial:
        raise ValueError("The model has no convolutional feature map to explain.")
    return chain, spatial[-1]


def _check_chain(model: Any, images: np.ndarray, probabilities: np.ndarray) -> None:
    """Refuse a model whose layers, applied one after the other, are not the model."""
    direct = np.asarray(model(images, training=False), dtype=np.float64)
    if not np.allclose(direct, probabilities, atol=1e-3):
        raise ValueError("Grad-CAM here needs a model whose layers form one chain (fruitclf's "
                         "CNN presets and backbone presets do); this model's layers, applied "
                         "in order, do not give its output.")


def _grad_cam(chain: list[Any], index: int, images: np.ndarray, targets: list[int] | None
              ) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Heat maps (input size, 0–1), probabilities and the explained class per image."""
    import tensorflow as tf

    head = chain[-1]
    pre_softmax = (type(head).__name__ == "Dense"
                   and getattr(head.activation, "__name__", "") == "softmax")
    x = tf.convert_to_tensor(images, tf.float32)
    with tf.GradientTape() as tape:
        for position, item in enumerate(chain):
            if position == len(chain) - 1 and pre_softmax:
                logits = tf.matmul(tf.cast(x, tf.float32), tf.cast(head.kernel, tf.float32))
                if head.use_bias:
                    logits += tf.cast(head.bias, tf.float32)
                x = tf.nn.softmax(logits)
                break
            x = item(x, training=False)
            if position == index:
                features = x
                tape.watch(features)
        probabilities = tf.cast(x, tf.float32)
        scores = logits if pre_softmax else tf.math.log(probabilities + 1e-12)
        picked = (tf.argmax(probabilities, axis=1) if targets is None
                  else tf.constant(targets, tf.int64))
        chosen = tf.gather(scores, picked, axis=1, batch_dims=1)
    grads = tf.cast(tape.gradient(chosen, features), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    resized = tf.image.resize(cam[..., tf.newaxis], images.shape[1:3], method="bilinear")
    return (np.clip(resized.numpy()[..., 0], 0.0, 1.0), probabilities.numpy().astype(np.float64),
            [int(i) for i in picked.numpy()])
