"""The Open Inference Protocol over gRPC, end to end: a real server on loopback (HTTP and
gRPC in one process), the real ``tritonclient.grpc`` beside ``tritonclient.http``.

Expectations come from the NumPy reference models (``model.predict``,
``model.compute_mask``), from the inputs themselves (identity models), and from the REST
answer to the same request: every error carries REST's message word for word, with the
gRPC status code that stands for REST's HTTP status."""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import tritonclient.http as th
from grpc_test_models import (
    DATATYPES,
    decode_raw,
    grpc_server,
    identity_name,
    mask_model,
    mask_model_input,
    write_models,
)
from live_server import free_port, running_server
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc
from tritonclient.utils import InferenceServerException

from layerserve import examples
from layerserve.service.settings import Settings

ATOL = 1e-5
MLP_INPUT, MLP_OUTPUT = "hidden_1_input", "probabilities"
# REST's HTTP status for each gRPC status code the server answers.
HTTP_OF = {
    "StatusCode.INVALID_ARGUMENT": "400",
    "StatusCode.NOT_FOUND": "404",
    "StatusCode.UNIMPLEMENTED": "501",
    "StatusCode.UNAVAILABLE": "503",
    "StatusCode.RESOURCE_EXHAUSTED": "503",  # a full queue (an oversized body is REST's 413)
    "StatusCode.DEADLINE_EXCEEDED": "504",
    "StatusCode.UNAUTHENTICATED": "401",
    "StatusCode.PERMISSION_DENIED": "403",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with grpc_server(write_models(tmp_path_factory.mktemp("grpc_repository"))) as server:
        yield server


@pytest.fixture(scope="module")
def clients(server):
    url, target = server
    rest, grpc_client = (
        th.InferenceServerClient(url.removeprefix("http://")),
        tg.InferenceServerClient(target),
    )
    yield rest, grpc_client
    rest.close()
    grpc_client.close()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server[1]) as channel:
        yield tpb_grpc.GRPCInferenceServiceStub(channel)


