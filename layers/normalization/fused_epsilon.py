"""The epsilon floor of TensorFlow's fused batch norm, for BatchNormalization from
Keras 2 files.

TensorFlow's ``fused_batch_norm`` wrapper raised epsilon to at least 1.001e-5 (cuDNN's
old minimum) for years; TensorFlow 2.21 no longer does. Multi-backend Keras 2.2/2.3 and
tf.keras take that kernel for some layouts only. Where the floor certainly applied, it
is applied; where the file cannot tell (a TensorFlow release in between, or a layout that
was fused on GPU only) and the floor would change the numbers, the layer is refused.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layerserve.errors import NotSupportedError

FUSED_MIN_EPSILON = 1.001e-5
# The floor was still in TensorFlow 2.9 (tensorflow#37768); TF 2.21 has none; tf.keras /
# tf_keras versions follow TensorFlow's. Between them the release that dropped it is not
# known.
_CERTAINLY_CLAMPED_BELOW = (2, 10, 0)
_UNCLAMPED_FROM = (2, 21, 0)
# The largest relative change of 1/sqrt(variance + epsilon) still taken as "the same".
_SAME_NUMBERS = 1e-5

YES, MAYBE, NO = "fused", "possibly fused", "not fused"


def fused_path(
    version: tuple[int, int, int],
    axes: Sequence[int],
    rank: int,
    *,
    fused: bool | None,
    renorm: bool,
    virtual_batch: bool,
) -> str:
    """Whether the Keras that wrote the file ran the layer on the fused kernel."""
    axes = tuple(axes)
    if version >= (3, 0, 0) or version < (2, 0, 0):
        return NO
    if version < (2, 4, 0):
        # Keras 2.2/2.3 backend: NHWC always fused; NCHW only where a GPU was present.
        if rank == 4 and axes == (3,):
            return YES
        return MAYBE if rank == 4 and axes == (1,) else NO
    simple = fused is not False and not renorm and not virtual_batch
    return YES if simple and rank in (4, 5) and axes in ((1,), (rank - 1,)) else NO


def effective_epsilon(
    epsilon: float,
    variance: np.ndarray,
    version: tuple[int, int, int],
    path: str,
    layer_name: str,
) -> float:
    """The epsilon Keras added to ``variance``: floored, as written, or refused."""
    if epsilon >= FUSED_MIN_EPSILON or path == NO or version >= _UNCLAMPED_FROM:
        return epsilon
    if path == YES and version < _CERTAINLY_CLAMPED_BELOW:
        return FUSED_MIN_EPSILON
    dtype = variance.dtype.type
    ratio = np.sqrt((variance + dtype(FUSED_MIN_EPSILON)) / (variance + dtype(epsilon)))
    if np.max(np.abs(ratio - 1), initial=0.0) <= _SAME_NUMBERS:
        return epsilon
    written = ".".join(map(str, version))
    raise NotSupportedError(
        f"Layer {layer_name!r} (BatchNormalization) of a Keras {written} file has "
        f"epsilon={epsilon!r} < {FUSED_MIN_EPSILON} on a {path} TensorFlow batch norm: "
        f"some TensorFlow releases raised it to {FUSED_MIN_EPSILON} there and others did "
        "not, the file does not say which ran it, and with this layer's variance the two "
        "give different numbers."
    )
