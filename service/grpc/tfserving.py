"""TensorFlow Serving's gRPC API: ``tensorflow.serving.PredictionService`` (Predict,
GetModelMetadata) and ``tensorflow.serving.ModelService`` (GetModelStatus), thin methods
over the data plane as the REST routes of ``service/api/tfserving.py`` are, with REST's
checks and messages (``protocols/tfserving.py``, ``protocols/tfserving_models.py``).

Each call goes through the V2 servicer's wrapper (``InferenceServicer.call``): the same
access levels, request ids, log line and errors -> status codes. Classify, Regress and
MultiInference answer UNIMPLEMENTED, as REST's ``:classify`` and ``:regress`` answer 501;
HandleReloadConfigRequest too (models are managed through the repository)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from layerserve.service import errors
from layerserve.service.access import AccessPolicy, Level
from layerserve.service.grpc import tfserving_codec as codec
from layerserve.service.grpc.servicer import InferenceServicer, status_of
from layerserve.service.grpc.tfs_generated.tensorflow_serving.apis import (
    model_service_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2,
    prediction_service_pb2_grpc,
)
from layerserve.service.protocols import tfserving, tfserving_models
from layerserve.service.protocols.tfserving import check_input_names
from layerserve.service.request_context import current_request

PREDICTION_SERVICE = prediction_service_pb2.DESCRIPTOR.services_by_name["PredictionService"]
MODEL_SERVICE = model_service_pb2.DESCRIPTOR.services_by_name["ModelService"]
SERVICE_NAMES = (PREDICTION_SERVICE.full_name, MODEL_SERVICE.full_name)
SIGNATURE_DEF_FIELD = "signature_def"  # the one metadata field TF Serving knows

Handler = Callable[[Any, Any, Any], Awaitable[Any]]


def rpc(level: Level) -> Callable[[Handler], Handler]:
    """A servicer method through the V2 servicer's wrapper (see the module docstring)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def method(self: _TFServing, request: Any, context: Any) -> Any:
            async def bound(_: Any, request: Any, context: Any) -> Any:
                return await handler(self, request, context)

            bound.__name__ = handler.__name__
            return await self.v2.call(bound, level, request, context, self.service_name)

        return method

    return decorate


class _TFServing:
    service_name = ""

    def __init__(self, app: Any, policy: AccessPolicy) -> None:
        self.v2 = InferenceServicer(app, policy)
        self.plane = app.state.dataplane
        self.settings = app.state.settings

    def model_of(self, spec: Any) -> Any:
        """The loaded model a ``ModelSpec`` names: its version, its label, or the latest."""
        return self.plane.model(spec.name, version_of(spec))


def version_of(spec: Any) -> str | None:
    if not spec.name:
        raise errors.InvalidInput("model_spec.name is required: the model to address")
    # version and version_label are a oneof: a message cannot carry both
    if spec.HasField("version"):
        return str(spec.version.value)
    label = spec.version_label
    return tfserving_models.version_for_label(spec.name, label) if label else None


def unsupported(method: str, spec: Any) -> errors.NotSupported:
    """REST's answer to ``:classify`` / ``:regress``, for the gRPC method."""
    return errors.NotSupported(
        f"{method} is not supported for model '{spec.name}': it needs a tf.Example "
        "parsing signature, which ONNX models do not have; use Predict"
    )


class PredictionServicer(_TFServing, prediction_service_pb2_grpc.PredictionServiceServicer):
    service_name = PREDICTION_SERVICE.full_name

    @rpc("api")
    async def Predict(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        spec = request.model_spec
        model = self.model_of(spec)
        tfserving._check_signature({"signature_name": spec.signature_name})
        for option in ("predict_streamed_options", "request_options"):
            if request.HasField(option):
                raise errors.NotSupported(
                    f"PredictRequest.{option} is not supported: this server answers each "
                    "Predict call with one whole response (no streaming or disaggregated "
                    "serving); leave it unset"
                )
        place = self.plane.admit(model)
        try:
            limit = self.settings.grpc_max_message_bytes
            given = request.inputs
            check_input_names(given, model)
            inputs = {
                s.name: codec.decode_tensor(s.name, given[s.name], model, limit)
                for s in model.inputs
            }
            names = tfserving._output_filter(list(request.output_filter) or None, model)
            outputs = await self.plane.infer(model, inputs, admission=place)
        except errors.ServiceError as exc:
            self._count_invalid(model, exc)
            raise
        finally:
            place.release()
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = int(model.version)
        response.model_spec.signature_name = tfserving_models.SIGNATURE
        for name in names:
            codec.encode_tensor(response.outputs[name], outputs[name])
        return response

    def _count_invalid(self, model: Any, error: Exception) -> None:
        """A request refused before the batcher took it counts as a failure (OTHER) of
        its model version, as REST and V2 count their invalid requests."""
        context = current_request.get()
        refused = status_of(error) in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        )
        if refused and context is not None and not context.accounted:
            self.plane.count_failure(model.name, model.version, "OTHER")

    @rpc("api")
    async def GetModelMetadata(self, request: Any, context: Any) -> Any:  # noqa: N802
        fields = list(request.metadata_field)
        if not fields:
            raise errors.InvalidInput(
                "GetModelMetadataRequest must specify at least one metadata_field: "
                f"'{SIGNATURE_DEF_FIELD}'"
            )
        unknown = [f for f in fields if f != SIGNATURE_DEF_FIELD]
        if unknown:
            raise errors.InvalidInput(
                f"Metadata field {unknown[0]} is not supported; expected '{SIGNATURE_DEF_FIELD}'"
            )
        model = self.model_of(request.model_spec)
        return codec.model_metadata(tfserving_models.model_metadata(model))

    @rpc("api")
    async def Classify(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise unsupported("Classify", request.model_spec)

    @rpc("api")
    async def Regress(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise unsupported("Regress", request.model_spec)

    @rpc("api")
    async def MultiInference(self, request: Any, context: Any) -> Any:  # noqa: N802
        names = sorted({task.model_spec.name for task in request.tasks}) or ["?"]
        raise errors.NotSupported(
            f"MultiInference is not supported for model '{names[0]}': its tasks classify "
            "and regress, which need a tf.Example parsing signature, which ONNX models "
            "do not have; use Predict"
        )


class ModelServicer(_TFServing, model_service_pb2_grpc.ModelServiceServicer):
    service_name = MODEL_SERVICE.full_name

    @rpc("api")
    async def GetModelStatus(self, request: Any, context: Any) -> Any:  # noqa: N802
        spec = request.model_spec
        version = version_of(spec)
        labelled = bool(spec.version_label)
        document = tfserving_models.model_status(
            self.plane.repository, spec.name, version, labelled
        )
        return codec.model_status(document)

    @rpc("admin")
    async def HandleReloadConfigRequest(self, request: Any, context: Any) -> Any:  # noqa: N802
        raise errors.NotSupported(
            "HandleReloadConfigRequest is not supported: this server serves the models of "
            "its repository directory; load and unload them with the repository API "
            "(RepositoryModelLoad / RepositoryModelUnload, or POST "
            "/v2/repository/models/<name>/load)"
        )


def add_to_server(app: Any, policy: AccessPolicy, server: Any) -> tuple[str, ...]:
    """Register both services on ``server``; their full names, for reflection."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(app, policy), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(app, policy), server)
    return SERVICE_NAMES
