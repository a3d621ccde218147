"""Global settings come from $KERAS_HOME/keras.json (or ~/.keras/keras.json) as in Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from layerserve import _config
from layerserve import backend as K
from layerserve.errors import ConfigError
from layerserve.layers import Flatten, SpatialDropout2D


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    K.reload_settings()
    K.set_image_data_format("channels_last")


def write_settings(home, **settings):
    (home / "keras.json").write_text(json.dumps(settings))
    K.reload_settings()


def test_keras_home_keras_json_sets_every_default(keras_home):
    write_settings(keras_home, image_data_format="channels_first", floatx="float64", epsilon=1e-5)
    assert _config.keras_json_path() == keras_home / "keras.json"
    assert (K.image_data_format(), K.floatx(), K.epsilon()) == ("channels_first", "float64", 1e-5)
    # data_format=None resolves to the global setting at construction time.
    assert Flatten().data_format == "channels_first"
    assert SpatialDropout2D(0.5).data_format == "channels_first"


def test_home_directory_keras_json_is_read_without_keras_home(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text('{"image_data_format": "channels_first"}')
    try:
        K.reload_settings()
        assert K.image_data_format() == "channels_first"
    finally:
        monkeypatch.undo()
        K.reload_settings()
        K.set_image_data_format("channels_last")


@pytest.mark.parametrize(
    "content",
    ["{not json", '["a list"]', '{"image_data_format": "sideways", "floatx": "int8"}'],
    ids=["corrupt", "not-an-object", "invalid-values"],
)
def test_unreadable_or_invalid_keras_json_falls_back_to_keras_defaults(keras_home, content):
    (keras_home / "keras.json").write_text(content)
    K.reload_settings()
    assert (K.image_data_format(), K.floatx(), K.epsilon()) == ("channels_last", "float32", 1e-7)


def test_set_image_data_format_applies_to_new_layers_and_rejects_unknown_values():
    K.set_image_data_format("channels_first")
    x = np.arange(2 * 3 * 2 * 2, dtype="float32").reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(Flatten()(x), np.transpose(x, (0, 2, 3, 1)).reshape(2, -1))
    K.set_image_data_format("channels_last")
    np.testing.assert_array_equal(Flatten()(x), x.reshape(2, -1))
    with pytest.raises(ConfigError, match="Received: data_format='nhwc'"):
        K.set_image_data_format("nhwc")
