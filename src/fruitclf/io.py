"""Save and load models together with what is needed to use them.

A fruitclf model file is an ordinary Keras ``.keras`` or ``.h5`` file that also carries, in
the same file, the class names, the preprocessing (input size, resize method), the spec, the
versions that wrote it and a training summary. Keras reads it like any other; fruitclf reads
the extra part too, so a reloaded model predicts class names, not bare indices.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _files
from ._compat import load_custom_objects, versions
from ._validation import check_class_names, class_name_problem, model_format, short_repr
from .data import Preprocessing
from .exceptions import ModelFileError, VersionCompatibilityError

if TYPE_CHECKING:
    import keras

    from .data import ImageFolderDataset
    from .data.quality import FingerprintIndex, LeakedPair
    from .evaluation import Evaluator, Predictions
    from .spec import CNNSpec

__all__ = ["LoadedModel", "load_model", "read_metadata", "save_model"]

METADATA_KEY = "fruitclf_metadata"
KERAS_ENTRY = "fruitclf.json"


def model_precision(model: Any) -> str:
    """The mixed policy a built model's layers compute in, or ``"float32"``."""
    for layer in model.layers:
        name = str(getattr(getattr(layer, "dtype_policy", None), "name", ""))
        if name.startswith("mixed_"):
            return name
    return "float32"


