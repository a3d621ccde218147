"""Bounds of a model's config.json fields (and the matching server settings): values past
them are mistakes that would wedge a model (5,000 threads, a queue delay of hours)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
