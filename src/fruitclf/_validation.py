"""Shared checks for user input: one message style everywhere.

Messages name the argument, say what is allowed and show what was received, in the style of
Keras and scikit-learn::

    `batch_size` must be a positive int. Received: batch_size=0
"""

from __future__ import annotations

import numbers
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def check_int(
    value: Any,
    name: str,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    hint: str = "",
) -> int:
    """Return ``value`` as an int after checking its type and bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an int. Received: {name}={value!r} of type {type(value).__name__}"
        )
    result = int(value)
    _check_bounds(result, name, min_value, max_value, hint, kind="an int")
    return result


def check_float(
    value: Any,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    exclusive: bool = False,
    hint: str = "",
) -> float:
    """Return ``value`` as a float after checking its type and bounds.

    With ``exclusive=True`` the bounds themselves are not allowed.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a number. Received: {name}={value!r} of type "
            f"{type(value).__name__}"
        )
    result = float(value)
    if result != result:  # NaN compares unequal to itself
        raise ValueError(f"`{name}` must be a number, not NaN. Received: {name}={result!r}")
    if exclusive:
        low_bad = min_value is not None and result <= min_value
        high_bad = max_value is not None and result >= max_value
        if low_bad or high_bad:
            raise ValueError(
                f"`{name}` must be strictly between {min_value} and {max_value}. "
                f"Received: {name}={result!r}{_hint(hint)}"
            )
        return result
    _check_bounds(result, name, min_value, max_value, hint, kind="a number")
    return result


def _check_bounds(
    value: float,
    name: str,
    min_value: float | None,
    max_value: float | None,
    hint: str,
    *,
    kind: str,
) -> None:
    if min_value is not None and value < min_value:
        allowed = "a positive" if min_value == 1 and kind == "an int" else None
        what = f"{allowed} int" if allowed else f"{kind} >= {min_value}"
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}{_hint(hint)}")
    if max_value is not None and value > max_value:
        raise ValueError(
            f"`{name}` must be {kind} <= {max_value}. Received: {name}={value!r}{_hint(hint)}"
        )


def check_choice(value: Any, name: str, choices: Collection[T]) -> T:
    """Return ``value`` if it is one of ``choices``; otherwise list them in the error."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {allowed}. Received: {name}={value!r}")
    return value  # type: ignore[no-any-return]


def check_image_size(value: Any, name: str = "image_size") -> tuple[int, int]:
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
        raise ValueError(
            f"`{name}` must be a positive int or a pair of positive ints (height, width), "
            f"e.g. (128, 128). Received: {name}={received!r}"
        )
    return int(value[0]), int(value[1])


def _hint(hint: str) -> str:
    return f". {hint}" if hint else ""
