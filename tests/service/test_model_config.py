"""Bounds of a model's config.json fields (and the matching server settings): values past
them are mistakes that would wedge a model (5,000 threads, a queue delay of hours)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from layerserve.service.errors import ModelLoadError
from layerserve.service.model_config import ModelConfig
from layerserve.service.settings import Settings

BOUNDS = [
    ("max_batch_size", 0, 1 << 20),
    ("max_queue_delay_us", 0, 1_000_000),
    ("max_queue_size", 1, 1_000_000),
    ("queue_timeout_ms", 1, 3_600_000),
    ("instances", 1, 64),
    ("intra_op_threads", 0, 256),
]


@pytest.mark.parametrize(("field", "low", "high"), BOUNDS)
def test_a_model_config_takes_its_bounds_and_refuses_past_them(field, low, high):
    assert getattr(ModelConfig(**{field: low}), field) == low
    assert getattr(ModelConfig(**{field: high}), field) == high
    for wrong in (low - 1, high + 1, 3_000_000_000):
        with pytest.raises(ValidationError, match=field):
            ModelConfig(**{field: wrong})


@pytest.mark.parametrize(("field", "low", "high"), BOUNDS)
def test_the_server_settings_have_the_same_bounds(field, low, high, monkeypatch):
    monkeypatch.setenv(f"LAYERSERVE_{field.upper()}", str(high))
    assert getattr(Settings(), field) == high
    monkeypatch.setenv(f"LAYERSERVE_{field.upper()}", str(high + 1))
    with pytest.raises(ValidationError, match=field):
        Settings()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"max_batch_size": true}', "max_batch_size"),  # would be 1
        ('{"max_batch_size": "8"}', "max_batch_size"),
        ('{"max_batch_size": 8.5}', "max_batch_size"),
        ('{"instances": "2"}', "instances"),
        ('{"allow_cpu_fallback": "yes"}', "allow_cpu_fallback"),
        ('{"allow_cpu_fallback": 1}', "allow_cpu_fallback"),
        ('{"providers": []}', "providers"),  # would take the server's
        ('{"version_policy": {"latest": {"num_versions": "1"}}}', "num_versions"),
        ('{"version_policy": {"specific": {"versions": [true]}}}', "versions"),
        ('{"version_policy": {"specific": {"versions": ["1"]}}}', "versions"),
        ('{"version_policy": {"specific": {"versions": [-1, 1]}}}', "versions"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_refused_not_coerced(text, field):
    with pytest.raises(ModelLoadError, match=field):
        ModelConfig.parse(text.encode(), Path("config.json"))


def test_the_json_types_of_each_field_are_taken():
    text = (
        '{"max_batch_size": 8, "providers": ["cpu"], "allow_cpu_fallback": false, '
        '"instances": 2, "version_policy": {"specific": {"versions": [0, 3]}}}'
    )
    config = ModelConfig.parse(text.encode(), Path("config.json"))
    assert (config.max_batch_size, config.providers, config.allow_cpu_fallback) == (
        8,
        ["cpu"],
        False,
    )
    assert config.policy().select(["0", "1", "3"]) == ["0", "3"]


def test_a_whole_number_may_be_written_as_json_writes_floats():
    """JSON has one number type: 8.0 (Python's json.dumps of a float) is 8."""
    text = b'{"max_batch_size": 8.0, "version_policy": {"specific": {"versions": [1.0, 3e0]}}}'
    config = ModelConfig.parse(text, Path("config.json"))
    assert config.max_batch_size == 8 and type(config.max_batch_size) is int
    assert config.policy().select(["1", "2", "3"]) == ["1", "3"]


@pytest.mark.parametrize("text", [b"", b"\n", b"  \r\n"])
def test_an_empty_config_file_is_no_config(text):
    assert ModelConfig.parse(text, Path("config.json")) == ModelConfig()
