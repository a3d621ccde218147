"""Whatever goes wrong inside a layer or a converter surfaces as a typed error that names
the layer, so that callers (the service among them) never see a bare KeyError."""

from __future__ import annotations

import numpy as np
import pytest

from layerserve.errors import ExportError, LayerCallError, LayerserveError
from layerserve.export import to_onnx
from layerserve.export.registry import Conversion, Converted, converter
from layerserve.layers import Dense, Input, Layer
from layerserve.models import Model


class Fragile(Layer):
    """A layer whose computation and whose converter fail the way a bug would."""

    def call(self, inputs, training=False, mask=None):
        return inputs[:, [0, 99]]  # IndexError on purpose


@converter(Fragile)
def _convert_fragile(conversion: Conversion) -> Converted:
    return Converted([{"missing": 1}["name"]])  # KeyError on purpose


def model() -> Model:
    x = Input((3,), name="x")
    return Model(x, Fragile(name="fragile")(Dense(3, name="dense")(x)))


def test_a_failing_layer_is_named():
    with pytest.raises(LayerCallError, match=r"Layer 'fragile' \(Fragile\).*IndexError") as raised:
        model().predict(np.ones((2, 3), "float32"))
    assert isinstance(raised.value.__cause__, IndexError)
    assert isinstance(raised.value, LayerserveError)


def test_a_failing_converter_is_named():
    with pytest.raises(ExportError, match=r"Layer 'fragile' \(Fragile\).*KeyError: 'name'"):
        to_onnx(model())
