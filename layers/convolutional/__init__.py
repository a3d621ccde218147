"""Convolution layers: Conv, SeparableConv, DepthwiseConv and ConvTranspose in 1-3 D."""

from layerserve.layers.convolutional.conv1d import Conv1D
from layerserve.layers.convolutional.conv1d_transpose import Conv1DTranspose
from layerserve.layers.convolutional.conv2d import Conv2D
from layerserve.layers.convolutional.conv2d_transpose import Conv2DTranspose
from layerserve.layers.convolutional.conv3d import Conv3D
from layerserve.layers.convolutional.conv3d_transpose import Conv3DTranspose
from layerserve.layers.convolutional.depthwise_conv1d import DepthwiseConv1D
from layerserve.layers.convolutional.depthwise_conv2d import DepthwiseConv2D
from layerserve.layers.convolutional.separable_conv1d import SeparableConv1D
from layerserve.layers.convolutional.separable_conv2d import SeparableConv2D

LAYERS = (
    Conv1D,
    Conv2D,
    Conv3D,
    SeparableConv1D,
    SeparableConv2D,
    DepthwiseConv1D,
    DepthwiseConv2D,
    Conv1DTranspose,
    Conv2DTranspose,
    Conv3DTranspose,
)
# Names other Keras versions write for the same layers (Keras 2.2 and tf.keras aliases).
ALIASES = {
    "Convolution1D": "Conv1D",
    "Convolution2D": "Conv2D",
    "Conv2d": "Conv2D",
    "Convolution3D": "Conv3D",
    "SeparableConvolution1D": "SeparableConv1D",
    "SeparableConvolution2D": "SeparableConv2D",
    "Convolution1DTranspose": "Conv1DTranspose",
    "Convolution2DTranspose": "Conv2DTranspose",
    "Deconvolution2D": "Conv2DTranspose",
    "Deconv2D": "Conv2DTranspose",
    "Convolution3DTranspose": "Conv3DTranspose",
    "Deconvolution3D": "Conv3DTranspose",
    "Deconv3D": "Conv3DTranspose",
}

__all__ = [cls.__name__ for cls in LAYERS]
