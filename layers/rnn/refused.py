"""Recurrent layer classes that Keras files may hold and layerserve refuses, with why.

They stay unknown classes (a model using them is refused with one error listing every
class it cannot build); the loader's error adds the reason given here.
"""

_CONV_LSTM = (
    "a convolutional LSTM (its gates are convolutions over each timestep's feature map) "
    "is not implemented by layerserve's NumPy reference nor by its ONNX export"
)

REFUSED_LAYERS: dict[str, str] = {
    "ConvLSTM1D": _CONV_LSTM,
    "ConvLSTM2D": _CONV_LSTM,
    "ConvLSTM3D": _CONV_LSTM,
}
