"""Pydantic models of the HTTP API, for its OpenAPI document.

The routes read raw bodies and write prebuilt JSON (the protocol codecs are faster than
pydantic on the hot path), so these models document the wire format rather than parse
it. Shared here: ``ErrorResponse`` and ``error_responses`` for every router, and the
Open Inference Protocol (V2) models. The examples are real requests and answers of the
example models of ``layerserve.examples``: ``mlp`` and the two-input ``hadamard``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import SkipJsonSchema
from starlette.convertors import StringConvertor, register_url_convertor

from layerserve import __version__
from layerserve.service.dataplane import EXTENSIONS, SERVER_NAME

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES", "STRING", "BF16",
]  # fmt: skip
Parameters = dict[str, str | int | float | bool]

# ---- example values (the demo models) ------------------------------------------------
LEFT = [0.5, -1.0, 0.25, 2.0, -0.5, 1.5, 0.0, 1.0]
RIGHT = [1.0, 0.5, -0.25, 0.75, 2.0, -1.0, 0.5, 0.0]
ONES = [1.0] * 8
# hadamard(LEFT, RIGHT): the element-wise product of its two Dense branches, and its sum.
PRODUCT = [
    -0.003969, -0.123612, -0.350110, 0.183157, -0.048782, 0.149471, -0.090246, -0.257780,
    0.667815, 0.090175, 0.352491, -0.534943, 0.323377, -0.273261, -0.002577, 0.167473,
    0.011586, 0.832653, 0.042258, -0.125445, -0.064969, -0.043729, -0.005050, -0.015492,
    -0.058124, 0.439802, 0.027328, -0.394467, 0.001161, 0.004039, -0.262444, 0.091438,
]  # fmt: skip
PRODUCT_SUM, ONES_SUM = 0.729223, -2.990722
MLP_INPUT = {"name": "hidden_1_input", "datatype": "FP32", "shape": [-1, 784]}
MLP_OUTPUT = {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}


# ---- path parameters ---------------------------------------------------------------
class SegmentConvertor(StringConvertor):
    """A path segment without ':', for ``{name:segment}`` (and versions, labels) where a
    path ends with it: no model name, version or label holds ':', so
    ``GET /v1/models/mlp:predict`` is the predict route asked with the wrong method (405,
    ``Allow: POST``), not the status of a model named ``mlp:predict`` (404)."""

    regex = "[^/:]+"


register_url_convertor("segment", SegmentConvertor())

ModelName = Annotated[str, Path(description="A model of the repository.", examples=["mlp"])]
# The inference routes' request examples are written for the two-input demo model.
InferModelName = Annotated[
    str, Path(description="A model of the repository.", examples=["hadamard"])
]
Version = Annotated[
    str,
    Path(
        description="A version number (routes without it serve the highest loaded).", examples=["1"]
    ),
]
Label = Annotated[
    str, Path(description="A version label; this server has one: ``latest``.", examples=["latest"])
]


def with_examples(*values: Any) -> ConfigDict:
    """``model_config`` of a model whose JSON schema lists ``values`` as examples."""
    return ConfigDict(json_schema_extra={"examples": list(values)})


class ResponseBody(BaseModel):
    """A response body: the server sends exactly these fields."""

    model_config = ConfigDict(extra="forbid")


# ---- tags --------------------------------------------------------------------------
OPENAPI_TAGS = [
    {
        "name": "v2",
        "description": "Open Inference Protocol (KServe V2) REST, as Triton serves it: health, "
        "server and model metadata, model configuration, inference with JSON or binary "
        "tensors, and the model repository extension (index, load and unload: admin).",
    },
    {
        "name": "tensorflow-serving",
        "description": "TensorFlow Serving REST (and KServe V1): model status, signature "
        "metadata and ``:predict`` in row or columnar format.",
    },
    {
        "name": "models",
        "description": "Bring a model: upload ONNX or Keras-family files as new versions, "
        "delete them, download the served ONNX graph, or convert a file without storing "
        "it (admin).",
    },
    {
        "name": "inspection",
        "description": "Masks and shapes: the timesteps a model masks, a request checked "
        "against a model without running it, and the layer output shapes of a model "
        "config.",
    },
    {
        "name": "benchmark",
        "description": "Latency percentiles and throughput of a served model, measured in "
        "the server process (admin; one at a time).",
    },
    {
        "name": "observability",
        "description": "Prometheus metrics with Triton's metric names, and the V2 "
        "statistics extension.",
    },
]
# Operation ids start with these for the tags of the two protocols, whose routes share
# function names (``v2_model_metadata``, ``tfserving_model_metadata``).
OPERATION_PREFIXES = {"v2": "v2", "tensorflow-serving": "tfserving"}


# ---- errors -------------------------------------------------------------------------
class ErrorResponse(ResponseBody):
    """Every failed request: ``{"error": "..."}``, the Open Inference Protocol's shape."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"error": "Request for unknown model: 'nope' is not found"}]
        },
    )

    error: str = Field(description="What went wrong, naming what was expected and received.")
    problems: list[str] | SkipJsonSchema[None] = Field(
        None, description="Every problem found, when a request is checked as a whole."
    )