def build_metadata(
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing | None = None,
    spec: CNNSpec | None = None,
    training: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the metadata dict stored with a model."""
    names = list(class_names)
    if not names or not all(isinstance(n, str) for n in names):
        raise TypeError(f"`class_names` must be a non-empty list of str. Received: "
                        f"{short_repr(class_names)}")
    problem = class_name_problem(names)
    if problem is not None:
        raise ValueError(f"`class_names` cannot label a model: {problem}.")
    return {
        "format": "fruitclf-model",
        "version": 1,
        "class_names": names,
        "preprocessing": (preprocessing or Preprocessing()).to_dict(),
        "spec": spec.to_dict() if spec is not None else None,
        "versions": versions(),
        "training": dict(training) if training else {},
        **(dict(extra) if extra else {}),
    }


def save_model(
    model: keras.Model,
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str],
    preprocessing: Preprocessing | None = None,
    spec: CNNSpec | None = None,
    training: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    include_optimizer: bool = True,
    training_index: FingerprintIndex | None = None,
) -> Path:
    """Save a model with its class names and preprocessing, as ``.keras`` or ``.h5``.

    The file is written next to the target under a temporary name and renamed into place, so
    an interrupted save never leaves a half-written file at ``path``.

    Parameters
    ----------
    model : keras.Model
        The model.
    path : path-like
        Target file, ending in ``.keras`` or ``.h5``.
    class_names : sequence of str
        Class names in label order.
    preprocessing : Preprocessing, optional
        How images are prepared for the model (default: the model's input size, bilinear,
        antialiased).
    spec : CNNSpec, optional
        The spec the model was built from.
    training : mapping, optional
        A training summary (e.g. ``TrainingHistory.summary()``).
    extra : mapping, optional
        More JSON-serialisable entries for the metadata.
    include_optimizer : bool, default=True
        Keep the optimizer state (needed to resume training).
    training_index : FingerprintIndex, optional
        Fingerprints of the training images
        (:meth:`ImageFolderDataset.fingerprint_index`), so that
        :meth:`LoadedModel.find_leakage` finds test images the model was trained on.

    Returns
    -------
    pathlib.Path
        The written file.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> model = fruitclf.build_cnn(spec)
    >>> save_model(model, "run/model.h5", class_names=["acai", "cupuacu"])
    PosixPath('run/model.h5')
    """
    fmt = model_format(path)
    if preprocessing is None:
        height, width, channels = (*model.input_shape[1:4], None, None, None)[:3]
        if height and width:
            preprocessing = Preprocessing(image_size=(int(height), int(width)),
                                          color_mode="grayscale" if channels == 1 else "rgb")
    metadata = build_metadata(class_names=class_names, preprocessing=preprocessing, spec=spec,
                              training=training, extra=extra)
    metadata["precision"] = model_precision(model)
    if training_index is not None:
        metadata["training_index"] = training_index.to_dict()
    check_class_names(metadata["class_names"], model.output_shape[-1])
    target = Path(path)
    payload = json.dumps(metadata)
    with _files.atomic_path(target) as tmp:
        # .h5 is written on purpose (for older tools): Keras's "legacy format" notice is noise.
        absl = logging.getLogger("absl")
        level = absl.level
        absl.setLevel(logging.ERROR)
        try:
            model.save(os.fspath(tmp), include_optimizer=include_optimizer)
        finally:
            absl.setLevel(level)
        if fmt == ".keras":
            with zipfile.ZipFile(tmp, "a") as archive:
                archive.writestr(KERAS_ENTRY, payload)
        else:
            import h5py

            with h5py.File(tmp, "a") as h5:
                h5.attrs[METADATA_KEY] = payload
    return target


def copy_with_metadata(source: str | os.PathLike[str], target: str | os.PathLike[str],
                       updates: Mapping[str, Any]) -> Path:
    """Copy a model file written by fruitclf to ``target`` (same format), its metadata
    updated with ``updates``; the weights are copied byte for byte. Written under a
    temporary name and renamed into place.

    Raises
    ------
    ModelFileError
        If ``source`` is not a fruitclf model file.
    ValueError
        If ``target`` does not end like ``source``.
    """
    import shutil

    fmt = _check_model_file(source)
    if model_format(target, "out") != fmt:
        raise ValueError(f"`out` must be a {fmt} file like the model it copies. Received: "
                         f"out={os.fspath(target)!r}")
    metadata = {**read_metadata(source), **updates}
    payload = json.dumps(metadata)
    with _files.atomic_path(target) as tmp:
        if fmt == ".h5":
            import h5py

            shutil.copyfile(source, tmp)
            with h5py.File(tmp, "a") as h5:
                h5.attrs[METADATA_KEY] = payload
            return Path(target)
        with zipfile.ZipFile(source) as archive, zipfile.ZipFile(
                tmp, "w", zipfile.ZIP_DEFLATED) as copy:
            for member in archive.infolist():
                if member.filename != KERAS_ENTRY:
                    copy.writestr(member, archive.read(member))
            copy.writestr(KERAS_ENTRY, payload)
    return Path(target)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the metadata stored in a model file, without loading the model.

    Raises
    ------
    ModelFileError
        If the file is missing, is not a Keras model file, or has no fruitclf metadata.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> path = save_model(fruitclf.build_cnn(spec), "run/model.keras",
    ...                   class_names=["acai", "cupuacu"])
    >>> read_metadata("run/model.keras")["class_names"]  # no Keras needed to read it
    ['acai', 'cupuacu']
    """
    fmt = _check_model_file(path)
    try:
        if fmt == ".keras":
            with zipfile.ZipFile(path) as archive:
                _check_members(path, archive)
                if KERAS_ENTRY not in archive.namelist():
                    raise ModelFileError(
                        f"{os.fspath(path)!r} is a Keras model without fruitclf metadata "
                        "(class names). Save it with fruitclf.save_model."
                    )
                return _check_metadata(path, json.loads(archive.read(KERAS_ENTRY)))
        import h5py

        with h5py.File(path, "r") as h5:
            if METADATA_KEY not in h5.attrs:
                raise ModelFileError(
                    f"{os.fspath(path)!r} is a Keras model without fruitclf metadata "
                    "(class names). Save it with fruitclf.save_model."
                )
            raw = h5.attrs[METADATA_KEY]
            return _check_metadata(path, json.loads(raw.decode() if isinstance(raw, bytes)
                                                    else raw))
    except ModelFileError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"Cannot read model file {os.fspath(path)!r}: {exc}") from None


#: Bytes a member of a ``.keras`` archive may inflate to before fruitclf reads it (a guard
#: against zip bombs): fruitclf's metadata, Keras's config and metadata, and the weights
#: when the model's size is not known from its spec.
MEMBER_LIMITS = {KERAS_ENTRY: 16 << 20, "config.json": 64 << 20, "metadata.json": 1 << 20}
WEIGHTS_LIMIT = 4 << 30
#: Bytes of weights per parameter a saved model may hold: float32 weights and up to three
#: optimizer slots; plus a fixed allowance for the HDF5 structure and the config.
WEIGHT_BYTES_PER_PARAM = 16
WEIGHTS_OVERHEAD = 16 << 20


