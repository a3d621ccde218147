"""Activity-regularizer losses against Keras 3, which scales them by the batch size from
3.14 (the models themselves are checked in every format of both Keras flavours by
``test_core_layers_keras.py``, from files written in subprocesses)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers as kl  # noqa: E402

from layerserve.models import load_model, model_from_json  # noqa: E402

# Keras-internal NumPy 2 noise, not about layerserve.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
FORMATS = ("keras", "h5", "json+weights")


def seq(input_shape: tuple[int, ...], *layers: keras.layers.Layer) -> keras.Model:
    return keras.Sequential([keras.Input(input_shape), *layers])


@pytest.mark.parametrize("fmt", FORMATS)
def test_activity_regularizer_loss_matches_keras(tmp_path: Path, fmt: str) -> None:
    keras_model = seq(
        (3,),
        kl.Dense(2, kernel_initializer="ones", activity_regularizer=keras.regularizers.L1(1.0)),
    )
    x = np.ones((4, 3), dtype="float32")
    keras_model(x, training=True)
    expected = float(sum(np.asarray(loss) for loss in keras_model.losses))
    assert expected == pytest.approx(6.0)  # spec section 5: 24 / batch of 4
    if fmt == "keras":
        keras_model.save(tmp_path / "m.keras")
        model = load_model(tmp_path / "m.keras")
    elif fmt == "h5":
        keras_model.save(tmp_path / "m.h5")
        model = load_model(tmp_path / "m.h5")
    else:
        keras_model.save_weights(tmp_path / "m.weights.h5")
        model = model_from_json(keras_model.to_json())
        model.load_weights(tmp_path / "m.weights.h5")
    model(x, training=True)
    assert sum(model.losses) == pytest.approx(expected, rel=1e-6)
