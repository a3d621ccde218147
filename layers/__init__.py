"""NumPy reference implementations of the Keras core layers."""

from layerserve.layers.activation import Activation
from layerserve.layers.activity_regularization import ActivityRegularization
from layerserve.layers.base import Layer, Variable
from layerserve.layers.conv2d import Conv2D
from layerserve.layers.dense import Dense
from layerserve.layers.dropout import Dropout
from layerserve.layers.flatten import Flatten
from layerserve.layers.input_layer import Input, InputLayer
from layerserve.layers.input_spec import InputSpec
from layerserve.layers.lambda_layer import Lambda
from layerserve.layers.lstm import LSTM
from layerserve.layers.masking import Masking
from layerserve.layers.permute import Permute
from layerserve.layers.repeat_vector import RepeatVector
from layerserve.layers.reshape import Reshape
from layerserve.layers.spatial_dropout import SpatialDropout1D, SpatialDropout2D, SpatialDropout3D
from layerserve.layers.tensor import KerasTensor

LAYER_CLASSES: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (
        Activation,
        ActivityRegularization,
        Conv2D,
        Dense,
        Dropout,
        Flatten,
        InputLayer,
        Lambda,
        LSTM,
        Masking,
        Permute,
        RepeatVector,
        Reshape,
        SpatialDropout1D,
        SpatialDropout2D,
        SpatialDropout3D,
    )
}
# Names other Keras versions write for the same layers.
LAYER_ALIASES = {"Convolution2D": "Conv2D", "Conv2d": "Conv2D"}

__all__ = [
    "LAYER_CLASSES",
    "Activation",
    "ActivityRegularization",
    "Conv2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "InputSpec",
    "KerasTensor",
    "Lambda",
    "LSTM",
    "Layer",
    "Masking",
    "Permute",
    "RepeatVector",
    "Reshape",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Variable",
]
