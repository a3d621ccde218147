"""Keras 2's conversion of recurrent weights saved in cuDNN layout (spec 10.5).

``CuDNNGRU`` / ``CuDNNLSTM`` (multi-backend Keras 2.x, ``tf.compat.v1.keras.layers``)
save their kernels in cuDNN's layout. When Keras 2 loads an ``.h5`` file it converts
them for a GRU/LSTM layer, recognising the layout by the bias shape
(``_convert_rnn_weights`` in tf.keras ``hdf5_format.py`` and Keras 2.2
``engine/saving.py``); Keras 3 never does. Per gate block:

* input kernel ``B (F, u)``: ``W = B.reshape(u, F).T`` (the row-major block read as
  ``(u, F)``, transposed);
* recurrent kernel: ``U = block.T``;
* bias: CuDNNLSTM ``(8u,)`` = input + recurrent biases, summed; CuDNNGRU ``(6u,)``,
  reshaped to ``(2, 3u)`` (GRU with ``reset_after=True``).

A GRU with ``reset_after=False`` has no cuDNN equivalent: Keras 2 raises, and so does
this module (WeightsError).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from layerserve.errors import WeightsError
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.lstm import LSTM

# Attributes under which layers hold the layers they wrap.
_CHILD_ATTRIBUTES = ("layers", "forward_layer", "backward_layer", "layer")


def convert_keras2_rnn_weights(layer: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` (in ``layer.weights`` order) with every GRU/LSTM inside ``layer``, or
    ``layer`` itself, given Keras-layout weights where the file holds cuDNN layout."""
    position = weight_positions(layer, arrays)
    if position is None:
        return arrays
    arrays = list(arrays)
    for rnn in layers_within(layer):
        if not isinstance(rnn, (GRU, LSTM)) or rnn.bias is None:
            continue  # Keras converts only GRU/LSTM with their three weights
        indices = [position.get(id(v)) for v in (rnn.kernel, rnn.recurrent_kernel, rnn.bias)]
        if None in indices:
            continue
        stored = [np.asarray(arrays[i]) for i in indices]
        converted = (
            _gru_weights(rnn, stored) if isinstance(rnn, GRU) else _lstm_weights(rnn, stored)
        )
        for index, array in zip(indices, converted, strict=True):
            arrays[index] = array
    return arrays


def weight_positions(layer: Any, arrays: list[np.ndarray]) -> dict[int, int] | None:
    """The index of each of ``layer.weights`` by its ``id``, or None when ``arrays`` are
    not one per weight (``set_weights`` then reports the mismatch)."""
    variables = layer.weights
    if len(arrays) != len(variables):
        return None
    return {id(v): i for i, v in enumerate(variables)}


def layers_within(layer: Any) -> Iterator[Any]:
    yield layer
    for attribute in _CHILD_ATTRIBUTES:
        child = getattr(layer, attribute, None)
        children = child if isinstance(child, (list, tuple)) else [child]
        for item in children:
            if item is not None and hasattr(item, "weights") and item is not layer:
                yield from layers_within(item)


def _blocks(matrix: np.ndarray, gates: int, transform: Any) -> np.ndarray:
    return np.hstack([transform(block) for block in np.hsplit(matrix, gates)])


def from_cudnn(stored: list[np.ndarray], gates: int) -> tuple[np.ndarray, np.ndarray]:
    """The Keras-layout kernel and recurrent kernel of cuDNN-layout ones."""
    kernel, recurrent = stored[0], stored[1]
    features, units = kernel.shape[0], recurrent.shape[0]
    keras_kernel = _blocks(kernel, gates, lambda b: b.reshape(units, features).T)
    keras_recurrent = _blocks(recurrent, gates, lambda b: b.T)
    return keras_kernel, keras_recurrent


def _gru_weights(layer: Any, stored: list[np.ndarray]) -> list[np.ndarray]:
    units = stored[1].shape[0]
    bias_shape = tuple(stored[2].shape)
    if bias_shape != (6 * units,):
        return stored  # Keras layout (set_weights checks the shapes)
    if not layer.reset_after:
        raise WeightsError(
            f"Layer {layer.name!r} is a GRU with reset_after=False, but the file holds "
            "CuDNNGRU weights, which only a GRU with reset_after=True computes. Expected "
            f"a bias of shape ({3 * units},). Received: bias shape={bias_shape}"
        )
    kernel, recurrent = from_cudnn(stored, 3)
    return [kernel, recurrent, stored[2].reshape(2, 3 * units)]


def _lstm_weights(layer: Any, stored: list[np.ndarray]) -> list[np.ndarray]:
    units = stored[1].shape[0]
    if tuple(stored[2].shape) != (8 * units,):
        return stored
    kernel, recurrent = from_cudnn(stored, 4)
    input_bias, recurrent_bias = np.split(stored[2], 2)
    return [kernel, recurrent, input_bias + recurrent_bias]
