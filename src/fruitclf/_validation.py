"""Shared checks for user input: one message style everywhere.

Messages name the argument, say what is allowed and show what was received, in the style of
Keras and scikit-learn::

    `batch_size` must be a positive int. Received: batch_size=0

A wrong type raises ``TypeError`` and a wrong value ``ValueError``, unless the caller passes
``error``: the model specs raise :class:`~fruitclf.SpecError` for both.

Examples
--------
>>> check_int(3, "epochs", min_value=1)
3
>>> check_float(0.0, "learning_rate", min_value=0.0, exclusive=True)
Traceback (most recent call last):
ValueError: `learning_rate` must be a number > 0.0. Received: learning_rate=0.0
>>> check_float(float("inf"), "learning_rate", min_value=0.0)
Traceback (most recent call last):
ValueError: `learning_rate` must be a finite number. Received: learning_rate=inf
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def short_repr(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to ``limit`` characters so that one error stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 20]}... ({len(text)} characters)"


def invalid(name: str, allowed: str, value: Any, error: type[Exception] = ValueError
            ) -> Exception:
    """The exception for ``name`` not being ``allowed``: raise it."""
    return error(f"`{name}` must be {allowed}. Received: {name}={short_repr(value)}")


def check_int(
    value: Any,
    name: str,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    hint: str = "",
    error: type[Exception] | None = None,
) -> int:
    """Return ``value`` as an int after checking its type and bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise (error or TypeError)(
            f"`{name}` must be an int. Received: {name}={value!r} of type {type(value).__name__}"
        )
    result = int(value)
    _check_bounds(result, name, min_value, max_value, hint, kind="an int",
                  error=error or ValueError)
    return result


def check_float(
    value: Any,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    exclusive: bool = False,
    hint: str = "",
    error: type[Exception] | None = None,
) -> float:
    """Return ``value`` as a finite float after checking its type and bounds.

    With ``exclusive=True`` the bounds themselves are not allowed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise (error or TypeError)(
            f"`{name}` must be a number. Received: {name}={value!r} of type "
            f"{type(value).__name__}"
        )
    result = float(value)
    if not math.isfinite(result):  # NaN and infinities
        raise (error or ValueError)(
            f"`{name}` must be a finite number. Received: {name}={result!r}{_hint(hint)}")
    _check_bounds(result, name, min_value, max_value, hint, kind="a number",
                  exclusive=exclusive, error=error or ValueError)
    return result


def _check_bounds(
    value: float,
    name: str,
    min_value: float | None,
    max_value: float | None,
    hint: str,
    *,
    kind: str,
    exclusive: bool = False,
    error: type[Exception] = ValueError,
) -> None:
    low_bad = min_value is not None and (value <= min_value if exclusive else value < min_value)
    high_bad = max_value is not None and (value >= max_value if exclusive else value > max_value)
    if not (low_bad or high_bad):
        return
    if min_value is not None and max_value is not None and exclusive:
        allowed = f"{kind} strictly between {min_value} and {max_value}"
    elif low_bad:
        positive = min_value == 1 and kind == "an int"
        allowed = "a positive int" if positive else (
            f"{kind} {'>' if exclusive else '>='} {min_value}")
    else:
        allowed = f"{kind} {'<' if exclusive else '<='} {max_value}"
    raise error(f"`{name}` must be {allowed}. Received: {name}={value!r}{_hint(hint)}")


def check_choice(value: Any, name: str, choices: Collection[T], *,
                 error: type[Exception] = ValueError) -> T:
    """Return ``value`` if it is one of ``choices``; otherwise list them in the error."""
    if value not in choices:
        raise invalid(name, "one of " + ", ".join(repr(c) for c in choices), value, error)
    return value  # type: ignore[no-any-return]


#: The largest model input side fruitclf trains, saves or loads (a guard for memory too:
#: a stored input size above it is refused as damaged metadata).
MAX_IMAGE_SIDE = 2048


def check_image_size(value: Any, name: str = "image_size", *,
                     error: type[Exception] = ValueError) -> tuple[int, int]:
    """Return ``(height, width)`` from an int or a pair of positive ints."""
    received = value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (int(value), int(value))
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value)
        or any(int(v) <= 0 for v in value)
    ):
        raise invalid(name, "a positive int or a pair of positive ints (height, width), "
                      "e.g. (128, 128)", received, error)
    if max(int(v) for v in value) > MAX_IMAGE_SIDE:
        raise invalid(name, f"at most {MAX_IMAGE_SIDE} pixels a side", received, error)
    return int(value[0]), int(value[1])


#: Colour names a background may be given by (with ``#RRGGBB``).
COLOR_NAMES: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255), "black": (0, 0, 0), "gray": (128, 128, 128),
}


def check_color(value: Any, name: str = "background", *,
                error: type[Exception] = ValueError) -> tuple[int, int, int]:
    """Return ``(r, g, b)`` from a colour name (white, black, gray) or ``#RRGGBB``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in COLOR_NAMES:
            return COLOR_NAMES[text]
        if len(text) == 7 and text.startswith("#"):
            try:
                return int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16)
            except ValueError:
                pass
    raise invalid(name, "white, black, gray or a colour as #RRGGBB (e.g. '#ffffff')", value,
                  error)