def _check_members(path: str | os.PathLike[str], archive: zipfile.ZipFile) -> None:
    """Refuse, before reading any member, a ``.keras`` archive with unsafe member names or a
    member that inflates past its limit."""
    for info in archive.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise ModelFileError(f"{os.fspath(path)!r} holds a member with an unsafe name, "
                                 f"{short_repr(name, 80)}; it is not a model fruitclf or Keras "
                                 "wrote.")
        limit = MEMBER_LIMITS.get(name, WEIGHTS_LIMIT)
        if info.file_size > limit:
            raise ModelFileError(
                f"{os.fspath(path)!r} is refused: its member {short_repr(name, 80)} inflates "
                f"to {info.file_size / 2**20:,.0f} MiB, above the {limit / 2**20:,.0f} MiB "
                "limit for it. The file is damaged or was changed; save the model again.")


def _check_weights_size(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> None:
    """Refuse weights far larger than the stored spec's parameters can fill, before Keras
    reads them."""
    from .spec import CNNSpec

    stored = metadata.get("spec")
    if not isinstance(stored, dict) or stored.get("backbone"):
        return  # the .keras member limit above still holds
    try:
        params = CNNSpec.from_dict(stored).describe().total_params
    except (TypeError, ValueError, KeyError):
        return  # a spec this version cannot read: Keras reports the model's own problems
    limit = params * WEIGHT_BYTES_PER_PARAM + WEIGHTS_OVERHEAD
    if _check_model_file(path) == ".keras":
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if i.filename.endswith(".h5")]
        size = sum(i.file_size for i in members)
        what = f"weights ({', '.join(i.filename for i in members[:3])})"
    else:
        size, what = os.path.getsize(path), "weights"
    if size > limit:
        raise ModelFileError(
            f"{os.fspath(path)!r} is refused: its {what} inflate to {size / 2**20:,.0f} MiB, "
            f"more than its spec's {params:,} parameters can fill ({limit / 2**20:,.0f} MiB "
            "at most). The file is damaged or was changed; save the model again.")


def _check_metadata(path: str | os.PathLike[str], metadata: Any) -> dict[str, Any]:
    """Return ``metadata`` if it has the stored shape, else raise a one-line ModelFileError."""

    def damaged(what: str) -> ModelFileError:
        return ModelFileError(f"{os.fspath(path)!r} has damaged fruitclf metadata: {what}. "
                              "Save the model again with fruitclf.save_model.")

    if not isinstance(metadata, dict):
        raise damaged(f"expected an object, found {type(metadata).__name__}")
    if metadata.get("format", "fruitclf-model") != "fruitclf-model":
        raise damaged(f"format is {metadata.get('format')!r}, not 'fruitclf-model'")
    version = metadata.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise damaged(f"version must be an int, found {version!r}")
    if version > 1:
        raise ModelFileError(
            f"{os.fspath(path)!r} was written by a newer fruitclf (metadata version {version}); "
            "upgrade fruitclf to read it."
        )
    names = metadata.get("class_names")
    if not isinstance(names, list) or not names:
        raise damaged(f"class_names must be a non-empty list of str, found {short_repr(names, 80)}")
    problem = class_name_problem(names)
    if problem is not None:
        raise damaged(f"class_names: {problem}")
    for key, kinds in (("preprocessing", (dict,)), ("spec", (dict, type(None))),
                       ("training", (dict,)), ("history", (dict,)), ("resume", (dict,)),
                       ("versions", (dict,)), ("precision", (str,)),
                       ("training_index", (dict,))):
        if key in metadata and not isinstance(metadata[key], kinds):
            raise damaged(f"{key} must be {' or '.join(k.__name__ for k in kinds)}, found "
                          f"{type(metadata[key]).__name__}")
    try:
        preprocessing = Preprocessing.from_dict(metadata.get("preprocessing") or {})
    except (TypeError, ValueError) as exc:
        raise damaged(f"preprocessing: {exc}") from None
    spec = metadata.get("spec")
    shape = spec.get("input_shape") if isinstance(spec, dict) else None
    if (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) for v in shape)
            and tuple(shape[:2]) != tuple(preprocessing.image_size)):
        raise damaged(f"preprocessing image_size {list(preprocessing.image_size)} differs from "
                      f"the {shape[:2]} the model was built and trained for")
    return metadata


