"""Request and response schemas of the inspection routes (``:mask``, ``:validate``,
``/v1/shapes``), with the examples the OpenAPI document shows."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from layerserve.service.api.schemas import (
    Datatype,
    InferenceRequest,
    ResponseBody,
    inline_schema,
    with_examples,
)


class ValidationErrorResponse(ResponseBody):
    """A refused ``:validate``: the message and every problem on its own."""

    model_config = with_examples(
        {
            "error": "the request does not fit model 'mlp' version 1 (2 problems): ...",
            "problems": [
                "input 'hidden_1_input' dimension 1: expected 784, received 783 "
                "(expected shape [-1, 784], received [2, 783])",
                "inference input data-type is 'FP64', model expects 'FP32' for 'mlp' "
                "(input 'hidden_1_input')",
            ],
        }
    )
    error: str
    problems: list[str] = Field(default_factory=list)


# ---- :mask ---------------------------------------------------------------------------
# The demo model masking_lstm: Masking(mask_value=0) on 10 timesteps of 8 features.
MASKED_STEPS = (3, 8, 9)
MASK_REQUEST_EXAMPLE = {
    "inputs": [
        {
            "name": "masking_input",
            "shape": [1, 10, 8],
            "datatype": "FP32",
            "data": [[[0.0 if t in MASKED_STEPS else 0.5] * 8 for t in range(10)]],
        }
    ]
}


class MaskRequest(InferenceRequest):
    """A V2 inference request (JSON, or binary tensors after the JSON header as for
    ``/infer``); ``outputs`` is ignored: every output is reported."""

    model_config = with_examples(MASK_REQUEST_EXAMPLE)


class InputMask(ResponseBody):
    """The mask a Masking layer applied directly to this input computes. ``mask`` uses
    the Keras convention: ``true`` where the timestep is kept, ``false`` where every
    feature equals ``mask_value`` (masked). All fields are null for an input that no
    Masking layer reads."""

    name: str
    masking_layer: str | None
    mask_value: float | None
    mask: list[Any] | None = Field(description="Per row, one boolean per timestep.")
    masked_timesteps: list[Any] | None = Field(
        description="Per row, the indices of the masked timesteps."
    )


class OutputMask(ResponseBody):
    """An output and the mask the model computed for it (its ``<output>_mask`` graph
    output, Keras convention: ``true`` = kept); null when the output carries none."""

    name: str
    shape: list[int]
    mask_output: str | None
    mask: list[Any] | None
    masked_timesteps: list[Any] | None


class MaskResponse(ResponseBody):
    model_config = with_examples(
        {
            "model_name": "masking_lstm",
            "model_version": "1",
            "inputs": [
                {
                    "name": "masking_input",
                    "masking_layer": "masking",
                    "mask_value": 0.0,
                    "mask": [[t not in MASKED_STEPS for t in range(10)]],
                    "masked_timesteps": [list(MASKED_STEPS)],
                }
            ],
            "outputs": [
                {
                    "name": "lstm",
                    "shape": [1, 32],
                    "mask_output": None,
                    "mask": None,
                    "masked_timesteps": None,
                }
            ],
        }
    )
    model_name: str
    model_version: str
    inputs: list[InputMask]
    outputs: list[OutputMask]


# ---- :validate -----------------------------------------------------------------------
class InputDescriptor(BaseModel):
    name: str
    shape: list[int] = Field(description="The full shape, batch dimension first.")
    datatype: Datatype
    data: list[Any] | None = Field(
        None, description="Optional; when given, its element count must match the shape."
    )


class OutputName(BaseModel):
    name: str


class ValidateRequest(BaseModel):
    """Input descriptors as in a V2 inference request; ``data`` is optional. Without
    ``outputs`` every output is described."""

    model_config = with_examples(
        {
            "inputs": [{"name": "hidden_1_input", "shape": [2, 784], "datatype": "FP32"}],
            "outputs": [{"name": "probabilities"}],
        }
    )
    inputs: list[InputDescriptor]
    outputs: list[OutputName] | None = None


class OutputDescriptor(ResponseBody):
    name: str
    datatype: Datatype
    shape: list[int] = Field(description="Concrete sizes; -1 where the graph leaves it open.")


class ValidateResponse(ResponseBody):
    model_config = with_examples(
        {
            "model_name": "mlp",
            "model_version": "1",
            "valid": True,
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [2, 10]}],
        }
    )
    model_name: str
    model_version: str
    valid: bool
    outputs: list[OutputDescriptor]


# ---- /v1/shapes ----------------------------------------------------------------------
class ShapesRequest(BaseModel):
    """A model config as ``model.to_json()`` writes it (layerserve, Keras 2 or Keras 3,
    also a Keras 3 ``config.json``), as an object or as JSON text. ``input_shape``
    (batch axis first, null for unknown sizes) is needed only by configs without one.
    Lambda layers stored as bytecode are refused; weights are never allocated."""

    model_config = with_examples(
        {
            "model": {
                "class_name": "Sequential",
                "config": {
                    "name": "mlp",
                    "layers": [
                        {"class_name": "Dense", "config": {"units": 256, "activation": "relu"}},
                        {"class_name": "Dense", "config": {"units": 10}},
                    ],
                },
            },
            "input_shape": [None, 784],
        }
    )
    model: dict[str, Any] | str
    input_shape: list[int | None] | None = None


class LayerRow(ResponseBody):
    name: str
    class_name: str
    output_shape: list[Any] | str = Field(
        description='Batch axis first (null = any size); "multiple" for a layer called '
        "with different shapes; a list of shapes for several outputs."
    )
    params: int
    connected_to: list[str] = Field(description="Inbound tensors as layer[node][tensor].")


class ModelTensor(ResponseBody):
    """A model input or output: its name, shape (batch axis first) and dtype."""

    name: str
    shape: list[int | None]
    dtype: str


class ShapesResponse(ResponseBody):
    model_config = with_examples(
        {
            "name": "mlp",
            "layers": [
                {
                    "name": "dense_1",
                    "class_name": "Dense",
                    "output_shape": [None, 256],
                    "params": 200960,
                    "connected_to": ["dense_1_input[0][0]"],
                },
                {
                    "name": "dense_2",
                    "class_name": "Dense",
                    "output_shape": [None, 10],
                    "params": 2570,
                    "connected_to": ["dense_1[0][0]"],
                },
            ],
            "total_params": 203530,
            "trainable_params": 203530,
            "non_trainable_params": 0,
            "inputs": [{"name": "dense_1_input", "shape": [None, 784], "dtype": "float32"}],
            "outputs": [{"name": "dense_2", "shape": [None, 10], "dtype": "float32"}],
        }
    )
    name: str
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    inputs: list[ModelTensor]
    outputs: list[ModelTensor]


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body of a route that
    reads its body itself (to cap its size before parsing)."""
    schema = inline_schema(model)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