ERROR_EXAMPLES: dict[int, tuple[str, str]] = {
    400: (
        "Invalid request: malformed JSON, or inputs that do not fit the model",
        "unable to parse 'data': shape does not match true shape of 'data' field for input "
        "'left': shape [2, 8] needs 16 elements, 'data' has 8",
    ),
    401: (
        "No bearer token while the endpoint needs one",
        "this endpoint needs 'Authorization: Bearer <admin token>'; the request has no "
        "Authorization header",
    ),
    403: (
        "A wrong token, or a non-loopback client on an admin endpoint while no admin token is set",
        "the Bearer token is not valid for this endpoint",
    ),
    404: ("Unknown model, version or label", "Request for unknown model: 'nope' is not found"),
    409: (
        "The resource is busy",
        "a benchmark is already running; one runs at a time, retry when it has finished",
    ),
    413: (
        "The body, its decompressed form, or a tensor it describes is over the size limit",
        "request body of 70000000 bytes exceeds the maximum allowed input size of 67108864 bytes",
    ),
    422: (
        "The ONNX export of an uploaded model does not match the NumPy reference",
        "Expected the ONNX export to match the NumPy reference within 1e-05 (parity_atol "
        "1e-05 times max(1, largest |output|)) with equal masks. Received: max |onnxruntime "
        "- reference| = 0.0123, masks equal: True, over batch sizes (1, 7).",
    ),
    500: (
        "onnxruntime failed while running a valid request",
        "model 'mlp' failed to run: <the onnxruntime error>",
    ),
    501: (
        "A protocol feature this server does not implement",
        ":classify is not supported for model 'mlp': it needs a tf.Example parsing "
        "signature, which ONNX models do not have; use :predict",
    ),
    503: (
        "Not ready (loading, draining) or the model's queue is full; retry after "
        "``Retry-After`` seconds",
        "inference request for model 'mlp' exceeds maximum queue size 1024",
    ),
    504: (
        "The request waited in the model's queue longer than its timeout",
        "request for model 'mlp' timed out after waiting 30000 ms in the queue",
    ),
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for the given error statuses, plus ``default`` for the rest
    (500): all answer with ``ErrorResponse``. The 401 and 403 answers of access control
    are added to every operation that can give them (``documentation.add_security``)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        description, message = ERROR_EXAMPLES[code]
        responses[code] = {
            "model": ErrorResponse,
            "description": description,
            "content": {"application/json": {"example": {"error": message}}},
        }
    responses["default"] = {
        "model": ErrorResponse,
        "description": "Any other error, e.g. 500",
    }
    return responses


def route_docs(model: Any, *errors: int, **extra: Any) -> dict[str, Any]:
    """Keyword arguments of a route that writes its JSON itself: ``model`` documents the
    200 body without serialising it (``response_model=None``); ``errors`` lists the error
    statuses; ``extra`` adds route arguments (``summary``, ``description``, ...)."""
    return {
        "response_model": None,
        "responses": {
            200: {"model": model, "description": "Success"},
            **error_responses(*errors),
        },
        **extra,
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of ``model`` with its sub-models inlined: for request bodies given
    through ``openapi_extra``, whose models FastAPI does not add to the components."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return resolve(schema)


# ---- Open Inference Protocol (V2) ---------------------------------------------------
class ServerMetadata(ResponseBody):
    model_config = with_examples(
        {"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS}
    )
    name: str
    version: str
    extensions: list[str] = Field(description="Protocol extensions this server implements.")


class ServerLive(ResponseBody):
    model_config = with_examples({"live": True})
    live: bool


class ServerReady(ResponseBody):
    model_config = with_examples({"ready": True})
    ready: bool


class ModelReady(ResponseBody):
    model_config = with_examples({"name": "mlp", "ready": True})
    name: str
    ready: bool


class TensorMetadata(ResponseBody):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="Full shape, batch first; -1 marks a variable size.")


class ModelMetadata(ResponseBody):
    model_config = with_examples(
        {
            "name": "mlp",
            "versions": ["1", "2"],
            "platform": "onnxruntime_onnx",
            "inputs": [MLP_INPUT],
            "outputs": [MLP_OUTPUT],
        }
    )
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: str
    shape: list[int] = Field(description="Full shape, including the batch dimension.")
    datatype: Datatype
    parameters: Parameters | None = Field(
        None, description="``binary_data_size`` when the data follows the JSON header."
    )
    data: list[Any] | SkipJsonSchema[None] = Field(
        None,
        description="Row-major elements, nested in the shape or flat; absent when "
        "the data is binary.",
    )


class RequestOutput(BaseModel):
    name: str
    parameters: Parameters | None = Field(
        None, description="``binary_data``: true to get this output as binary data."
    )


class InferenceRequest(BaseModel):
    """A V2 inference request (JSON form)."""

    id: str | None = Field(None, description="Echoed in the response.")
    parameters: Parameters | None = Field(
        None,
        description="``timeout`` (microseconds in the queue), ``binary_data_output``.",
    )
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = Field(
        None, description="Which outputs to return; all of them when left out."
    )


class ResponseOutput(ResponseBody):
    name: str
    shape: list[int]
    datatype: Datatype
    parameters: Parameters | SkipJsonSchema[None] = Field(
        None, description="``binary_data_size`` when the data follows the JSON header."
    )
    data: list[Any] | SkipJsonSchema[None] = Field(
        None, description="Row-major elements, flat; absent for binary outputs."
    )


INFER_RESPONSE = {
    "model_name": "hadamard",
    "model_version": "1",
    "id": "42",
    "outputs": [
        {"name": "hadamard_1", "datatype": "FP32", "shape": [2], "data": [PRODUCT_SUM, ONES_SUM]}
    ],
}


class InferenceResponse(ResponseBody):
    """A V2 inference response (JSON form)."""

    model_config = with_examples(INFER_RESPONSE)
    model_name: str
    model_version: str
    id: str | SkipJsonSchema[None] = Field(None, description="The request's id, if it had one.")
    parameters: Parameters | SkipJsonSchema[None] = None
    outputs: list[ResponseOutput]


INFER_EXAMPLE = {
    "id": "42",
    "inputs": [
        {"name": "left", "shape": [2, 8], "datatype": "FP32", "data": [LEFT, ONES]},
        {"name": "right", "shape": [2, 8], "datatype": "FP32", "data": [RIGHT, ONES]},
    ],
    "outputs": [{"name": "hadamard_1"}],
}
INFER_FLAT_EXAMPLE = {
    "inputs": [
        {"name": "left", "shape": [1, 8], "datatype": "FP32", "data": LEFT},
        {"name": "right", "shape": [1, 8], "datatype": "FP32", "data": RIGHT},
    ]
}
INFER_FLAT_RESPONSE = {
    "model_name": "hadamard",
    "model_version": "1",
    "outputs": [
        {"name": "hadamard", "datatype": "FP32", "shape": [1, 32], "data": PRODUCT},
        {"name": "hadamard_1", "datatype": "FP32", "shape": [1], "data": [PRODUCT_SUM]},
    ],
}


class ConfigTensor(ResponseBody):
    name: str
    data_type: str = Field(examples=["TYPE_FP32"])
    dims: list[int] = Field(description="Shape without the batch dimension when batched.")


class QueuePolicy(ResponseBody):
    max_queue_size: int
    default_timeout_microseconds: int
    allow_timeout_override: bool


class DynamicBatching(ResponseBody):
    max_queue_delay_microseconds: int
    default_queue_policy: QueuePolicy


class InstanceGroup(ResponseBody):
    count: int
    kind: Literal["KIND_CPU", "KIND_GPU"]


class StringValue(ResponseBody):
    string_value: str


class ModelConfiguration(ResponseBody):
    """Triton's ModelConfig JSON for a served model version."""

    model_config = with_examples(
        {
            "name": "mlp",
            "platform": "onnxruntime_onnx",
            "backend": "onnxruntime",
            "max_batch_size": 64,
            "version_policy": {"all": {}},
            "input": [{"name": "hidden_1_input", "data_type": "TYPE_FP32", "dims": [784]}],
            "output": [{"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]}],
            "dynamic_batching": {
                "max_queue_delay_microseconds": 0,
                "default_queue_policy": {
                    "max_queue_size": 1024,
                    "default_timeout_microseconds": 30000000,
                    "allow_timeout_override": True,
                },
            },
            "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
            "parameters": {
                "intra_op_thread_count": {"string_value": "1"},
                "execution_providers": {"string_value": "CPUExecutionProvider"},
            },
        }
    )
    name: str
    platform: str
    backend: str
    max_batch_size: int
    version_policy: dict[str, dict[str, Any]] = Field(
        description='Which versions on disk serve: {"latest": {"num_versions": N}}, '
        '{"all": {}} (the default) or {"specific": {"versions": [...]}}.'
    )
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    dynamic_batching: DynamicBatching | None = Field(
        description="null when not batched, or when the model's rows depend on one another "
        "(each request then runs as it came)."
    )
    instance_group: list[InstanceGroup]
    parameters: dict[str, StringValue]


class RepositoryIndexRequest(BaseModel):
    """Optional body of the repository index request."""

    ready: bool = Field(False, description="true: list only the versions ready to serve.")


class RepositoryIndexEntry(ResponseBody):
    name: str
    version: str | SkipJsonSchema[None] = None
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str | SkipJsonSchema[None] = Field(None, description="Why it is not READY.")


class RepositoryIndex(RootModel[list[RepositoryIndexEntry]]):
    """One entry per loaded model version, or per model that has none loaded."""

    model_config = with_examples(
        [
            {"name": "hadamard", "version": "1", "state": "READY"},
            {"name": "mlp", "version": "1", "state": "READY"},
            {"name": "mlp", "version": "2", "state": "READY"},
        ]
    )


class RepositoryControlRequest(BaseModel):
    """Optional body of load/unload; file and config overrides are not supported."""

    parameters: dict[str, Any] = Field(default_factory=dict)


class LoadResponse(ResponseBody):
    model_config = with_examples({"name": "mlp", "load": True})
    name: str
    load: bool


class UnloadResponse(ResponseBody):
    model_config = with_examples({"name": "mlp", "unload": True})
    name: str
    unload: bool
