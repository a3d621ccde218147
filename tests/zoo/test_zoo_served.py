"""The model zoo served: each file Keras 3 and tf_keras wrote is uploaded to a real
server (a .keras or .h5 as it is; JSON + weights exported with layerserve first, as
users do, and uploaded as .onnx) and queried with tritonclient; every output and mask
equals what Keras computed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from keras_oracle import load_cases, load_file, oracle_params
from live_server import running_server
from model_uploads import upload

from layerserve.export import to_onnx
from layerserve.service.settings import Settings

KERAS_CASES = Path(__file__).with_name("keras_cases.py")
RTOL = ATOL = 1e-5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("zoo-repository"))
    with running_server(settings, wait_ready=False) as base:
        yield base


def uploaded_file(case_dir: Path, flavour: str, fmt: str, scratch: Path) -> Path:
    if fmt == "keras":
        return case_dir / "model.keras"
    if fmt == "h5":
        return case_dir / "model.h5"
    path = scratch / "model.onnx"  # `layerserve export model.json --weights ...`
    to_onnx(load_file(case_dir, flavour, fmt), path)
    return path


@pytest.mark.parametrize(("flavour", "case_id", "fmt"), oracle_params(KERAS_CASES))
def test_zoo_model_is_served_with_keras_numbers(
    keras_oracle, server, tmp_path, flavour, case_id, fmt
):
    assert load_cases(KERAS_CASES)[case_id].refused is None
    case_dir = keras_oracle.ensure(KERAS_CASES, flavour) / case_id
    meta = json.loads((case_dir / "meta.json").read_text())
    data = np.load(case_dir / "data.npz")
    name = f"{case_id}.{flavour}.{fmt.replace('+', '-')}"
    response = upload(server, name, uploaded_file(case_dir, flavour, fmt, tmp_path))
    assert response.status_code == 201, response.text

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    metadata = client.get_model_metadata(name)
    inputs = []
    for spec, index in zip(metadata["inputs"], range(meta["inputs"]), strict=True):
        array = data[f"x{index}"].astype(np.dtype(triton.triton_to_np_dtype(spec["datatype"])))
        tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    result = client.infer(name, inputs)
    names = [o["name"] for o in metadata["outputs"]]
    masks = {n for n in names if n.endswith("_mask") and n.removesuffix("_mask") in names}
    values = [n for n in names if n not in masks]
    assert len(values) == meta["outputs"]
    for index, output in enumerate(values):
        np.testing.assert_allclose(
            result.as_numpy(output), data[f"y{index}"], rtol=RTOL, atol=ATOL, err_msg=output
        )
        if meta["masks"][index]:
            np.testing.assert_array_equal(result.as_numpy(output + "_mask"), data[f"m{index}"])
        else:
            assert output + "_mask" not in masks
