"""Recurrent layers (LSTM, GRU, SimpleRNN) to ONNX: the fused op wherever it matches
Keras exactly, else a ``Scan`` (spec sections 10 and 13).

Which graph a layer becomes:

* **Fused ``LSTM`` / ``GRU`` / ``RNN`` op** (``rnn_native``) when the input is float32 and
  the op implements the layer's activations with Keras's exact parameters (Keras-2
  ``hard_sigmoid`` is ``HardSigmoid(0.2, 0.5)``, Keras-3's ``HardSigmoid(1/6, 0.5)``).
  Without a mask it runs over every step; with a mask, wherever it falls, each row's
  unmasked steps are moved to the front and counted into ``sequence_lens``, which is
  exact because Keras carries the state unchanged through a masked step.
* **``Scan``** (``rnn_scan``) otherwise: an activation the ops lack, or another dtype.

The per-cell facts (weights, gate order, step formula) live in ``rnn_cells``. Every
name derives from the layer's name through the builder, so exports are deterministic.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from layerserve.export.builder import Value
from layerserve.export.checks import require_nonempty
from layerserve.export.converters.rnn_cells import (
    GRU_CELL,
    LSTM_CELL,
    SIMPLE_RNN_CELL,
    Cell,
    activation_attributes,
)
from layerserve.export.converters.rnn_native import native_rnn
from layerserve.export.converters.rnn_scan import scan_rnn
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers.rnn.base_rnn import PREVIOUS, ZEROS
from layerserve.layers.rnn.gru import GRU
from layerserve.layers.rnn.lstm import LSTM
from layerserve.layers.rnn.simple_rnn import SimpleRNN


def convert_recurrent(conversion: Conversion, cell: Cell) -> Converted:
    """The shared converter: picks the fused op or the Scan, and the output masks."""
    layer = conversion.layer
    x, states = conversion.inputs[0], conversion.inputs[1:]
    # Keras fails on no timesteps; onnxruntime aborts the process on a GRU's
    checked = require_nonempty(conversion.builder, x, [1], layer.name, "needs_a_timestep")
    if checked != x.name:
        x = Value(checked, x.shape, x.dtype)
        conversion = dataclasses.replace(conversion, inputs=[x, *states])
    # The cuDNN layers do not support masking: their steps all run, as their call does.
    masking = bool(getattr(layer, "supports_masking", True))
    mask = conversion.masks[0] if conversion.masks and masking else None
    rule = masked_output_rule(layer) if mask is not None else PREVIOUS
    attributes = activation_attributes(cell.functions(layer))
    if attributes is not None and np.dtype(x.dtype) == np.float32:
        outputs = native_rnn(conversion, cell, attributes, states, mask, rule)
    else:
        outputs = scan_rnn(conversion, cell, mask, states, rule)
    previous = conversion.previous_masks[0] if conversion.previous_masks else None
    keeps_mask = masking and previous is not None and layer.return_sequences
    output_mask = previous.name if keeps_mask else None
    if layer.return_state:
        return Converted(outputs=outputs, masks=[output_mask] + [None] * len(cell.state_labels))
    return Converted(outputs=outputs[:1], masks=[output_mask])


def masked_output_rule(layer: Any) -> str:
    """What a masked step outputs (``RecurrentLayer.masked_output``): the previous
    output, zeros, or (tf.keras unrolled) zeros where the time-order mask is False."""
    rule = getattr(layer, "masked_output", None)
    if rule is not None:
        return str(rule)
    return ZEROS if getattr(layer, "zero_output_for_mask", False) else PREVIOUS


@converter(LSTM)
def convert_lstm(conversion: Conversion) -> Converted:
    return convert_recurrent(conversion, LSTM_CELL)


def onnx_lstm_weights(
    layer: LSTM, dtype: Any = np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W [1, 4u, F]``, ``R [1, 4u, u]`` and ``B [1, 8u]`` for the ONNX ``LSTM`` op."""
    return LSTM_CELL.onnx_weights(layer, dtype)


@converter(GRU)
def convert_gru(conversion: Conversion) -> Converted:
    return convert_recurrent(conversion, GRU_CELL)


@converter(SimpleRNN)
def convert_simple_rnn(conversion: Conversion) -> Converted:
    return convert_recurrent(conversion, SIMPLE_RNN_CELL)