def _load_error(path: str | os.PathLike[str], metadata: Mapping[str, Any],
                exc: Exception) -> ModelFileError:
    written = metadata.get("versions", {})
    here = versions()
    reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if written and (written.get("keras"), written.get("tensorflow")) != (
        here["keras"], here["tensorflow"]
    ):
        return VersionCompatibilityError(
            f"Cannot load {os.fspath(path)!r}: written by Keras {written.get('keras')} / "
            f"TensorFlow {written.get('tensorflow')}, read by Keras {here['keras']} / "
            f"TensorFlow {here['tensorflow']} ({type(exc).__name__}: {reason}). Load it with "
            "the versions that wrote it and save it again in the other format."
        )
    return ModelFileError(f"Cannot load model {os.fspath(path)!r}: {type(exc).__name__}: {reason}")


def _refused_as_unsafe(exc: BaseException) -> bool:
    """True when Keras's safe mode refused to run code stored in the file."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if "safe_mode" in str(current) or "unsafe" in str(current).lower():
            return True
        current = current.__cause__ or current.__context__
    return False


def _rebuild_from_spec(path: str | os.PathLike[str], metadata: Mapping[str, Any]) -> Any:
    """Build a backbone model from its stored spec and load the file's weights, or None.

    Keras's legacy ``.h5`` loader cannot rebuild some ``keras.applications`` graphs
    (MobileNetV3's hard-swish passes plain floats between operations); the weights in the
    file are intact, and the spec says how to build the model that holds them.
    """
    from .model import build_cnn
    from .spec import CNNSpec

    stored = metadata.get("spec")
    if _check_model_file(path) != ".h5" or not isinstance(stored, dict) or not stored.get(
            "backbone"):
        return None
    try:
        spec = CNNSpec.from_dict(stored).replace(weights=None)  # the file holds the weights
        model = build_cnn(spec, precision=str(metadata.get("precision", "float32")))
        _match_trainable(model, path)  # the legacy format orders weights by trainability
        model.load_weights(os.fspath(path))
    except Exception:  # the original loading error is the one to report
        return None
    return model


def _match_trainable(model: Any, path: str | os.PathLike[str]) -> None:
    """Give ``model``'s layers the trainable flags recorded in an ``.h5`` file's config."""
    import h5py

    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])

    def apply(layer: Any, layer_config: Mapping[str, Any]) -> None:
        inner = layer_config.get("config", {})
        if "trainable" in inner:
            layer.trainable = bool(inner["trainable"])
        children = {c.get("config", {}).get("name"): c for c in inner.get("layers", [])}
        for child in getattr(layer, "layers", []):
            if child.name in children:
                apply(child, children[child.name])

    apply(model, config)


def _check_model_file(path: str | os.PathLike[str]) -> str:
    if not os.path.exists(path):
        raise ModelFileError(
            f"Model file not found: {os.fspath(path)!r}. Pass a .keras or .h5 file written by "
            "fruitclf (e.g. RUN_DIR/model.keras)."
        )
    if os.path.isdir(path):
        raise ModelFileError(_folder_hint(path))
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            raise ModelFileError(f"{os.fspath(path)!r} is a damaged (truncated?) .keras file.")
        return ".keras"
    if magic == b"\x89HDF\r\n\x1a\n":
        return ".h5"
    raise ModelFileError(
        f"{os.fspath(path)!r} is not a Keras model file (expected a .keras zip archive or an "
        "HDF5 .h5 file)."
    )


def _folder_hint(path: str | os.PathLike[str]) -> str:
    """Why a folder is not a model file, and which file to pass instead."""
    folder = Path(path)
    models = [folder / name for name in ("model.keras", "model.h5") if (folder / name).is_file()]
    if models:
        return (f"{os.fspath(path)!r} is a run folder, not a model file; pass the model in it: "
                f"{os.fspath(models[0])!r}.")
    if (folder / "saved_model.pb").is_file():
        return (f"{os.fspath(path)!r} is a SavedModel folder (an export): load it with "
                "tf.saved_model.load, or pass the .keras or .h5 file it was exported from.")
    return f"{os.fspath(path)!r} is a folder; pass a .keras or .h5 model file."


@dataclasses.dataclass
class LoadedModel:
    """A model read by :func:`load_model`, with what is needed to use it.

    Attributes
    ----------
    model : keras.Model
        The Keras model.
    class_names : list of str
        Class names in label order.
    metadata : dict
        Everything stored with the model (preprocessing, spec, versions, training summary).
    path : str
        The file it came from.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> path = fruitclf.save_model(fruitclf.build_cnn(spec), "run/model.h5",
    ...                            class_names=["acai", "cupuacu"])
    >>> loaded = fruitclf.load_model("run/model.h5")
    >>> loaded.class_names, loaded.metadata["versions"]["keras"]
    (['acai', 'cupuacu'], '3...')
    """

    model: keras.Model
    class_names: list[str]
    metadata: dict[str, Any]
    path: str

    @property
    def preprocessing(self) -> Preprocessing:
        """How images are prepared for this model."""
        return Preprocessing.from_dict(self.metadata.get("preprocessing") or {})

    @property
    def temperature(self) -> float:
        """The temperature its probabilities are scaled with (1.0 unless
        :func:`fruitclf.calibrate_model` fitted one)."""
        value = (self.metadata.get("decision") or {}).get("temperature")
        return float(value) if isinstance(value, int | float) and value > 0 else 1.0

    @property
    def min_confidence(self) -> float | None:
        """The confidence below which :meth:`predict` answers ``"unsure"`` by default (None
        unless one was stored with :func:`fruitclf.calibrate_model`)."""
        value = (self.metadata.get("decision") or {}).get("min_confidence")
        return float(value) if isinstance(value, int | float) and 0 <= value <= 1 else None

    def evaluator(self) -> Evaluator:
        """An :class:`~fruitclf.Evaluator` of this model, with its preprocessing and
        temperature."""
        from .evaluation import Evaluator

        return Evaluator(self.model, self.class_names, preprocessing=self.preprocessing,
                         temperature=self.temperature)

    @property
    def tta(self) -> int:
        """Test-time views the run that trained this model measured its test numbers with
        (1 when not recorded): the default of :meth:`predict` and ``fruitclf evaluate``, so
        that they reproduce the run's numbers."""
        recorded = (self.metadata.get("training") or {}).get("tta")
        return recorded if isinstance(recorded, int) and recorded >= 1 else 1

    @property
    def training_index(self) -> FingerprintIndex | None:
        """Fingerprints of the images the model was trained on, when its file keeps them
        (the models :func:`fruitclf.run` writes, unless ``training_index=False``); None
        otherwise."""
        from .data.quality import FingerprintIndex

        stored = self.metadata.get("training_index")
        if stored is None:
            return None
        try:
            return FingerprintIndex.from_dict(stored)
        except ValueError as exc:
            raise ModelFileError(f"{self.path!r} has a damaged training index: {exc}. "
                                 "Its predictions are unaffected; save it again without "
                                 "the index to silence this.") from None

    def find_leakage(self, test: ImageFolderDataset, *, threshold: float | None = None,
                     progress: bool | None = None) -> list[LeakedPair]:
        """Find the images of ``test`` that the model was trained on, from the fingerprint
        index its file keeps (:attr:`training_index`); no training folder is needed.

        A test image the model has seen measures memory, not generalisation. Copies are
        found exact, resized, re-encoded, recoloured, mirrored, turned, grey, or cropped from
        the test image, as :meth:`ImageFolderDataset.find_leakage` finds them; the index
        keeps no crop windows and no file names, so ``path`` and ``relpath`` of each pair
        are ``""``.

        Parameters
        ----------
        test : ImageFolderDataset
            The test folder.
        threshold : float, optional
            As for :meth:`ImageFolderDataset.find_duplicates`.
        progress : bool, optional
            Progress bar of the test folder's check, if it runs.

        Returns
        -------
        list of LeakedPair
            One per leaked test image, sorted by its path.

        Raises
        ------
        ModelFileError
            If the model file keeps no training index (written before it existed, or with
            ``training_index=False``).

        Examples
        --------
        >>> loaded = fruitclf.load_model("run/model.keras")  # doctest: +SKIP
        >>> [(p.test_relpath, p.kind) for p in loaded.find_leakage(test)]  # doctest: +SKIP
        [('acai/t07.png', 'mirrored')]
        """
        from .data import ImageFolderDataset

        index = self.training_index
        if index is None:
            raise ModelFileError(
                f"{self.path!r} keeps no fingerprints of its training images (written by an "
                "older fruitclf, or with training_index=False): compare the test folder with "
                "the training folder instead, `fruitclf scan TRAIN --test TEST`.")
        if not isinstance(test, ImageFolderDataset):
            raise TypeError(f"`test` must be an ImageFolderDataset. Received: "
                            f"{type(test).__name__}")
        return test.find_in_index(index, threshold=threshold, progress=progress)

    def predict(
        self,
        inputs: Any,
        *,
        top_k: int = 1,
        batch_size: int = 32,
        tta: int | None = None,
        follow_links: bool = False,
        min_confidence: float | None = None,
    ) -> Predictions:
        """Predict class names for image files, a folder, or an array of images.

        Parameters
        ----------
        inputs : path-like, sequence of path-like, numpy.ndarray or ImageFolderDataset
            Image files or folders (searched recursively), or images of shape
            ``(n, height, width, channels)`` / ``(height, width, channels)`` with 0–255 pixels.
        top_k : int, default=1
            How many best classes to keep per image.
        batch_size : int, default=32
            Images per batch.
        tta : int, optional
            Test-time augmentation: views averaged per image (see
            :meth:`fruitclf.Evaluator.evaluate`); by default :attr:`tta`, the views the
            run measured its test accuracy with.
        follow_links : bool, default=False
            Follow links to folders inside the folders given.
        min_confidence : float, optional
            Label an image ``"unsure"`` when its best probability is below this (0–1); by
            default :attr:`min_confidence`, the one stored with the model, if any.

        Returns
        -------
        Predictions

        Examples
        --------
        >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=6,
        ...                                input_shape=(32, 32, 3))
        >>> path = fruitclf.save_model(fruitclf.build_cnn(spec), "run/model.h5",
        ...                            class_names=ds.class_names)
        >>> loaded = fruitclf.load_model("run/model.h5")
        >>> predictions = loaded.predict(["fruits/test/acai/t01.jpg"], tta=2)
        >>> predictions.labels[0] in ds.class_names  # untrained here: any class
        True
        """
        return self.evaluator().predict(
            inputs, top_k=top_k, batch_size=batch_size, tta=self.tta if tta is None else tta,
            follow_links=follow_links,
            min_confidence=self.min_confidence if min_confidence is None else min_confidence)


def load_model(
    path: str | os.PathLike[str], *, compile: bool = False, safe_mode: bool = True
) -> LoadedModel:
    """Load a model saved by :func:`save_model` (or by a fruitclf run/checkpoint).

    Parameters
    ----------
    path : path-like
        A ``.keras`` or ``.h5`` file.
    compile : bool, default=False
        Also restore the optimizer and loss (to continue training).
    safe_mode : bool, default=True
        Keras safe mode: refuse to run code (lambda layers) stored in the file.

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelFileError
        If the file is missing, is not a model, is damaged, or has no fruitclf metadata.
    VersionCompatibilityError
        If the file was written by a TensorFlow/Keras that this one cannot read; the message
        names both versions.

    Examples
    --------
    >>> spec = fruitclf.CNNSpec.preset("small-data", num_classes=2, input_shape=(32, 32, 3))
    >>> path = fruitclf.save_model(fruitclf.build_cnn(spec), "run/model.keras",
    ...                            class_names=["acai", "cupuacu"])
    >>> loaded = fruitclf.load_model("run/model.keras")
    >>> loaded.class_names, loaded.preprocessing.image_size
    (['acai', 'cupuacu'], (32, 32))
    """
    metadata = read_metadata(path)  # before importing Keras: a wrong path fails at once
    _check_weights_size(path, metadata)
    import keras

    try:
        model = keras.saving.load_model(os.fspath(path), compile=compile, safe_mode=safe_mode,
                                        custom_objects=load_custom_objects())
    except Exception as exc:  # Keras raises many types for damaged or foreign files
        if safe_mode and _refused_as_unsafe(exc):
            raise ModelFileError(
                f"{os.fspath(path)!r} was refused as unsafe: it holds Python code (a Lambda "
                "layer), which Keras does not run from a file by default. If you trust the "
                "file, load it with fruitclf.load_model(path, safe_mode=False).") from None
        model = None if compile else _rebuild_from_spec(path, metadata)
        if model is None:
            raise _load_error(path, metadata, exc) from exc
    names = check_class_names(metadata["class_names"], model.output_shape[-1],
                              error=ModelFileError, source=os.fspath(path))
    size = tuple(Preprocessing.from_dict(metadata.get("preprocessing") or {}).image_size)
    expected = tuple(model.input_shape[1:3])
    if "preprocessing" in metadata and None not in expected and size != expected:
        raise ModelFileError(
            f"{os.fspath(path)!r} stores preprocessing image_size {list(size)} but the model "
            f"takes {list(expected)} inputs; the metadata was changed. Save the model again "
            "with fruitclf.save_model."
        )
    return LoadedModel(model=model, class_names=list(names), metadata=metadata,
                       path=os.fspath(path))

