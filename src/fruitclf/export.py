"""Export a trained model to SavedModel, TFLite or ONNX, with its class names.

Every export takes what the ``.keras`` model takes — a ``float32`` batch of images of the
model's size, ``(batch, height, width, channels)`` with 0–255 pixels — and returns class
probabilities under the name ``probabilities``. Rescaling is inside the graph; resizing is the
caller's, as the stored preprocessing says (:attr:`fruitclf.LoadedModel.preprocessing`).

The route is the same on every supported TensorFlow/Keras:

1. the *inference model*: the model rebuilt with ``float32`` layers (a model trained in mixed
   precision exports too) and without its augmentation block (random layers do nothing at
   inference, and their random operations are not valid in ONNX), with the trained weights;
2. one ``tf.function`` over it, saved with :func:`tf.saved_model.save` with the class names
   and metadata as SavedModel assets — the ``savedmodel`` export;
3. ``tflite``: :meth:`tf.lite.TFLiteConverter.from_saved_model` on that SavedModel, with
   optional float16 or int8 quantisation (int8 calibrated on a folder of images);
4. ``onnx``: ``tf2onnx.convert.from_function`` on the same function, class names and metadata
   in the file's ``metadata_props``.

Keras's own ``model.export(format="litert")`` (Keras >= 3.13) is not used because a model
trained in bfloat16 then needs TensorFlow "Flex" operations that plain TFLite runtimes lack;
``format="onnx"`` (Keras >= 3.8) exports the augmentation block too.

Beside every export ``NAME``, ``NAME.labels.txt`` (one class name per line, in output order)
and ``NAME.json`` (class names, preprocessing, input and output, quantisation, versions) are
written. After writing, the export is run with its own runtime on a few images and compared
with the Keras model (:class:`ExportResult`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _files, _ownership, _quiet
from ._compat import load_custom_objects, versions
from ._validation import check_choice
from .exceptions import ExportError, MissingExtraError

if TYPE_CHECKING:
    from .io import LoadedModel

__all__ = ["ExportResult", "export_model", "read_export_metadata"]

logger = logging.getLogger(__name__)

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
#: File suffix per format; a SavedModel is a folder.
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "savedmodel": ""}
#: ONNX operator set: supported by onnxruntime >= 1.14 and every maintained ONNX runtime.
ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
#: Images run through an export to compare it with the Keras model.
CHECK_IMAGES = 20
#: Images at most used to calibrate int8 quantisation (TFLite's guide suggests 100–500).
CALIBRATION_IMAGES = 200
LABELS_ASSET = "labels.txt"
METADATA_ASSET = "fruitclf.json"
EXTRA_HINT = 'pip install "fruitclf[export]"'


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote, and how closely the export agrees with the model.

    Attributes
    ----------
    path : str
        The exported file (``.tflite``, ``.onnx``) or SavedModel folder.
    format : str
        ``"savedmodel"``, ``"tflite"`` or ``"onnx"``.
    quantize : str
        ``"none"``, ``"float16"`` or ``"int8"``.
    class_names : list of str
        Class names in output order.
    labels_path : str
        The ``<path>.labels.txt`` sidecar: one class name per line.
    metadata_path : str
        The ``<path>.json`` sidecar: class names, preprocessing, input, output, versions.
    size_bytes : int
        Size of the export (all files of a SavedModel folder).
    checked_images : int
        Images run through the export with its own runtime after writing it.
    max_difference : float
        Largest absolute difference between the export's and the Keras model's probabilities
        on those images.
    top1_agreement : float
        Share of those images on which both predict the same class.
    runtime : str
        The runtime the export was checked with, e.g. ``"LiteRT 2.3.0"`` or
        ``"TensorFlow Lite 2.18.1"`` (TensorFlow's own interpreter, used when LiteRT is not
        installed) for TFLite, ``"ONNX Runtime 1.20.1"`` for ONNX.

    Examples
    --------
    >>> result = fruitclf.export_model("run/model.keras", "exports/fruits.tflite")  # doctest: +SKIP
    >>> result.top1_agreement, Path(result.labels_path).read_text().split()  # doctest: +SKIP
    (1.0, ['acai', 'cupuacu'])
    """

    path: str
    format: str
    quantize: str
    class_names: list[str]
    labels_path: str
    metadata_path: str
    size_bytes: int
    checked_images: int
    max_difference: float
    top1_agreement: float
    runtime: str

    def summary(self) -> str:
        """A few lines for a terminal: what was written, its size and its agreement."""
        size = self.size_bytes / 2**20
        quantized = "" if self.quantize == "none" else f", {self.quantize} quantised"
        return "\n".join([
            f"Exported {self.format}{quantized}: {self.path} ({size:.2f} MiB)",
            f"Labels:   {self.labels_path} ({len(self.class_names)} classes)",
            f"Metadata: {self.metadata_path}",
            f"Checked on {self.checked_images} images with {self.runtime}: same class on "
            f"{self.top1_agreement:.0%}, probabilities within {self.max_difference:.1e} of the "
            "Keras model",
        ])


