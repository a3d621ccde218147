"""Keras-written files served: each case of every family's ``keras_cases*.py`` (and the
two zoos, in every format both Keras flavours write) is uploaded to a real server and
queried with tritonclient at 7, 1, 64 (the recorded rows repeated) and 0 rows; outputs and
masks equal what Keras computed. A case layerserve refuses is refused by the upload with a
4xx saying why, and nothing is served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from keras_oracle import load_cases, load_file
from live_server import running_server
from model_uploads import upload
from oracle_case import BATCH, FORMATS
from tritonclient.utils import InferenceServerException

from layerserve.export import to_onnx
from layerserve.export.api import exported_mask
from layerserve.service.settings import Settings

pytestmark = pytest.mark.parallel_safe

TESTS = Path(__file__).resolve().parents[1]
ZOOS = (TESTS / "zoo" / "keras_cases.py", TESTS / "zoo" / "sequence_cases.py")
KERAS_CASES = sorted({*TESTS.glob("**/keras_cases*.py"), *ZOOS})
# The zoos in every format; the family cases in one format per flavour (the loaders are
# checked format by format by each family's own Keras tests).
ONE_FORMAT = {"keras3": "keras", "tf_keras": "h5"}
ROW_COUNTS = (BATCH, 1, 64, 0)
# tf.keras's masked GroupNormalization couples the rows of a batch (its (N, T) mask is
# broadcast onto (N, T, C) from the right): only Keras's own batch has Keras's numbers.
BATCH_COUPLED = {("normalization", "tf_keras", "gn_masked")}
RTOL = ATOL = 1e-5


def parameters() -> list:
    found = []
    for module in KERAS_CASES:
        key = module.stem if module in ZOOS else module.parent.name
        if module.stem.startswith("keras_cases_"):
            key += "-" + module.stem.removeprefix("keras_cases_")
        for case in load_cases(module).values():
            for flavour in case.flavours:
                formats = case.formats_for(flavour)
                if module not in ZOOS:
                    formats = tuple(f for f in formats if f == ONE_FORMAT[flavour])
                for fmt in formats:
                    found.append(
                        pytest.param(
                            module, flavour, case.id, fmt, id=f"{key}-{flavour}-{case.id}-{fmt}"
                        )
                    )
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = Settings(model_repository=tmp_path_factory.mktemp("served-repository"))
    with running_server(settings, wait_ready=False) as base:
        yield base


def uploaded_file(case_dir: Path, flavour: str, fmt: str, scratch: Path) -> Path:
    if fmt == "keras":
        return case_dir / "model.keras"
    if fmt == "h5":
        return case_dir / "model.h5"
    path = scratch / "model.onnx"  # `layerserve export model.json --weights ...`, as users do
    to_onnx(load_file(case_dir, flavour, fmt), path)
    return path


@pytest.mark.parametrize(("module", "flavour", "case_id", "fmt"), parameters())
def test_keras_file_is_served_with_keras_numbers(
    keras_oracle, server, tmp_path, module, flavour, case_id, fmt
):
    assert fmt in FORMATS[flavour]
    case = load_cases(module)[case_id]
    case_dir = keras_oracle.ensure(module, flavour) / case_id
    meta = json.loads((case_dir / "meta.json").read_text())
    label = f"{module.parent.name}.{case_id}.{flavour}.{fmt}"
    name = f"{case_id[:40]}.{hashlib.sha256(label.encode()).hexdigest()[:12]}"
    refusal = case.refused or case.export_refused
    if refusal is not None:
        response = upload(
            server, name, case_dir / ("model.keras" if fmt == "keras" else "model.h5")
        )
        assert 400 <= response.status_code < 500, response.text
        assert refusal in response.json()["error"]
        return
    response = upload(server, name, uploaded_file(case_dir, flavour, fmt, tmp_path))
    assert response.status_code == 201, response.text

    data = np.load(case_dir / "data.npz")
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    metadata = client.get_model_metadata(name)
    if case.input_refused is not None:  # inputs Keras refuses: a 400, and the server lives
        for spec, index in zip(metadata["inputs"], range(meta["inputs"]), strict=True):
            array = data[f"x{index}"]
            tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(array.astype(np.float32), binary_data=True)
        with pytest.raises(InferenceServerException) as refused:
            client.infer(name, [tensor])
        assert refused.value.status() == "400", refused.value
        # the service's guard of a graph holding a recurrent op, or the graph's own check
        said = refused.value.message()
        assert f"Received: shape {list(array.shape)}" in said or case.onnx_input_refused in said
        assert client.is_server_live()
        return
    names = [o["name"] for o in metadata["outputs"]]
    masks = {n for n in names if n.endswith("_mask") and n.removesuffix("_mask") in names}
    values = [n for n in names if n not in masks]
    assert len(values) == meta["outputs"]
    coupled = (module.parent.name, flavour, case_id) in BATCH_COUPLED
    # Only a model whose rows depend on one another has its requests run unmerged.
    config = client.get_model_config(name)
    assert (config.get("dynamic_batching") is None) is coupled, config
    for rows in (BATCH,) if coupled else ROW_COUNTS:
        picked = np.arange(rows) % BATCH  # 64 rows: the recorded seven, repeated
        inputs = []
        for spec, index in zip(metadata["inputs"], range(meta["inputs"]), strict=True):
            datatype = np.dtype(triton.triton_to_np_dtype(spec["datatype"]))
            array = data[f"x{index}"][picked].astype(datatype)
            tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(array, binary_data=True)
            inputs.append(tensor)
        # every output asked for: mask outputs come back only when asked for
        asked = [triton.InferRequestedOutput(n, binary_data=True) for n in names]
        result = client.infer(name, inputs, outputs=asked)
        for index, output in enumerate(values):
            what = f"{output}, {rows} rows"
            np.testing.assert_allclose(
                result.as_numpy(output),
                data[f"y{index}"][picked],
                rtol=RTOL,
                atol=max(ATOL, case.atol),  # the case's own: half precision rounds more
                err_msg=what,
            )
            if meta["masks"][index]:
                mask = exported_mask(data[f"m{index}"], BATCH)
                np.testing.assert_array_equal(
                    result.as_numpy(output + "_mask"), mask[picked], err_msg=what
                )
            else:
                assert output + "_mask" not in masks
