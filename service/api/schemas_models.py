"""OpenAPI models and multipart bodies of the model management routes (upload, delete,
download, export)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from layerserve.service.api.schemas import (
    ResponseBody,
    TensorMetadata,
    error_responses,
    with_examples,
)

UPLOAD_EXAMPLE = {
    "name": "classifier",
    "version": "3",
    "source_format": "keras",
    "original_filename": "classifier.keras",
    "sha256": "9f2c5b1e0d7a4c3b8e6f1a2d5c4b3a2918f7e6d5c4b3a29180f7e6d5c4b3a291",
    "onnx_sha256": "0d1c2b3a49586776a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f00f1e",
    "inputs": [{"name": "input_layer", "datatype": "FP32", "shape": [-1, 6, 3]}],
    "outputs": [
        {"name": "lstm", "datatype": "FP32", "shape": [-1, 6, 4]},
        {"name": "lstm_mask", "datatype": "BOOL", "shape": [-1, 6]},
    ],
    "mask_outputs": {"lstm": "lstm_mask"},
    "providers": ["CPUExecutionProvider"],
    "parity": {"max_abs_error": 4.470348358154297e-08, "masks_equal": True, "batch_sizes": [1, 7]},
    "config": {
        "max_batch_size": 32,
        "max_queue_delay_us": 0,
        "max_queue_size": 1024,
        "queue_timeout_ms": 30000,
        "providers": ["cpu"],
        "allow_cpu_fallback": False,
        "instances": 2,
        "intra_op_threads": 1,
    },
    "uploaded_at": "2026-01-01T12:00:00+00:00",
}


class UploadedVersion(ResponseBody):
    """The version an upload created, as it is now served."""

    model_config = with_examples(UPLOAD_EXAMPLE)

    name: str
    version: str = Field(description="One above the highest version number the model had.")
    source_format: str = Field(description='"onnx", "keras", "h5" or "layerserve".')
    original_filename: str | None = Field(description="The uploaded file's name, if given.")
    sha256: str = Field(description="SHA-256 of the uploaded file, kept beside the graph.")
    onnx_sha256: str = Field(
        description="SHA-256 of the served model.onnx (what the download answers); equal "
        "to sha256 for an .onnx upload, which is served as it came."
    )
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    mask_outputs: dict[str, str] = Field(
        description="For each output that carries a Keras mask, the output holding it."
    )
    providers: list[str] = Field(description="onnxruntime execution providers in use.")
    parity: dict[str, Any] | None = Field(
        description="The ONNX export against the NumPy reference (``max_abs_error``, "
        "``masks_equal``, ``batch_sizes``) for a Keras-family upload; null for ONNX."
    )
    config: dict[str, Any] = Field(description="The model's configuration as resolved.")
    uploaded_at: str = Field(description="UTC time of the upload, ISO 8601.")


class Deleted(ResponseBody):
    model_config = with_examples({"name": "classifier", "version": "3", "deleted": True})

    name: str
    version: str | None = Field(description="null when the whole model was deleted.")
    deleted: bool


def _errors(examples: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """``error_responses`` with examples of these routes."""
    responses = error_responses(*examples)
    for code, message in examples.items():
        responses[code]["content"]["application/json"]["example"] = {"error": message}
    return responses


UPLOAD_ERRORS = _errors(
    {
        400: "Expected a model without Python code. Received: a Keras 3 .keras archive that "
        "carries Python bytecode (a Lambda layer's function), which this service never "
        "executes. To serve it, export it on a machine you trust with `layerserve export "
        "MODEL_FILE -o model.onnx --unsafe` and upload model.onnx instead.",
        409: "the version policy of model 'classifier' does not select the new version 3; "
        "nothing was stored: change version_policy in its config.json",
        413: "uploaded file 'file' exceeds the maximum upload size of 1073741824 bytes",
        422: "Expected the ONNX export to match the NumPy reference within 0.0001 "
        "(parity_atol 0.0001 times max(1, largest |output|)) with equal masks. Received: "
        "max |onnxruntime - reference| = 0.0123, masks equal: True, over batch sizes [1, 7].",
    }
)
EXPORT_ERRORS = _errors(
    {
        400: "'classifier.onnx' is ONNX, or not a Keras file (it is no HDF5 file, zip archive "
        "or JSON text): nothing to export. Upload an ONNX model with POST /v1/models/{name}, "
        "which checks it and serves it",
        413: "uploaded file 'file' exceeds the maximum upload size of 1073741824 bytes",
        422: UPLOAD_ERRORS[422]["content"]["application/json"]["example"]["error"],
    }
)
NOT_FOUND = _errors(
    {404: "Request for unknown model: 'classifier' version 7 is not found; available "
     "versions: ['1', '2', '3']"}
)  # fmt: skip

FILE_FIELD = {
    "type": "string",
    "format": "binary",
    "description": "The model: .onnx, Keras 3 .keras, Keras 2 .h5, or a layerserve saved "
    "model (zip). Keras-family files are exported to ONNX and checked against the NumPy "
    "reference before they are served; Lambda bytecode is refused.",
}


def _form(fields: dict[str, dict[str, Any]], example: dict[str, str]) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads a multipart form from the raw stream."""
    schema = {"type": "object", "required": ["file"], "properties": fields}
    return {
        "requestBody": {
            "required": True,
            "content": {"multipart/form-data": {"schema": schema, "example": example}},
        }
    }


UPLOAD_FORM = _form(
    {
        "file": FILE_FIELD,
        "config": {
            "type": "string",
            "description": "Optional JSON text of the model's config.json (batching, "
            "providers, threads: unknown keys are refused); it applies to every version "
            "of the model.",
            "example": '{"max_batch_size": 32, "providers": ["cpu"]}',
        },
    },
    {"file": "(the bytes of classifier.keras)", "config": '{"max_batch_size": 32}'},
)
EXPORT_FORM = _form(
    {
        "file": {
            **FILE_FIELD,
            "description": "A Keras 3 .keras, Keras 2 .h5 or layerserve saved model; an "
            ".onnx file is refused (there is nothing to convert).",
        },
        "opset": {
            "type": "string",
            "description": "Optional ONNX opset to export to, an integer.",
            "example": "17",
        },
    },
    {"file": "(the bytes of classifier.keras)", "opset": "17"},
)
ONNX_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
DOWNLOAD_RESPONSES = {
    200: {
        "description": "The served model.onnx, as an attachment named <model>-<version>.onnx",
        "content": ONNX_BYTES,
    },
    **NOT_FOUND,
}
EXPORT_RESPONSES = {
    200: {
        "description": "The ONNX graph, as an attachment named <file stem>.onnx",
        "content": ONNX_BYTES,
        "headers": {
            "X-Source-Format": {
                "description": 'The detected format: "keras", "h5" or "layerserve".',
                "schema": {"type": "string"},
            },
            "X-Parity-Max-Abs-Error": {
                "description": "Largest |onnxruntime - NumPy reference| over the parity "
                "check's sample inputs.",
                "schema": {"type": "string"},
            },
        },
    },
    **EXPORT_ERRORS,
}
