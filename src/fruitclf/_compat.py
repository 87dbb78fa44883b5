"""The few TensorFlow/Keras/platform differences, in one place."""

from __future__ import annotations

import functools
import platform
import sys
from typing import Any

from ._validation import check_choice
from .settings import PRECISIONS as PRECISIONS


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (x86 AVX512_BF16 or AMX, Arm BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return any(flag in flags for flag in (" avx512_bf16", " amx_bf16", " bf16"))


def _gpu_precision() -> str | None:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    major, _ = details.get("compute_capability", (0, 0))
    if major >= 8:
        return "mixed_bfloat16"
    if major >= 7:
        return "mixed_float16"
    return "float32"


def resolve_precision(precision: str) -> str:
    """Return the Keras dtype policy name for a precision option (resolving ``"auto"``)."""
    check_choice(precision, "precision", PRECISIONS)
    if precision != "auto":
        return precision
    gpu = _gpu_precision()
    if gpu is not None:
        return gpu
    return "mixed_bfloat16" if cpu_has_native_bf16() else "float32"


def device_description() -> str:
    """Where training runs, for the console: ``"CPU (8 cores)"``, ``"1 GPU (NVIDIA H100)"``."""
    import os

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count() or 1} cores)"
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}" + (f" ({name})" if name else "")


def versions() -> dict[str, str]:
    """Versions that matter for reading a model back: fruitclf, TensorFlow, Keras, Python."""
    import keras
    import tensorflow as tf

    from ._version import __version__

    return {
        "fruitclf": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "platform": sys.platform,
    }


def load_custom_objects() -> dict[str, Any]:
    """Objects Keras needs by name to read fruitclf's own models back.

    The smoothed loss is fruitclf's own: checkpoints compiled with it name it.

    Keras 3.8 and older record the input casts of a mixed-precision functional model as
    ``Cast`` operation nodes; their ``.h5`` loader does not know the name, their ``.keras``
    loader does. Naming it makes both formats load on every supported Keras.
    """
    from ._losses import SmoothedSparseCategoricalCrossentropy

    objects: dict[str, Any] = {
        "fruitclf>SmoothedSparseCategoricalCrossentropy": SmoothedSparseCategoricalCrossentropy,
    }
    try:
        from keras.src.ops.core import Cast
    except ImportError:  # pragma: no cover - a Keras without the class has no such nodes
        return objects
    objects["Cast"] = Cast
    return objects


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar: the notebook widget when the notebook can draw it, else the text bar.

    ``tqdm.auto`` picks the widget in any Jupyter kernel and warns "IProgress not found" when
    ipywidgets is missing; the text bar works there too, without the warning.
    """
    import importlib.util

    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm
    else:
        from tqdm import tqdm
    return tqdm(**kwargs)
