"""Checks of an uploaded ``.onnx`` file: self-contained, operators onnxruntime runs,
valid by ONNX's checker, and loaded by onnxruntime on CPU as the server loads it (session,
warm-up run, row probe). They run in the converter's child process, within its memory and
time limits: a graph that needs more memory to run than the limit allows (a 160-byte file
whose ConstantOfShape makes 1.6 GB) is refused there, before any worker loads it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx

from layerserve.service.errors import ModelRejected

RUNTIME_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")
_STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
RESAVE_HINT = (
    "load it with onnx.load(path) beside its data files, then re-save it with all "
    "tensors inside the file: onnx.save_model(model, 'model.onnx', "
    "save_as_external_data=False)"
)


def check_onnx_file(path: Path, label: str) -> onnx.ModelProto:
    """The parsed model, once it passed every check; ``label`` names it in messages."""
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: the bytes are not ONNX
        raise ModelRejected(
            f"Expected {label} to be an ONNX model. Received: bytes that do not parse as "
            f"an ONNX ModelProto ({exc})."
        ) from exc
    check_self_contained(model, label)
    check_domains(model, label)
    check_with_onnx(model, path, label)
    del model  # not held beside the session and its warm-up run: read again once they pass
    check_loads_in_onnxruntime(path, label)
    return onnx.load(str(path), load_external_data=False)


def check_self_contained(model: onnx.ModelProto, label: str) -> None:
    for tensor in _tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
            where = {entry.key: entry.value for entry in tensor.external_data}.get("location")
            raise ModelRejected(
                f"Expected {label} to hold all its tensors inside the file. Received: tensor "
                f"{tensor.name!r} stored as external data in {where!r}. To upload it, "
                f"{RESAVE_HINT}."
            )


def check_domains(model: onnx.ModelProto, label: str) -> None:
    local_functions = {(function.domain, function.name) for function in model.functions}
    for node in _nodes(model):
        if node.domain in RUNTIME_DOMAINS or (node.domain, node.op_type) in local_functions:
            continue
        raise ModelRejected(
            f"Expected {label} to use operators onnxruntime runs: the domains "
            f"'' (ai.onnx), ai.onnx.ml and com.microsoft, or the model's own functions. "
            f"Received: operator {node.op_type!r} of domain {node.domain!r} "
            f"(node {node.name!r})."
        )


def check_with_onnx(model: onnx.ModelProto, path: Path, label: str) -> None:
    """ONNX's checker with strict shape inference; models that use operators outside
    ONNX's own domains, which shape inference cannot know, get the structural check."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
        return
    except Exception as exc:  # ValidationError, InferenceError, ...: all mean "invalid"
        failure = exc
    if any(node.domain not in _STANDARD_DOMAINS for node in _nodes(model)):
        try:
            onnx.checker.check_model(str(path))
            return
        except Exception as exc:  # as above
            failure = exc
    message = str(failure).replace(str(path), label)
    raise ModelRejected(
        f"Expected {label} to be a valid ONNX model. Received: one ONNX's checker refuses: "
        f"{message}"
    ) from failure


# onnxruntime's messages for an allocation that failed (RLIMIT_AS): a MemoryError, which
# the converter answers 413 naming the memory limit.
_ALLOCATION_FAILED = ("Failed to allocate memory", "bad_alloc")


def check_loads_in_onnxruntime(path: Path, label: str) -> None:
    from layerserve.service.model_config import ResolvedConfig
    from layerserve.service.runtime import LoadedModel
    from layerserve.service.settings import Settings

    defaults = Settings.model_fields
    config = ResolvedConfig(
        max_batch_size=defaults["max_batch_size"].default,
        max_queue_delay_us=0,
        max_queue_size=1,
        queue_timeout_ms=1,
        providers=["cpu"],
        allow_cpu_fallback=False,
        instances=1,
        intra_op_threads=1,
    )
    try:  # from the path: the file is read once more, not held in memory twice
        LoadedModel.load("upload", "1", path, config)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises many kinds
        message = str(exc).replace(str(path), label)
        if any(sign in message for sign in _ALLOCATION_FAILED):
            raise MemoryError(message) from exc
        raise ModelRejected(
            f"Expected {label} to be a model onnxruntime can load and run on CPU. Received: "
            f"one it refuses: {message}"
        ) from exc


def _graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """Every graph: the main one, training graphs, and subgraphs of If/Loop/Scan nodes
    (also inside the model's functions), without recursion."""
    pending = [model.graph]
    for info in model.training_info:
        pending += [info.initialization, info.algorithm]
    nodes = [node for function in model.functions for node in function.node]
    while pending or nodes:
        if pending:
            graph = pending.pop()
            yield graph
            nodes.extend(graph.node)
        else:
            for attribute in nodes.pop().attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def _nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for function in model.functions:
        yield from function.node
    for graph in _graphs(model):
        yield from graph.node


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for graph in _graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield from (sparse.values, sparse.indices)
    for node in _nodes(model):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                yield from (sparse.values, sparse.indices)