def _hint(hint: str) -> str:
    return f". {hint}" if hint else ""


def check_class_names(class_names: Sequence[str], outputs: int, *,
                      error: type[Exception] = ValueError, source: str | None = None
                      ) -> list[str]:
    """Return ``class_names`` as a list if there is one per model output.

    ``source`` names the model file the names were read from, for the message.
    """
    names = list(class_names)
    if len(names) != outputs:
        where = (f"{source!r} stores {len(names)} class names" if source is not None
                 else f"`class_names` has {len(names)} names")
        raise error(f"{where} but the model has {outputs} outputs. "
                    f"Received: class_names={short_repr(names)}")
    return names


#: At most this many classes, each name at most this many characters.
MAX_CLASSES = 10_000
MAX_CLASS_NAME = 255


def class_name_problem(names: Sequence[Any]) -> str | None:
    r"""Why ``names`` cannot label a model's outputs, or None.

    Class names become folder names, lines of ``labels.txt`` and keys in JSON, so each must
    be a non-empty str of at most 255 characters without control characters or line
    breaks, and no two may differ only in Unicode normalisation (NFC ``café`` vs NFD
    ``café``) or letter case (``Apple`` vs ``apple``): such folders are one folder on macOS
    and Windows, and an app reading the labels could not tell them apart.

    Examples
    --------
    >>> class_name_problem(["acai", "a\nb"])
    "'a\\nb' has a control character or line break"
    >>> class_name_problem(["Apple", "apple"])
    "'Apple' and 'apple' differ only in letter case or Unicode normalisation"
    """
    import unicodedata

    if len(names) > MAX_CLASSES:
        return f"{len(names)} classes, above the limit of {MAX_CLASSES}"
    seen: dict[str, str] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            return f"{short_repr(name, 60)} is not a non-empty str"
        if len(name) > MAX_CLASS_NAME:
            return f"{short_repr(name, 60)} is longer than {MAX_CLASS_NAME} characters"
        if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
            return f"{short_repr(name, 60)} has a control character or line break"
        key = unicodedata.normalize("NFC", name).casefold()
        if key in seen:
            if seen[key] == name:
                return f"{short_repr(name, 60)} appears twice"
            return (f"{short_repr(seen[key], 60)} and {short_repr(name, 60)} differ only in "
                    "letter case or Unicode normalisation")
        seen[key] = name
    return None


#: The model file formats fruitclf reads and writes (``.hdf5`` is read as ``.h5``).
MODEL_FORMATS = (".keras", ".h5")


def model_format(path: str | os.PathLike[str], name: str = "path") -> str:
    """``".keras"`` or ``".h5"`` from a model file's suffix; ValueError for any other.

    Examples
    --------
    >>> model_format("runs/model.HDF5")
    '.h5'
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    suffix = ".h5" if suffix == ".hdf5" else suffix
    if suffix not in MODEL_FORMATS:
        raise ValueError(
            f"`{name}` must end in .keras or .h5. Received: {name}={os.fspath(path)!r}")
    return suffix