def mlp_inputs(module, x: np.ndarray, datatype: str = "FP32"):
    tensor = module.InferInput(MLP_INPUT, list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    return [tensor]


# ---- health, metadata, configuration ------------------------------------------------------
def test_server_health_and_metadata_match_rest(clients):
    rest, client = clients
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mlp") and client.is_model_ready("mlp", "2")
    assert not client.is_model_ready("no_such_model") and not client.is_model_ready("mlp", "9")
    metadata = client.get_server_metadata(as_json=True)
    assert metadata == {k: v for k, v in rest.get_server_metadata().items() if k in metadata}
    assert set(metadata) == {"name", "version", "extensions"}


@pytest.mark.parametrize(("name", "version"), [("mlp", ""), ("mlp", "1"), ("hadamard", "")])
def test_model_metadata_is_rests(clients, name, version):
    rest, client = clients
    grpc_metadata = client.get_model_metadata(name, version, as_json=True)
    rest_metadata = rest.get_model_metadata(name, version)
    for tensor in (*rest_metadata["inputs"], *rest_metadata["outputs"]):
        tensor["shape"] = [str(d) for d in tensor["shape"]]  # int64 in JSON: strings
    assert grpc_metadata == rest_metadata


def test_model_config_is_rests(clients):
    rest, client = clients
    config = client.get_model_config("mlp", "1", as_json=True)["config"]
    expected = rest.get_model_config("mlp", "1")
    assert config["name"] == "mlp" and config["max_batch_size"] == expected["max_batch_size"]
    assert config["platform"] == expected["platform"] and config["backend"] == expected["backend"]
    for key in ("input", "output"):
        got = [(t["name"], t["data_type"], [int(d) for d in t["dims"]]) for t in config[key]]
        assert got == [(t["name"], t["data_type"], t["dims"]) for t in expected[key]]
    queue = config["dynamic_batching"]["default_queue_policy"]
    assert (
        int(queue["max_queue_size"])
        == expected["dynamic_batching"]["default_queue_policy"]["max_queue_size"]
    )
    bytes_config = client.get_model_config(identity_name("BYTES"), as_json=True)["config"]
    assert bytes_config["input"][0]["data_type"] == "TYPE_STRING"  # model_config.proto's name
    rest_bytes = rest.get_model_config(identity_name("BYTES"))
    assert rest_bytes["input"][0]["data_type"] == "TYPE_STRING"


# ---- inference ------------------------------------------------------------------------
@pytest.mark.parametrize("rows", [0, 1, 7, 64])
def test_mlp_over_grpc_is_the_reference_and_rests_answer(clients, rows):
    rest, client = clients
    x = np.random.default_rng(rows).random((rows, 784), dtype=np.float32)
    result = client.infer("mlp", mlp_inputs(tg, x), model_version="1", request_id=f"r{rows}")
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == (f"r{rows}", "mlp", "1")
    got = result.as_numpy(MLP_OUTPUT)
    np.testing.assert_allclose(got, examples.mlp().predict(x), atol=ATOL)
    binary = rest.infer("mlp", mlp_inputs(th, x), model_version="1").as_numpy(MLP_OUTPUT)
    np.testing.assert_array_equal(got, binary)


def test_two_inputs_and_requested_outputs(clients):
    rest, client = clients
    metadata = client.get_model_metadata("hadamard", as_json=True)
    rng = np.random.default_rng(1)
    inputs, arrays = [], []
    for spec in metadata["inputs"]:
        shape = [3 if int(d) < 0 else int(d) for d in spec["shape"]]
        arrays.append(rng.random(shape, dtype=np.float32))
        inputs.append(tg.InferInput(spec["name"], shape, "FP32"))
        inputs[-1].set_data_from_numpy(arrays[-1])
    expected = examples.hadamard_model().predict(arrays)
    expected = expected if isinstance(expected, list) else [expected]
    names = [o["name"] for o in metadata["outputs"]]
    everything = client.infer("hadamard", inputs)
    for name, value in zip(names, expected, strict=True):
        np.testing.assert_allclose(everything.as_numpy(name), value, atol=ATOL)
    last = client.infer("hadamard", inputs, outputs=[tg.InferRequestedOutput(names[-1])])
    assert [o.name for o in last.get_response().outputs] == [names[-1]]
    np.testing.assert_allclose(last.as_numpy(names[-1]), expected[-1], atol=ATOL)


def test_mask_outputs_only_when_asked_for_by_name(clients):
    _, client = clients
    reference, x = mask_model(), mask_model_input()
    tensor = tg.InferInput("seq", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    plain = client.infer("seq_lstm", [tensor])
    assert [o.name for o in plain.get_response().outputs] == ["lstm"]
    asked = [tg.InferRequestedOutput("lstm"), tg.InferRequestedOutput("lstm_mask")]
    both = client.infer("seq_lstm", [tensor], outputs=asked)
    values, mask = reference.run(x)
    np.testing.assert_allclose(both.as_numpy("lstm"), values, atol=ATOL)
    np.testing.assert_array_equal(both.as_numpy("lstm_mask"), mask)
    np.testing.assert_array_equal(mask, reference.compute_mask(x))
    assert both.get_output("lstm_mask").datatype == "BOOL"
    alone = client.infer("seq_lstm", [tensor], outputs=[tg.InferRequestedOutput("lstm_mask")])
    np.testing.assert_array_equal(alone.as_numpy("lstm_mask"), mask)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_raw_contents_round_trip_every_datatype(clients, datatype):
    _, client = clients
    x = DATATYPES[datatype]
    tensor = tg.InferInput("x", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    got = client.infer(identity_name(datatype), [tensor]).as_numpy("y")
    if datatype == "BYTES":  # tritonclient gives bytes; the server holds UTF-8 text
        assert [v.decode() for v in got.reshape(-1)] == x.reshape(-1).tolist()
        assert got.shape == x.shape
    else:
        assert got.dtype == x.dtype
        np.testing.assert_array_equal(got, x)


TYPED = {  # datatype -> InferTensorContents field; FP16 has none
    "FP32": "fp32_contents",
    "INT8": "int_contents",
    "BOOL": "bool_contents",
    "UINT64": "uint64_contents",
    "BYTES": "bytes_contents",
}


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_contents_are_accepted(stub, datatype):
    x = DATATYPES[datatype]
    request = tpb.ModelInferRequest(model_name=identity_name(datatype), id="typed")
    tensor = request.inputs.add(name="x", datatype=datatype, shape=x.shape)
    values = x.reshape(-1).tolist()
    if datatype == "BYTES":
        values = [v.encode() for v in values]
    getattr(tensor.contents, TYPED[datatype]).extend(values)
    response = stub.ModelInfer(request)
    assert response.id == "typed" and response.outputs[0].datatype == datatype
    got = decode_raw(response.raw_output_contents[0], datatype, list(response.outputs[0].shape))
    assert got.tolist() == x.tolist()


def test_request_id_from_metadata_comes_back_in_the_trailers(stub):
    metadata = [("x-request-id", "rid-7")]
    _, call = stub.ServerLive.with_call(tpb.ServerLiveRequest(), metadata=metadata)
    assert ("x-request-id", "rid-7") in call.trailing_metadata()
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelMetadata(
            tpb.ModelMetadataRequest(name="nope"), metadata=[("x-request-id", "e-1")]
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("x-request-id", "e-1") in error.value.trailing_metadata()
    _, call = stub.ServerLive.with_call(tpb.ServerLiveRequest())
    made = dict(call.trailing_metadata())["x-request-id"]  # one is made when none is sent
    assert len(made) == 32 and int(made, 16) >= 0


# ---- errors: REST's words, gRPC's codes -----------------------------------------------
def typed_request(model: str, datatype: str, shape: list[int], values: list, field: str):
    request = tpb.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name="x", datatype=datatype, shape=shape)
    getattr(tensor.contents, field).extend(values)
    return request


def mistakes():
    """(id, call(module)) pairs: each makes the same mistake with either client."""
    x = np.zeros((1, 784), np.float32)

    def infer(model, arrays, **kwargs):
        def call(module, client):
            inputs = []
            for name, array, datatype in arrays:
                inputs.append(module.InferInput(name, list(array.shape), datatype))
                inputs[-1].set_data_from_numpy(array)
            return client.infer(model, inputs, **kwargs)

        return call

    return {
        "unknown model": infer("nope", [(MLP_INPUT, x, "FP32")]),
        "unknown version": infer("mlp", [(MLP_INPUT, x, "FP32")], model_version="9"),
        "wrong rank": infer("mlp", [(MLP_INPUT, x[0], "FP32")]),
        "wrong input name": infer("mlp", [("nope", x, "FP32")]),
        "wrong datatype": infer("mlp", [(MLP_INPUT, x.astype(np.float64), "FP64")]),
        "missing input": infer("hadamard", [("left", np.zeros((1, 8), np.float32), "FP32")]),
        "too many rows": infer("limited", [(MLP_INPUT, np.zeros((5, 784), np.float32), "FP32")]),
        "output requested twice": lambda module, client: client.infer(
            "mlp",
            _mlp(module, x),
            outputs=[module.InferRequestedOutput("probabilities")] * 2,
        ),
        "unknown output": lambda module, client: client.infer(
            "mlp", _mlp(module, x), outputs=[module.InferRequestedOutput("nope")]
        ),
        "metadata of unknown version": lambda module, client: client.get_model_metadata("mlp", "9"),
        "config of unknown model": lambda module, client: client.get_model_config("nope"),
        "load with a config": lambda module, client: client.load_model("mlp", config="{}"),
        # bytes 1, 2, 0: a BOOL byte must be 0 or 1 (tritonclient sends the bytes as they are)
        "bool byte neither 0 nor 1": infer(
            identity_name("BOOL"), [("x", np.frombuffer(b"\x01\x02\x00", bool)[None], "BOOL")]
        ),
        "queue timeout": infer(
            "delayed", [("x", np.ones((1, 3), np.float32), "FP32")], timeout=1000
        ),
        # no region is registered here (the register calls are refused): a tensor naming
        # one is refused, neither read from nowhere nor answered where its client never looks
        "input in shared memory": lambda module, client: client.infer(
            "mlp", [_in_shared_memory(module.InferInput(MLP_INPUT, [1, 784], "FP32"))]
        ),
        "output in shared memory": lambda module, client: client.infer(
            "mlp",
            _mlp(module, x),
            outputs=[_in_shared_memory(module.InferRequestedOutput("probabilities"))],
        ),
    }


def _in_shared_memory(tensor):
    tensor.set_shared_memory("region", 784 * 4)
    return tensor


def _mlp(module, x):
    tensor = module.InferInput(MLP_INPUT, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return [tensor]


def same_words(message: str) -> str:
    """The message without the time a request waited, which differs between two calls."""
    return re.sub(r"after waiting \d+ ms", "after waiting N ms", message)


def test_float_data_sent_as_bytes_is_refused_for_its_datatype_with_rests_words(server, stub):
    """Another datatype than the model's is refused before its data are read: float32
    bytes given as BYTES are no BYTES elements, which REST and gRPC must not report
    differently."""
    raw = np.full((1, 784), 0.1, np.float32).tobytes()
    request = tpb.ModelInferRequest(model_name="mlp")
    request.inputs.add(name=MLP_INPUT, datatype="BYTES", shape=[1, 784])
    request.raw_input_contents.append(raw)
    with pytest.raises(grpc.RpcError) as over_grpc:
        stub.ModelInfer(request)
    header = (
        b'{"inputs": [{"name": "%s", "shape": [1, 784], "datatype": "BYTES", '
        b'"parameters": {"binary_data_size": %d}}]}' % (MLP_INPUT.encode(), len(raw))
    )
    over_rest = httpx.post(
        f"{server[0]}/v2/models/mlp/infer",
        content=header + raw,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert over_rest.status_code == 400, over_rest.text
    assert over_grpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert over_grpc.value.details() == over_rest.json()["error"]
    assert "model expects 'FP32'" in over_rest.json()["error"]


@pytest.mark.parametrize("case", list(mistakes()))
def test_every_error_has_rests_message_and_the_matching_code(clients, case):
    rest, client = clients
    call = mistakes()[case]
    with pytest.raises(InferenceServerException) as over_rest:
        call(th, rest)
    with pytest.raises(InferenceServerException) as over_grpc:
        call(tg, client)
    assert same_words(over_grpc.value.message()) == same_words(over_rest.value.message())
    assert HTTP_OF[over_grpc.value.status()] == over_rest.value.status(), over_rest.value.message()


def test_an_error_too_long_for_the_clients_trailers_is_cut_not_turned_into_another(clients):
    """An error naming a 20,000-character input name: REST's JSON carries it whole; gRPC's
    trailers carry its beginning, within the C core's limits, so that tritonclient still
    sees INVALID_ARGUMENT (past them it would report RESOURCE_EXHAUSTED)."""
    rest, client = clients
    name = "n" * 20_000
    with pytest.raises(InferenceServerException) as over_rest:
        rest.infer("mlp", mlp_inputs_named(th, name))
    with pytest.raises(InferenceServerException) as over_grpc:
        client.infer("mlp", mlp_inputs_named(tg, name))
    assert over_grpc.value.status() == "StatusCode.INVALID_ARGUMENT"
    whole, cut = over_rest.value.message(), over_grpc.value.message()
    assert name in whole and len(cut) <= 4096
    assert cut.endswith(" [...]") and whole.startswith(cut.removesuffix(" [...]"))


def mlp_inputs_named(module, name: str):
    tensor = module.InferInput(name, [1, 784], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 784), np.float32))
    return [tensor]


def test_a_priority_that_is_not_an_integer_is_refused(stub):
    """tritonclient reserves 'priority' for its own argument; a stub sends any value."""
    request = typed_request(identity_name("FP32"), "FP32", [1, 3], [1.0, 2.0, 3.0], "fp32_contents")
    request.parameters["priority"].string_param = "hi"
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == (
        "request parameter 'priority' must be a non-negative integer, got 'hi'"
    )
    request.parameters["priority"].uint64_param = 2  # one level for all: served
    assert stub.ModelInfer(request).outputs[0].name == "y"


def test_typed_contents_out_of_range_and_miscounted(stub):
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(
            typed_request(identity_name("INT8"), "INT8", [1, 3], [1, 2, 300], "int_contents")
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "value 300 is out of range for INT8 [-128, 127]" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(
            typed_request(identity_name("FP32"), "FP32", [1, 3], [1.0], "fp32_contents")
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "needs 3 elements, its fp32_contents hold 1" in error.value.details()
    # the values in another field, or in two: refused, not read as none or half of them
    for extra in ([], [1.0, 2.0, 3.0]):
        request = typed_request(identity_name("FP32"), "FP32", [1, 3], extra, "fp32_contents")
        request.inputs[0].contents.int64_contents.extend([4, 5, 6])
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details() == (
            "input 'x': FP32 values go in fp32_contents, but ['int64_contents'] hold values; "
            "set fp32_contents only"
        )


def test_a_full_queue_is_resource_exhausted_with_rests_message(server):
    """max_queue_size 1 and a 600 ms queue delay: of three simultaneous calls one is
    served, two refused."""
    barrier = threading.Barrier(3)

    def send(value: float):
        client = tg.InferenceServerClient(server[1])
        tensor = tg.InferInput("x", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.full((1, 3), value, np.float32))
        barrier.wait()
        try:
            return client.infer("tiny_queue", [tensor]).as_numpy("y")
        except InferenceServerException as exc:
            return exc
        finally:
            client.close()

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(send, [10.0, 20.0, 30.0]))
    refused = [a for a in answers if isinstance(a, InferenceServerException)]
    assert len(refused) == 2, answers
    for error in refused:
        assert error.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert "'tiny_queue' exceeds maximum queue size 1" in error.message()


def test_invalid_inferences_count_as_failures_in_the_statistics(clients):
    rest, client = clients
    before = rest.get_inference_statistics("mlp", "2")["model_stats"][0]["inference_stats"]
    sent = time.perf_counter()
    with pytest.raises(InferenceServerException):
        client.infer("mlp", mlp_inputs(tg, np.zeros(784, np.float32)), model_version="2")
    waited_ns = (time.perf_counter() - sent) * 1e9
    client.infer("mlp", mlp_inputs(tg, np.zeros((2, 784), np.float32)), model_version="2")
    stats = client.get_inference_statistics("mlp", "2", as_json=True)["model_stats"][0]
    after = stats["inference_stats"]
    assert int(after["fail"].get("count", 0)) == before["fail"]["count"] + 1
    # its duration: from the call's start to its refusal, within what the client waited
    assert 0 < int(after["fail"]["ns"]) - int(before["fail"]["ns"]) < waited_ns
    assert int(after["success"]["count"]) == before["success"]["count"] + 1
    rest_stats = rest.get_inference_statistics("mlp", "2")["model_stats"][0]
    assert int(stats["inference_count"]) == rest_stats["inference_count"]


# ---- the repository extension ---------------------------------------------------------
def test_repository_index_unload_and_load(clients):
    rest, client = clients
    index = client.get_model_repository_index(as_json=True)["models"]
    assert index == [
        {k: v for k, v in entry.items() if v != ""} for entry in rest.get_model_repository_index()
    ]
    client.unload_model("conv_flatten")
    assert not client.is_model_ready("conv_flatten") and not rest.is_model_ready("conv_flatten")
    client.load_model("conv_flatten")
    assert client.is_model_ready("conv_flatten")


def test_a_message_over_the_limit_is_resource_exhausted_naming_it(tmp_path):
    from live_server import write_model

    write_model(tmp_path, "mlp", examples.mlp(), "1", {"max_batch_size": 64})
    port, limit = free_port(), 64 * 1024
    settings = Settings(model_repository=tmp_path, grpc_port=port, grpc_max_message_bytes=limit)
    with running_server(settings):
        client = tg.InferenceServerClient(f"127.0.0.1:{port}")
        x = np.zeros((64, 784), np.float32)  # 200 KB
        with pytest.raises(InferenceServerException) as error:
            client.infer("mlp", mlp_inputs(tg, x))
        assert error.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert str(limit) in error.value.message()
        small = client.infer("mlp", mlp_inputs(tg, x[:2])).as_numpy(MLP_OUTPUT)
        np.testing.assert_allclose(small, examples.mlp().predict(x[:2]), atol=ATOL)
        client.close()


def test_rest_keeps_serving_beside_grpc(server):
    assert httpx.get(server[0] + "/v2/health/ready").status_code == 200
