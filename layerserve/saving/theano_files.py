"""Keras 2 files written on the Theano backend.

Multi-backend Keras 2 records its backend in every ``.h5`` file it writes (the ``backend``
attribute). layerserve computes as TensorFlow does; a Theano file gives the numbers Keras
gave on Theano, or is refused:

* **Kernels.** Theano computes a true convolution (the kernel flipped along its spatial
  axes); TensorFlow, ONNX and layerserve a cross-correlation. Keras 2, loading a Theano
  file on TensorFlow, flips the kernels of ``Conv1D``, ``Conv2D``, ``Conv3D`` and
  ``Conv2DTranspose`` (and ``ConvLSTM2D``, which layerserve refuses) along their spatial
  axes, wherever they are nested; separable and depthwise kernels are kept as written
  (``_need_convert_kernel`` and ``conv_utils.convert_kernel``, Keras 2.2
  ``engine/saving.py``). So does layerserve, and it flips ``Conv3DTranspose`` kernels
  too, which Keras 2.2 leaves as they are: Theano computes that layer as a true
  convolution as well, and only the flipped kernel gives the numbers Keras gave on
  Theano (measured with Keras 2.2.4; Keras on TensorFlow gives other ones for the file).
* **What no conversion fixes.** Measured with Keras 2.2.4 on Theano 1.0.5 against
  TensorFlow 1.15, the same file gives other numbers on each backend for a window with
  ``padding="same"`` whose size is even or whose stride is over 1 (convolution and
  pooling: Theano pads such windows on other sides), and for a recurrent layer given
  initial states and a mask (at the masked steps before the first valid one, Theano
  outputs zeros, TensorFlow the initial state). layerserve does not compute Theano's
  numbers there, and such a file is refused, naming the layer, before any weight is set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from layerserve.errors import NotSupportedError
from layerserve.layers.convolutional.conv1d import Conv1D
from layerserve.layers.convolutional.conv2d import Conv2D
from layerserve.layers.convolutional.conv2d_transpose import Conv2DTranspose
from layerserve.layers.convolutional.conv3d import Conv3D
from layerserve.layers.convolutional.conv3d_transpose import Conv3DTranspose
from layerserve.layers.rnn.base_rnn import RecurrentLayer
from layerserve.layers.rnn.bidirectional import Bidirectional
from layerserve.layers.rnn.rnn import RNN
from layerserve.saving.cudnn_weights import layers_within, weight_positions

THEANO = "theano"  # the ``backend`` attribute of a file Keras wrote on Theano
# Keras 2 converts these classes by name (but Conv3DTranspose, see above): subclasses such
# as the separable and depthwise convolutions keep their kernels.
FLIPPED_CLASSES = (Conv1D, Conv2D, Conv3D, Conv2DTranspose, Conv3DTranspose)
RECURRENT = (RecurrentLayer, RNN, Bidirectional)


def check_theano_layers(layers: list[Any]) -> None:
    """Refuse the layers, anywhere in ``layers``, whose numbers differ between Keras on
    Theano and Keras on TensorFlow (see the module docstring)."""
    for top in layers:
        for layer in layers_within(top):
            _check_window(layer)
            _check_recurrent(layer)


def _check_window(layer: Any) -> None:
    window = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
    if getattr(layer, "padding", None) != "same" or window is None:
        return
    strides = tuple(getattr(layer, "strides", None) or ())
    if all(size % 2 for size in window) and all(step == 1 for step in strides):
        return
    raise NotSupportedError(
        f"Layer {layer.name} ({type(layer).__name__}) was written by Keras on the Theano "
        "backend, which pads a padding='same' window of even size or with strides over 1 "
        "on other sides than TensorFlow: Keras gives other numbers for this file on each "
        "backend. Expected on Theano: padding='valid', or padding='same' with odd sizes "
        f"and strides of 1. Received: size={tuple(window)}, strides={strides}"
    )


def _check_recurrent(layer: Any) -> None:
    if not isinstance(layer, RECURRENT):
        return
    for node in layer.inbound_nodes:
        if len(node.inputs) > 1 and node.inputs[0].mask is not None:
            raise NotSupportedError(
                f"Layer {layer.name} ({type(layer).__name__}) was written by Keras on the "
                "Theano backend and is given initial states and a mask: at the masked "
                "steps before the first valid one Theano outputs zeros and TensorFlow the "
                "initial state, so Keras gives other numbers for this file on each "
                "backend. Expected on Theano: no initial states, or no mask. Received: "
                f"{len(node.inputs) - 1} initial states and a mask"
            )


def convert_theano_kernels(layer: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """``arrays`` (in ``layer.weights`` order) with the kernel of every convolution that
    Keras converts, inside ``layer`` or ``layer`` itself, flipped along its spatial axes
    (every axis but the last two)."""
    position = weight_positions(layer, arrays)
    if position is None:
        return arrays
    arrays = list(arrays)
    for conv in layers_within(layer):
        if type(conv) not in FLIPPED_CLASSES:
            continue
        index = position.get(id(conv.kernel))
        if index is None:
            continue
        kernel = np.asarray(arrays[index])
        if kernel.ndim < 3:
            continue  # set_weights reports the shape
        spatial = tuple(range(kernel.ndim - 2))
        arrays[index] = np.flip(kernel, axis=spatial).copy()
    return arrays
