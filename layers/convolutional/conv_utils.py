"""Argument normalisation shared by convolution layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import ConfigError, NotSupportedError, received


def normalize_tuple(value: Any, n: int, name: str, allow_zero: bool = False) -> tuple[int, ...]:
    """An int becomes an n-tuple; anything else must be n positive integers (or
    non-negative ones with ``allow_zero``, as ``output_padding`` is)."""
    kind = "non-negative" if allow_zero else "positive"
    message = f"The `{name}` argument must be a tuple of {n} {kind} integers. " + received(
        name, value
    )
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values: tuple[Any, ...] = (int(value),) * n
    elif isinstance(value, (list, tuple)) and len(value) == n:
        values = tuple(value)
    else:
        raise ConfigError(message)
    lowest = 0 if allow_zero else 1
    if any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lowest for v in values
    ):
        raise ConfigError(message)
    return tuple(int(v) for v in values)


def normalize_padding(value: Any, allow_causal: bool = False, layer: str = "Conv2D") -> str:
    """'valid' or 'same' (any case); 'causal' where the layer allows it."""
    padding = value.lower() if isinstance(value, str) else value
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    if padding not in allowed:
        causal = "" if allow_causal else " ('causal' is for Conv1D only)"
        raise ConfigError(
            f"The `padding` argument must be one of {', '.join(map(repr, allowed))} for "
            f"{layer}{causal}. " + received("padding", value)
        )
    return padding


def check_strides_dilation(strides: tuple[int, ...], dilation_rate: tuple[int, ...]) -> None:
    """Keras (3 and 2) refuses strides > 1 together with dilation_rate > 1."""
    if max(strides) > 1 and max(dilation_rate) > 1:
        raise ConfigError(
            "`strides > 1` is not compatible with `dilation_rate > 1`. "
            f"Received: strides={strides}, dilation_rate={dilation_rate}"
        )


def tf_keras_neutral_groups(layer: str, groups: Any) -> None:
    """tf.keras writes ``groups`` into the configs of layers that never use it
    (Separable, Depthwise, Transpose). 1 changes nothing; tf.keras ignores any other
    value, which layerserve refuses rather than guess what the author meant."""
    if groups is None or (
        isinstance(groups, (int, np.integer)) and not isinstance(groups, bool) and groups == 1
    ):
        return
    raise NotSupportedError(
        f"{layer} does not use `groups`: tf.keras accepts the argument but ignores it, and "
        "layerserve only accepts groups=1 here. " + received("groups", groups)
    )
