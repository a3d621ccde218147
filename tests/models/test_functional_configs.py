"""Functional model configs (``model_from_json``) that no Keras model can be: refused
with Keras's own words rather than a message about something else."""

from __future__ import annotations

import json

import pytest

from layerserve.errors import ConfigError
from layerserve.models import model_from_json


def test_a_functional_config_naming_two_layers_alike_is_refused_saying_so():
    """Keras's words: the second 'a' would otherwise hide the first, and its tensors."""
    document = {
        "class_name": "Model",
        "keras_version": "2.2.4",
        "backend": "tensorflow",
        "config": {
            "name": "m",
            "layers": [
                {
                    "name": "in",
                    "class_name": "InputLayer",
                    "config": {"name": "in", "batch_input_shape": [None, 4]},
                    "inbound_nodes": [],
                },
                {
                    "name": "a",
                    "class_name": "Dense",
                    "config": {"name": "a", "units": 4},
                    "inbound_nodes": [[["in", 0, 0, {}]]],
                },
                {
                    "name": "a",
                    "class_name": "Dense",
                    "config": {"name": "a", "units": 5},
                    "inbound_nodes": [[["a", 0, 0, {}]]],
                },
            ],
            "input_layers": [["in", 0, 0]],
            "output_layers": [["a", 0, 0]],
        },
    }
    with pytest.raises(ConfigError, match='The name "a" is used more than once'):
        model_from_json(json.dumps(document))
