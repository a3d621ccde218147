"""Schemas of the TensorFlow Serving REST API (for OpenAPI); examples from the demo
models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from layerserve.service.api.schemas import (
    LEFT,
    MLP_INPUT,
    MLP_OUTPUT,
    PRODUCT,
    PRODUCT_SUM,
    RIGHT,
    ResponseBody,
    with_examples,
)


# ---- TensorFlow Serving REST --------------------------------------------------------
class ModelList(ResponseBody):
    """KServe V1: the models that have a version loaded."""

    model_config = with_examples({"models": ["conv_flatten", "hadamard", "masking_lstm", "mlp"]})
    models: list[str]


class VersionStatusDetail(ResponseBody):
    error_code: str
    error_message: str


class VersionStatus(ResponseBody):
    version: str
    state: Literal["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]
    status: VersionStatusDetail


class ModelStatus(ResponseBody):
    """TF Serving's GetModelStatus, plus KServe V1's ``name`` and ``ready``."""

    model_config = with_examples(
        {
            "model_version_status": [
                {
                    "version": v,
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for v in ("1", "2")
            ],
            "name": "mlp",
            "ready": True,
        }
    )
    model_version_status: list[VersionStatus]
    name: str
    ready: bool


class ModelSpec(ResponseBody):
    name: str
    signature_name: str
    version: str


class Dim(ResponseBody):
    size: str = Field(description="The size as a decimal string; -1 when variable.")
    name: str


class TensorShape(ResponseBody):
    dim: list[Dim]
    unknown_rank: bool


class TensorInfo(ResponseBody):
    dtype: str = Field(examples=["DT_FLOAT"])
    tensor_shape: TensorShape
    name: str


class SignatureDef(ResponseBody):
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    method_name: str


class SignatureDefMap(ResponseBody):
    signature_def: dict[str, SignatureDef]


class SignatureMetadata(ResponseBody):
    signature_def: SignatureDefMap


def _tensor_info(spec: dict[str, Any]) -> dict[str, Any]:
    dims = [{"size": str(d), "name": ""} for d in spec["shape"]]
    return {
        "dtype": "DT_FLOAT",
        "tensor_shape": {"dim": dims, "unknown_rank": False},
        "name": spec["name"],
    }


class TFModelMetadata(ResponseBody):
    """TF Serving's GetModelMetadata: the ``serving_default`` signature."""

    model_config = with_examples(
        {
            "model_spec": {"name": "mlp", "signature_name": "", "version": "2"},
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        "serving_default": {
                            "inputs": {"hidden_1_input": _tensor_info(MLP_INPUT)},
                            "outputs": {"probabilities": _tensor_info(MLP_OUTPUT)},
                            "method_name": "tensorflow/serving/predict",
                        }
                    }
                }
            },
        }
    )
    model_spec: ModelSpec
    metadata: SignatureMetadata


class PredictRowRequest(BaseModel):
    """Row format: one entry per example; objects keyed by input name for several
    inputs, plain values for one."""

    signature_name: str | None = Field(None, description='"serving_default" or empty.')
    instances: list[Any]


class PredictColumnarRequest(BaseModel):
    """Columnar format: each input's whole batch; an object keyed by input name, or the
    plain value for a model with one input."""

    signature_name: str | None = Field(None, description='"serving_default" or empty.')
    inputs: Any


PREDICT_ROW_RESPONSE = {"predictions": [{"hadamard": PRODUCT, "hadamard_1": PRODUCT_SUM}]}
PREDICT_COLUMNAR_RESPONSE = {"outputs": {"hadamard": [PRODUCT], "hadamard_1": [PRODUCT_SUM]}}


class PredictRowResponse(ResponseBody):
    model_config = with_examples(PREDICT_ROW_RESPONSE)
    predictions: list[Any] = Field(
        description="One entry per example: an object keyed by output name for several "
        "outputs, the plain value for one."
    )


class PredictColumnarResponse(ResponseBody):
    model_config = with_examples(PREDICT_COLUMNAR_RESPONSE)
    outputs: Any = Field(
        description="Each output's whole batch: an object keyed by output name for several "
        "outputs, the plain value for one."
    )


PREDICT_ROW_EXAMPLE = {"instances": [{"left": LEFT, "right": RIGHT}]}
PREDICT_COLUMNAR_EXAMPLE = {"inputs": {"left": [LEFT], "right": [RIGHT]}}
