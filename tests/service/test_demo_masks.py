"""The demo repository's model with a mask output (``masking_sequence``: Masking then
LSTM(return_sequences=True)) on a server started with ``demo=True``, asked exactly as
the README's mask example asks it: V2 names the mask in ``outputs``, TF Serving answers
plain lists unless ``output_filter`` names the mask, ``:mask`` reports it.

Expectations: the mask written by hand for the README's input (timesteps 1, 3 and 4 are
all zero) and the NumPy reference (``model.run``)."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from live_server import running_server

from layerserve import examples
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

ATOL = 1e-5
README_INPUT = [[[1, 2, 3], [0, 0, 0], [4, 5, 6], [0, 0, 0], [0, 0, 0]]]
README_MASK = [[True, False, True, False, False]]
V2_INPUT = {"name": "masking_input", "shape": [1, 5, 3], "datatype": "FP32", "data": README_INPUT}


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("demo"), demo=True)
    with running_server(settings) as base:
        yield base


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    values, mask = examples.masking_sequence().run(np.asarray(README_INPUT, np.float32))
    np.testing.assert_array_equal(mask, README_MASK)
    return values, mask


def test_the_demo_repository_has_a_model_with_a_mask_output(url):
    metadata = httpx.get(f"{url}/v2/models/masking_sequence").json()
    assert metadata["outputs"] == [
        {"name": "lstm", "datatype": "FP32", "shape": [-1, 5, 2]},
        {"name": "lstm_mask", "datatype": "BOOL", "shape": [-1, 5]},
    ]


def test_v2_asks_for_the_mask(url, reference):
    body = {"inputs": [V2_INPUT], "outputs": [{"name": "lstm"}, {"name": "lstm_mask"}]}
    response = httpx.post(f"{url}/v2/models/masking_sequence/infer", json=body)
    assert response.status_code == 200, response.text
    lstm, mask = response.json()["outputs"]
    assert (mask["name"], mask["datatype"], mask["shape"]) == ("lstm_mask", "BOOL", [1, 5])
    assert mask["data"] == README_MASK[0]
    np.testing.assert_allclose(np.reshape(lstm["data"], lstm["shape"]), reference[0], atol=ATOL)


def test_tf_serving_answers_plain_lists_and_the_mask_on_request(url, reference):
    plain = httpx.post(
        f"{url}/v1/models/masking_sequence:predict", json={"instances": README_INPUT}
    )
    assert plain.status_code == 200, plain.text
    np.testing.assert_allclose(plain.json()["predictions"], reference[0], atol=ATOL)
    body = {"instances": README_INPUT, "output_filter": ["lstm", "lstm_mask"]}
    asked = httpx.post(f"{url}/v1/models/masking_sequence:predict", json=body)
    assert asked.status_code == 200, asked.text
    (row,) = asked.json()["predictions"]
    assert row["lstm_mask"] == README_MASK[0]
    np.testing.assert_allclose(row["lstm"], reference[0][0], atol=ATOL)


def test_the_mask_endpoint_reports_it(url):
    response = httpx.post(f"{url}/v1/models/masking_sequence:mask", json={"inputs": [V2_INPUT]})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == [
        {
            "name": "lstm",
            "shape": [1, 5, 2],
            "mask_output": "lstm_mask",
            "mask": README_MASK,
            "masked_timesteps": [[1, 3, 4]],
        }
    ]


@pytest.mark.parametrize(
    ("output_filter", "message"),
    [
        (
            ["lstm", "nope"],
            "unexpected inference output 'nope' for model 'masking_sequence'; "
            "available outputs: ['lstm', 'lstm_mask']",
        ),
        (
            "lstm_mask",
            "'output_filter' must be a non-empty list of distinct output names of model "
            "'masking_sequence', e.g. ['lstm', 'lstm_mask']; got \"lstm_mask\"",
        ),
        (
            [],
            "'output_filter' must be a non-empty list of distinct output names of model "
            "'masking_sequence', e.g. ['lstm', 'lstm_mask']; got []",
        ),
        (
            ["lstm", "lstm"],
            "'output_filter' must be a non-empty list of distinct output names of model "
            "'masking_sequence', e.g. ['lstm', 'lstm_mask']; got [\"lstm\", \"lstm\"]",
        ),
    ],
)
def test_a_bad_output_filter_is_a_400(url, output_filter, message):
    body = {"instances": README_INPUT, "output_filter": output_filter}
    response = httpx.post(f"{url}/v1/models/masking_sequence:predict", json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"error": message}
