"""Argument normalisation shared by the padding, cropping and upsampling layers,
including the Keras 2.2 legacy keywords (``dim_ordering``) these layers still accept."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, received
from layerserve.layers.reshaping.reshaping_shapes import Pairs

# Keras 2.2 ``legacy/interfaces.py``: Keras 1 ``dim_ordering`` values and their meaning.
_DIM_ORDERINGS = {"tf": "channels_last", "th": "channels_first", "default": None}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def normalize_pairs(value: Any, rank: int, name: str) -> Pairs:
    """``rank`` pairs ``(before, after)`` of non-negative ints from an int (every side),
    ``rank`` ints (symmetric per axis) or ``rank`` pairs; rank 1 takes an int or one pair.

    >>> normalize_pairs(((1, 2), 3), 2, "padding")
    ((1, 2), (3, 3))
    """
    if rank == 1:
        return (_pair(value, name, value),)
    if _is_int(value):
        pairs = [_pair(value, name, value)] * rank
    elif isinstance(value, (list, tuple)) and len(value) == rank:
        pairs = [_pair(entry, name, value) for entry in value]
    else:
        raise ConfigError(_pairs_message(rank, name, value))
    return tuple(pairs)


def _pair(entry: Any, name: str, whole: Any) -> tuple[int, int]:
    if _is_int(entry):
        pair = (int(entry), int(entry))
    elif isinstance(entry, (list, tuple)) and len(entry) == 2 and all(_is_int(v) for v in entry):
        pair = (int(entry[0]), int(entry[1]))
    else:
        raise ConfigError(
            f"Expected each entry of `{name}` to be an int or a pair of ints >= 0. "
            + received(name, whole)
        )
    if min(pair) < 0:
        raise ConfigError(f"Expected `{name}` values >= 0. " + received(name, whole))
    return pair


def _pairs_message(rank: int, name: str, value: Any) -> str:
    return (
        f"Expected `{name}` to be an int, a tuple of {rank} ints or a tuple of {rank} "
        f"tuples of 2 ints, all >= 0 (((before, after), ...) per spatial axis). "
        + received(name, value)
    )


def legacy_data_format(data_format: Any, dim_ordering: Any) -> Any:
    """``data_format``, or Keras 2.2's legacy ``dim_ordering`` (``"tf"``, ``"th"``,
    ``"default"``) mapped as Keras 2.2 maps it; both given is an error, as there."""
    if dim_ordering is None:
        return data_format
    if data_format is not None:
        raise ConfigError(
            "For the `data_format` argument, the layer received both the legacy keyword "
            "argument `dim_ordering` and the Keras 2 keyword argument `data_format`. "
            f"Stick to the latter! Received: dim_ordering={dim_ordering!r}, "
            f"data_format={data_format!r}"
        )
    return _DIM_ORDERINGS.get(dim_ordering, dim_ordering)


def legacy_rename(old: str, old_value: Any, new: str, new_value: Any, default: Any) -> Any:
    """A Keras 2.2 legacy keyword (``UpSampling1D(length=...)``) standing for ``new``."""
    if old_value is None:
        return new_value
    if new_value != default:
        raise ConfigError(
            f"For the `{new}` argument, the layer received both the legacy keyword argument "
            f"`{old}` and the Keras 2 keyword argument `{new}`. Stick to the latter! "
            f"Received: {old}={old_value!r}, {new}={new_value!r}"
        )
    return old_value


def legacy_padding_dict(padding: Any) -> Any:
    """Keras 1's ``ZeroPadding2D(padding={"top_pad": ..., ...})``, read as Keras 2.2 does
    (missing sides are 0); any other value is returned as is."""
    sides = ("top_pad", "bottom_pad", "left_pad", "right_pad")
    if not isinstance(padding, dict):
        return padding
    if not set(padding) <= set(sides):
        raise ConfigError(
            f"Expected the keys of a `padding` dict to be among {sides}. "
            + received("padding", padding)
        )
    top, bottom, left, right = (padding.get(side, 0) for side in sides)
    return ((top, bottom), (left, right))


def normalize_factors(value: Any, rank: int, name: str) -> tuple[int, ...]:
    """``rank`` positive ints from one int (every axis) or ``rank`` ints."""
    if _is_int(value):
        values: tuple[Any, ...] = (value,) * rank
    elif isinstance(value, (list, tuple)) and len(value) == rank:
        values = tuple(value)
    else:
        values = ()
    if not values or any(not _is_int(v) or v <= 0 for v in values):
        raise ConfigError(
            f"Expected `{name}` to be a positive int or a tuple of {rank} positive ints. "
            + received(name, value)
        )
    return tuple(int(v) for v in values)


__all__ = [
    "legacy_data_format",
    "legacy_padding_dict",
    "legacy_rename",
    "normalize_factors",
    "normalize_pairs",
]
