"""Pretrained feature extractors from ``keras.applications``, for transfer learning.

A :class:`~fruitclf.CNNSpec` with ``backbone="mobilenetv3small"`` (or another name of
``BACKBONES``) puts that network, without its ImageNet classifier, between the input and a
global-average-pooling head. Its input preprocessing is part of the built model (inside the
backbone for MobileNetV3 and EfficientNetV2, a ``Rescaling`` layer for ResNet50V2), so a saved
model takes 0–255 pixels like every fruitclf model.

This module knows the backbones without importing TensorFlow; building one imports Keras.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path
from typing import Any

from .exceptions import WeightsError

__all__ = ["BACKBONES", "BackboneInfo"]


@dataclasses.dataclass(frozen=True)
class BackboneInfo:
    """What fruitclf knows about a ``keras.applications`` backbone.

    Examples
    --------
    >>> BACKBONES["mobilenetv3small"].channels
    576
    """

    keras_name: str  # the keras.applications function
    channels: int  # output channels of the feature map
    params: int  # weights without the ImageNet classifier (trainable and not)
    rescale: tuple[float, float] | None  # (scale, offset) applied first; None: built in
    reduction: int = 32  # input size / feature-map size

    def keras_kwargs(self) -> dict[str, Any]:
        """Arguments that make the Keras function take 0–255 pixels, where it can."""
        if self.rescale is None:
            return {"include_preprocessing": True}
        return {}


#: Backbones by preset name. Parameter counts are those of ``include_top=False`` models;
#: ``tests/test_backbones.py`` checks them against Keras.
BACKBONES: dict[str, BackboneInfo] = {
    "mobilenetv3small": BackboneInfo("MobileNetV3Small", 576, 939_120, None),
    "mobilenetv3large": BackboneInfo("MobileNetV3Large", 960, 2_996_352, None),
    "efficientnetv2b0": BackboneInfo("EfficientNetV2B0", 1280, 5_919_312, None),
    "resnet50v2": BackboneInfo("ResNet50V2", 2048, 23_564_800, (1 / 127.5, -1.0)),
}


_NOT_224_NOTICE = r"`input_shape` is undefined or non-square, or `rows` is not 224"


def build_backbone(name: str, input_shape: tuple[int, int, int], weights: str | None) -> Any:
    """Return the Keras backbone model, with ``weights`` loaded.

    Raises
    ------
    WeightsError
        If ``weights`` is a missing file, a file that does not fit the backbone, or
        ``"imagenet"`` and the file cannot be downloaded (the message says which file to
        fetch and where to put it).
    """
    import keras

    info = BACKBONES[name]
    factory = getattr(keras.applications, info.keras_name)
    if weights not in (None, "imagenet") and not os.path.isfile(os.fspath(weights)):
        raise WeightsError(
            f"Backbone weights file not found: {weights!r}. Pass weights='imagenet', None, or "
            f"the path of a {info.keras_name} weights file (.h5 or .weights.h5)."
        )
    try:
        with warnings.catch_warnings():
            # MobileNet warns that its ImageNet weights were trained at 224x224 whenever the
            # input is another size; without the top, its convolutions take any size, which
            # is what fine-tuning at --image-size does.
            warnings.filterwarnings("ignore", message=_NOT_224_NOTICE, category=UserWarning)
            return factory(input_shape=input_shape, include_top=False, weights=weights,
                           **info.keras_kwargs())
    except Exception as exc:  # Keras raises bare Exception for a failed download
        if weights == "imagenet":
            raise _download_error(info, exc) from None
        if weights is None:
            raise
        raise WeightsError(
            f"Cannot load {info.keras_name} weights from {weights!r}: "
            f"{_first_line(exc)}. The file must hold weights of {info.keras_name} without its "
            "top (include_top=False)."
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _download_error(info: BackboneInfo, exc: BaseException) -> WeightsError:
    text = str(exc)
    match = re.search(r"(https?://\S+?):? (.*)", text)
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    if match:
        url, reason = match.group(1), match.group(2).split(" -- ")[-1]
        source = f" from {url} ({reason})"
        fix = f"download that file on a machine with internet and put it in {cache}/"
    else:
        source = f" ({_first_line(exc)})"
        fix = f"put the {info.keras_name} no-top weights file in {cache}/"
    return WeightsError(
        f"Cannot download the ImageNet weights of {info.keras_name}{source}. To use them "
        f"offline, {fix}, or pass the file with weights=PATH (`--weights PATH`); "
        "weights=None trains from scratch."
    )
