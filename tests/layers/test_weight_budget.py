"""``weight_budget_scope``: a model built from an untrusted config cannot allocate more
weights than allowed; the check happens before the allocation."""

from __future__ import annotations

import pytest

from layerserve.errors import WeightsError
from layerserve.layers import LSTM, Conv2D, Dense, Input
from layerserve.models import Sequential
from layerserve.serialization import weight_budget_scope

# (layers, input shape, weight bytes by hand: float32 = 4 bytes per parameter)
CASES = [
    ([Dense(3)], (4,), 4 * (4 * 3 + 3)),
    ([Dense(3, use_bias=False)], (4,), 4 * (4 * 3)),
    ([Conv2D(2, (3, 3))], (5, 5, 1), 4 * (3 * 3 * 1 * 2 + 2)),
    ([LSTM(2)], (6, 3), 4 * (4 * 2 * (3 + 2 + 1))),
    ([Dense(8), Dense(2)], (4,), 4 * (4 * 8 + 8 + 8 * 2 + 2)),
]


def _build(layers, shape):
    return Sequential(
        [Input(shape), *[type(layer).from_config(layer.get_config()) for layer in layers]]
    )


@pytest.mark.parametrize(("layers", "shape", "nbytes"), CASES)
def test_exactly_the_weights_bytes_fit(layers, shape, nbytes):
    with weight_budget_scope(nbytes):
        model = _build(layers, shape)
    assert 4 * model.count_params() == nbytes


@pytest.mark.parametrize(("layers", "shape", "nbytes"), CASES)
def test_one_byte_less_is_refused_naming_the_weight_and_the_limit(layers, shape, nbytes):
    with (
        pytest.raises(WeightsError, match=f"limit of {nbytes - 1} bytes"),
        weight_budget_scope(nbytes - 1),
    ):
        _build(layers, shape)


def test_a_huge_layer_is_refused_before_anything_is_allocated():
    with pytest.raises(WeightsError, match=r"weight 'kernel' \(100000, 100000\)"):
        with weight_budget_scope(1024 * 1024):
            Sequential([Input((100000,)), Dense(100000)])  # 40 GB if it were allocated


def test_outside_a_scope_there_is_no_limit_and_scopes_do_not_leak():
    with pytest.raises(WeightsError), weight_budget_scope(10):
        _build([Dense(3)], (4,))
    assert _build([Dense(300)], (400,)).count_params() == 400 * 300 + 300