def export_model(
    model: str | os.PathLike[str] | LoadedModel,
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    quantize: str = "none",
    calibration: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    follow_links: bool = False,
) -> ExportResult:
    """Export a fruitclf model to SavedModel, TFLite or ONNX, with its class names.

    Parameters
    ----------
    model : path-like or LoadedModel
        A ``.keras``/``.h5`` file written by fruitclf (e.g. ``RUN_DIR/model.keras``) or what
        :func:`fruitclf.load_model` returned.
    out : path-like
        The export: a ``.tflite`` or ``.onnx`` file, or a folder for a SavedModel. The
        sidecars ``<out>.labels.txt`` and ``<out>.json`` are written beside it.
    format : {"savedmodel", "tflite", "onnx"}, optional
        Default: from the suffix of ``out`` (``.tflite``, ``.onnx``; no suffix: SavedModel).
    quantize : {"none", "float16", "int8"}, default="none"
        TFLite only: store weights in float16 (half the size), or weights and activations in
        int8 (a quarter of the size; calibrated on ``calibration``). The input stays
        ``float32`` 0–255 pixels and the output ``float32`` probabilities.
    calibration : path-like, optional
        A folder of images (searched recursively, e.g. the training folder) like those the
        model will see: calibrates int8 quantisation (up to 200 images) and is used for the
        check after export (20 images; random images without it).
    overwrite : bool, default=False
        Replace an existing export and its sidecars. Without it, existing files are an error
        and nothing is written.
    follow_links : bool, default=False
        Follow links to folders inside ``calibration``.

    Returns
    -------
    ExportResult

    Raises
    ------
    ExportError
        If the format or quantisation is unknown or does not fit, or a target exists.
    MissingExtraError
        If ONNX export is asked and its packages are missing (``pip install "fruitclf[export]"``).
    ModelFileError
        If ``model`` is not a fruitclf model file.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> path = fruitclf.save_model(fruitclf.build_cnn(spec, seed=0), "run/model.keras",
    ...                            class_names=["acai", "cupuacu"])
    >>> result = export_model("run/model.keras", "exports/fruits.tflite")
    >>> result.format, result.labels_path, result.top1_agreement
    ('tflite', 'exports/fruits.tflite.labels.txt', 1.0)
    >>> read_export_metadata("exports/fruits.tflite")["class_names"]
    ['acai', 'cupuacu']
    """
    from .io import LoadedModel, load_model

    fmt = export_format(out, format)
    quantize = check_choice(quantize, "quantize", QUANTIZATIONS)
    if quantize != "none" and fmt != "tflite":
        raise ExportError(f"Quantisation is available for TFLite exports; received "
                          f"quantize={quantize!r} with format={fmt!r}. Export to .tflite, or "
                          "quantise the ONNX file with onnxruntime.quantization.")
    if quantize == "int8" and calibration is None:
        raise ExportError("int8 quantisation calibrates on images like those the model will "
                          "see: pass calibration=<folder of images> (--calibration DIR), "
                          "e.g. the training folder.")
    target = Path(out)
    sidecars = sidecar_paths(target)
    if calibration is not None:
        _ownership.check_outside(out, {"calibration folder": calibration}, "out")
    _check_targets(target, overwrite)
    if fmt == "onnx":
        _onnx_modules()  # a missing extra fails before any work
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    preprocessing = loaded.preprocessing
    calibration_images, check_images = _images_for(calibration, loaded, follow_links)
    metadata = _export_metadata(loaded, fmt, quantize)
    serve = _serving_function(inference_model(loaded.model, strip_augmentation=bool(
        loaded.metadata.get("spec"))), preprocessing.image_size, preprocessing.channels)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The converters and runtimes log their steps from C++ ("Reading SavedModel from",
    # "Created TensorFlow Lite XNNPACK delegate"): left out, real errors kept.
    with _quiet.filtered_native_stderr(), _work_folder(target) as work:
        saved = _write_savedmodel(serve, work / "savedmodel", loaded.class_names, metadata)
        if fmt == "savedmodel":
            built = saved
        elif fmt == "tflite":
            built = _write_tflite(saved, work / "model.tflite", quantize, calibration_images)
        else:
            built = _write_onnx(serve, work / "model.onnx", loaded.class_names, metadata)
        try:
            probabilities = run_export(built, fmt, check_images)
        except (ExportError, MissingExtraError):
            raise
        except Exception as exc:  # each runtime raises its own types
            raise ExportError(f"The {fmt} export does not run with its runtime "
                              f"({_first_line(exc)}); nothing was written.") from exc
        # A direct call, not predict(): no function to trace for one batch.
        reference = np.asarray(loaded.model(check_images, training=False), np.float64)
        _place(built, target, overwrite)
    labels_path, metadata_path = sidecars
    _files.write_text(labels_path, "".join(f"{name}\n" for name in loaded.class_names))
    _files.write_json(metadata_path, metadata)
    result = ExportResult(
        path=os.fspath(target), format=fmt, quantize=quantize,
        class_names=list(loaded.class_names), labels_path=os.fspath(labels_path),
        metadata_path=os.fspath(metadata_path), size_bytes=_size(target),
        checked_images=len(check_images),
        max_difference=float(np.abs(probabilities - reference).max()),
        top1_agreement=float(np.mean(probabilities.argmax(1) == reference.argmax(1))),
        runtime=export_runtime(fmt),
    )
    logger.debug("%s", result.summary())
    return result


def export_format(out: str | os.PathLike[str], format: str | None) -> str:
    """The export format: ``format`` if given (checked against ``out``), else from the suffix."""
    suffix = Path(out).suffix.lower()
    if format is None:
        by_suffix = {s: f for f, s in SUFFIXES.items() if s}
        if suffix in by_suffix:
            return by_suffix[suffix]
        if suffix:
            raise ExportError(
                f"Cannot tell the export format from {os.fspath(out)!r}: use a .tflite or "
                ".onnx file, a folder name without a suffix for a SavedModel, or pass the "
                "format (--format savedmodel|tflite|onnx).")
        return "savedmodel"
    fmt = check_choice(format, "format", FORMATS)
    expected = SUFFIXES[fmt]
    if (expected and suffix != expected) or (not expected and suffix in (".tflite", ".onnx")):
        wanted = f"a {expected} file" if expected else "a folder name without a suffix"
        raise ExportError(f"format={fmt!r} writes {wanted}; received out={os.fspath(out)!r}.")
    return fmt


def sidecar_paths(target: str | os.PathLike[str]) -> tuple[Path, Path]:
    """The ``.labels.txt`` and ``.json`` files written beside an export."""
    _, labels, metadata = _ownership.export_files(target)
    return labels, metadata


def _check_targets(target: Path, overwrite: bool) -> None:
    """Refuse existing targets without ``overwrite``, and with it anything that is not an
    export's own file (a user's folder or file at the export's path)."""
    paths = _ownership.export_files(target)
    existing = [os.fspath(p) for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        raise ExportError(f"{', '.join(repr(p) for p in existing)} already exist"
                          f"{'s' if len(existing) == 1 else ''}; nothing was written. Choose "
                          "another path, or pass overwrite=True (--overwrite) to replace.")
    for path in paths[1:]:
        if os.path.isdir(path):
            raise ExportError(f"{os.fspath(path)!r} is a folder; an export writes a file there.")
    foreign = _ownership.foreign_export_entries(target)
    if foreign:
        shown = ", ".join(repr(p) for p in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ExportError(
            f"--overwrite replaces only an export that fruitclf wrote, and {shown}{more} "
            f"{'is' if len(foreign) == 1 else 'are'} not part of one; nothing was written or "
            "removed. Choose another --out, or move them away.")


def _export_metadata(loaded: LoadedModel, fmt: str, quantize: str) -> dict[str, Any]:
    preprocessing = loaded.preprocessing
    height, width = preprocessing.image_size
    return {
        "format": "fruitclf-export",
        "version": 1,
        "export_format": fmt,
        "quantize": quantize,
        "class_names": list(loaded.class_names),
        "input": {"name": INPUT_NAME, "shape": [None, height, width, preprocessing.channels],
                  "dtype": "float32", "range": [0, 255],
                  "resize": "to image_size with preprocessing.interpolation, outside the model"},
        "output": {"name": OUTPUT_NAME, "shape": [None, len(loaded.class_names)],
                   "dtype": "float32", "meaning": "class probabilities in class_names order"
                   + ("" if loaded.temperature == 1.0 else
                      ", before temperature scaling: divide their logarithms by "
                      "decision.temperature and normalise")},
        "decision": {"temperature": loaded.temperature,
                     "min_confidence": loaded.min_confidence},
        "preprocessing": preprocessing.to_dict(),
        "trained_precision": str(loaded.metadata.get("precision", "float32")),
        "source": os.path.basename(loaded.path),
        "versions": versions(),
    }


def inference_model(model: Any, *, strip_augmentation: bool = True) -> Any:
    """``model`` rebuilt for inference: ``float32`` layers, without its augmentation block.

    The layers are rebuilt from the model's config with every mixed-precision policy replaced
    by ``float32`` and get the trained weights. With ``strip_augmentation`` (for models built
    by :func:`fruitclf.build_cnn`, whose layers form one chain) the layer called
    ``augmentation`` is left out of the chain.
    """
    import keras

    clone = model.__class__.from_config(_float32_config(model.get_config()),
                                        custom_objects=load_custom_objects())
    clone.set_weights(model.get_weights())
    if not strip_augmentation or "augmentation" not in [layer.name for layer in clone.layers]:
        return clone
    inputs = keras.Input(shape=model.input_shape[1:], name=INPUT_NAME)
    x = inputs
    for layer in clone.layers[1:]:
        if layer.name != "augmentation":
            x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _float32_config(config: Any) -> Any:
    """``config`` with every mixed-precision dtype policy replaced by ``"float32"``."""
    if isinstance(config, list):
        return [_float32_config(item) for item in config]
    if not isinstance(config, dict):
        return config
    out = {}
    for key, value in config.items():
        name = value.get("config", {}).get("name") if isinstance(value, dict) else value
        if key == "dtype" and isinstance(name, str) and name.startswith("mixed_"):
            out[key] = "float32"
        else:
            out[key] = _float32_config(value)
    return out


def _serving_function(model: Any, image_size: tuple[int, int], channels: int) -> Any:
    import tensorflow as tf

    signature = [tf.TensorSpec([None, *image_size, channels], tf.float32, name=INPUT_NAME)]

    def serve(image: Any) -> dict[str, Any]:
        return {OUTPUT_NAME: tf.cast(model(image, training=False), tf.float32)}

    return tf.function(serve, input_signature=signature, autograph=False)


def _write_savedmodel(serve: Any, folder: Path, class_names: Sequence[str],
                      metadata: dict[str, Any]) -> Path:
    import tensorflow as tf

    staging = folder.with_name("assets-staging")
    staging.mkdir()
    (staging / LABELS_ASSET).write_text("".join(f"{n}\n" for n in class_names), "utf-8")
    (staging / METADATA_ASSET).write_text(json.dumps(metadata, indent=2) + "\n", "utf-8")
    module = tf.Module()
    module.serve = serve
    # The variables the function reads, as TensorFlow variables: the TFLite converter then
    # freezes them into constants (Keras variable wrappers would stay unread resources).
    module.model_variables = list(serve.get_concrete_function().variables)
    module.labels_file = tf.saved_model.Asset(os.fspath(staging / LABELS_ASSET))
    module.metadata_file = tf.saved_model.Asset(os.fspath(staging / METADATA_ASSET))
    tf.saved_model.save(module, os.fspath(folder), signatures={"serving_default": serve})
    return folder


def _write_tflite(saved: Path, target: Path, quantize: str,
                  calibration: np.ndarray | None) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(os.fspath(saved))
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        assert calibration is not None  # checked by export_model
        images = calibration

        def representative() -> Iterator[list[np.ndarray]]:
            for image in images:
                yield [image[None].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        target.write_bytes(converter.convert())
    except Exception as exc:  # the converter raises several types with long MLIR dumps
        raise ExportError(f"TFLite conversion failed: {_first_line(exc)}") from exc
    return target


def _onnx_modules() -> tuple[Any, Any]:
    """``(tf2onnx, onnx)``, or a one-line error naming the extra."""
    try:
        import onnx
        import tf2onnx
    except ImportError as exc:
        raise MissingExtraError(f"ONNX export needs tf2onnx and onnx ({exc.name or exc} is "
                                f"missing): {EXTRA_HINT}") from None
    except AttributeError as exc:  # onnx >= 1.19 with the ml_dtypes that TensorFlow 2.16 pins
        raise MissingExtraError(f"The installed onnx does not work with this ml_dtypes ({exc})"
                                '; install an older onnx: pip install "onnx<1.19"') from None
    return tf2onnx, onnx


def _write_onnx(serve: Any, target: Path, class_names: Sequence[str],
                metadata: dict[str, Any]) -> Path:
    tf2onnx, onnx = _onnx_modules()
    quiet = logging.getLogger("tf2onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # optimiser passes that fail are skipped, with tracebacks
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=serve.input_signature,
                                                 opset=ONNX_OPSET)
    except Exception as exc:  # tf2onnx raises many types for unsupported operations
        raise ExportError(f"ONNX conversion failed: {_first_line(exc)}") from exc
    finally:
        quiet.setLevel(level)
    for key, value in (("class_names", json.dumps(list(class_names))),
                       ("fruitclf", json.dumps(metadata))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "fruitclf"
    onnx.save(proto, os.fspath(target))
    return target


def run_export(path: str | os.PathLike[str], fmt: str, images: np.ndarray) -> np.ndarray:
    """Class probabilities of ``images`` from an export, run with its own runtime."""
    batch = np.asarray(images, np.float32)
    if fmt == "savedmodel":
        import tensorflow as tf

        signature = tf.saved_model.load(os.fspath(path)).signatures["serving_default"]
        return np.asarray(signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME], np.float64)
    if fmt == "tflite":
        runner = tflite_interpreter(path).get_signature_runner("serving_default")
        return np.concatenate([np.asarray(runner(**{INPUT_NAME: batch[i:i + 1]})[OUTPUT_NAME],
                                          np.float64) for i in range(len(batch))])
    try:
        import onnxruntime
    except ImportError:
        raise MissingExtraError(f"Running an ONNX export needs onnxruntime: {EXTRA_HINT}"
                                ) from None
    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    extra = [i.name for i in session.get_inputs() if i.name != INPUT_NAME]
    if extra:  # tf2onnx left constants of the graph unfrozen (e.g. EfficientNetV2's Normalization)
        raise ExportError(f"The ONNX conversion left {len(extra)} constants of the model as "
                          f"inputs ({', '.join(extra[:2])}); export this model to tflite or "
                          "savedmodel instead.")
    return np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0], np.float64)


#: TensorFlow modules whose notices about their own replacement are not the user's to act on:
#: TensorFlow 2.18 to 2.21 warn on every ``tf.lite.Interpreter`` that LiteRT replaces it (2.18:
#: "Please use the LiteRT interpreter ...", later: "... is deprecated and is scheduled for
#: deletion"). Within the TensorFlow versions fruitclf supports it runs an export as LiteRT
#: does, and LiteRT is used instead whenever it is installed.
_TFLITE_NOTICE_MODULE = r"tensorflow\.lite\.python\.interpreter"


def _litert_interpreter() -> Any:
    """LiteRT's ``Interpreter`` class, or None when ai-edge-litert is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        return None
    return Interpreter


def tflite_runtime() -> str:
    """The runtime that runs TFLite exports here, with its version.

    LiteRT (``pip install ai-edge-litert``) when installed, else TensorFlow's own
    ``tf.lite.Interpreter``, which every supported TensorFlow (2.16-2.21) has.
    """
    if _litert_interpreter() is not None:
        return f"LiteRT {_distribution_version('ai-edge-litert')}"
    return f"TensorFlow Lite {versions()['tensorflow']}"


def tflite_interpreter(path: str | os.PathLike[str]) -> Any:
    """A TFLite interpreter for ``path``, from the runtime :func:`tflite_runtime` names."""
    litert = _litert_interpreter()
    if litert is not None:
        return litert(model_path=os.fspath(path))
    import tensorflow as tf

    interpreter = getattr(tf.lite, "Interpreter", None)
    if interpreter is None:  # a TensorFlow newer than those supported
        raise MissingExtraError(f"TensorFlow {tf.__version__} has no TFLite interpreter; "
                                "install LiteRT to run TFLite exports: pip install "
                                "ai-edge-litert")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=_TFLITE_NOTICE_MODULE)
        return interpreter(model_path=os.fspath(path))


def export_runtime(fmt: str) -> str:
    """The runtime, with its version, that :func:`run_export` runs a ``fmt`` export with."""
    if fmt == "tflite":
        return tflite_runtime()
    if fmt == "onnx":
        return f"ONNX Runtime {_distribution_version('onnxruntime')}"
    return f"TensorFlow {versions()['tensorflow']}"


def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:  # imported from a source tree, not installed
        return "(version unknown)"


def read_export_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of an export: from inside the file where the format keeps it, else from
    its ``.json`` sidecar.

    A SavedModel keeps it in ``assets/fruitclf.json`` and an ONNX file in its
    ``metadata_props``; for TFLite it is read from the sidecar.

    Raises
    ------
    ExportError
        If ``path`` is not an export written by :func:`export_model`.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> path = fruitclf.save_model(fruitclf.build_cnn(spec, seed=0), "run/model.keras",
    ...                            class_names=["acai", "cupuacu"])
    >>> result = fruitclf.export_model("run/model.keras", "exports/fruits.onnx",
    ...                                overwrite=True)
    >>> metadata = read_export_metadata("exports/fruits.onnx")  # from inside the ONNX file
    >>> metadata["class_names"], metadata["input"]["shape"]
    (['acai', 'cupuacu'], [None, 32, 32, 3])
    """
    target = Path(path)
    if not os.path.exists(target):
        raise ExportError(f"Export not found: {os.fspath(path)!r}.")
    inside: Any = None
    if target.is_dir():
        asset = target / "assets" / METADATA_ASSET
        inside = asset.read_text("utf-8") if asset.is_file() else None
    elif target.suffix.lower() == ".onnx":
        _, onnx = _onnx_modules()
        props = {p.key: p.value for p in onnx.load(os.fspath(target),
                                                   load_external_data=False).metadata_props}
        inside = props.get("fruitclf")
    if inside is None:
        sidecar = sidecar_paths(target)[1]
        if not sidecar.is_file():
            raise ExportError(f"{os.fspath(path)!r} has no fruitclf metadata inside and no "
                              f"sidecar {os.fspath(sidecar)!r}; export it with "
                              "fruitclf.export_model.")
        inside = sidecar.read_text("utf-8")
    metadata = json.loads(inside)
    if not isinstance(metadata, dict) or metadata.get("format") != "fruitclf-export":
        raise ExportError(f"{os.fspath(path)!r} does not hold fruitclf export metadata.")
    return metadata


def _images_for(calibration: str | os.PathLike[str] | None, loaded: LoadedModel,
                follow_links: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """The calibration images (None without a folder) and the images the export is checked
    on (the first of those, or random images)."""
    if calibration is None:
        return None, _random_images(loaded, CHECK_IMAGES)
    images = _folder_images(calibration, loaded, CALIBRATION_IMAGES, follow_links)
    return images, images[:CHECK_IMAGES]


def _folder_images(folder: str | os.PathLike[str], loaded: LoadedModel, limit: int,
                   follow_links: bool = False) -> np.ndarray:
    """Up to ``limit`` decodable images of ``folder`` (spread over it), model-ready."""
    from .data import IMAGE_EXTENSIONS, image_files, load_checked

    if not os.path.isdir(folder):
        raise ExportError(f"Calibration folder not found: {os.fspath(folder)!r}. Pass a "
                          "folder of images like those the model will see.")
    paths = [p for p, _ in image_files(folder, follow_links=follow_links)]
    step = max(1, len(paths) // limit)
    chosen = paths[::step][:limit]
    checked = load_checked(chosen, loaded.preprocessing)
    if not checked.paths:
        raise ExportError(f"No usable images in {os.fspath(folder)!r} to calibrate on "
                          f"(allowed extensions: {' '.join(IMAGE_EXTENSIONS)}).")
    return np.asarray(checked.arrays(), np.float32)


def _random_images(loaded: LoadedModel, count: int) -> np.ndarray:
    """Smooth random images (blurred noise, 0–255) to compare an export with its model."""
    preprocessing = loaded.preprocessing
    height, width = preprocessing.image_size
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, (count, 8, 8, preprocessing.channels))
    rows = np.linspace(0, 7, height).round().astype(int)
    cols = np.linspace(0, 7, width).round().astype(int)
    return small[:, rows][:, :, cols].astype(np.float32)


#: Held inside a work folder while its export runs, so that another export can tell a
#: killed export's leftover from one in progress.
_WORK_LOCK = ".lock"


@contextlib.contextmanager
def _work_folder(target: Path) -> Iterator[Path]:
    """A temporary folder beside ``target`` (same file system: the final move is a rename);
    leftovers of killed exports to the same target are removed first."""
    _remove_leftover_work(target)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=_files.TMP_MARK,
                                 dir=target.parent))
    lock = _files.exclusive_lock(work / _WORK_LOCK, "{holder}", ExportError)
    try:
        yield work
    finally:
        if lock is not None:
            lock.close()
        shutil.rmtree(work, ignore_errors=True)


def _remove_leftover_work(target: Path) -> None:
    """Remove the work folders (and folders set aside) that killed exports of ``target``
    left beside it; one whose export still runs holds its lock and is left alone."""
    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            if not (entry.name.startswith(prefix) and _files.TMP_MARK in entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                if not _files.is_locked(os.path.join(entry.path, _WORK_LOCK)):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    logger.info("Removed %s, left by an export that was stopped.", entry.path)
            elif entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _place(built: Path, target: Path, overwrite: bool) -> None:
    """Move ``built`` to ``target`` in one rename; an existing export is replaced only with
    ``overwrite`` (a replaced folder is renamed aside first, then its own files deleted)."""
    aside = None
    try:
        if os.path.lexists(target):
            if not overwrite:
                raise ExportError(f"{os.fspath(target)!r} appeared during the export; "
                                  "nothing was replaced.")
            if target.is_dir() and not target.is_symlink():
                _check_targets(target, overwrite)  # nothing foreign appeared meanwhile
                aside = _files.temporary_name(target)
                os.replace(target, aside)
        os.replace(built, target)
    except OSError as exc:
        if aside is not None and not os.path.lexists(target):
            os.replace(aside, target)
        raise _files.write_error(target, exc) from None
    if aside is not None:
        try:
            _ownership.remove_export(aside)
        except (OSError, FileExistsError) as exc:
            logger.warning("Kept %s, the replaced export, because %s.", aside, exc)


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
