"""The load generator's gRPC side (``inference.GRPCInferenceService``): a ModelInfer
request serialised once and sent as it is, calls kept in flight on raw HTTP/2 connections
(``layerserve.h2_loadgen``) with the answers only framed, so that the generator does no
protobuf work per call and costs the machine about what the HTTP/1.1 generator does; the
counting is ``layerserve.loadgen.drive``'s (failed calls never count as throughput). Used by
``benchmarks/service_load.py``, whose generator processes run ``generator_process``."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.json_format import MessageToDict

from layerserve.h2_loadgen import GrpcConnection, request_header_blocks
from layerserve.loadgen import (
    TEXT_TYPES,
    V2_TO_NUMPY,
    _binary,
    _split_bytes,
    event_loop_factory,
    level_result,
    new_level_state,
    run_level,
    v2_datatype,
)
from layerserve.service.grpc.generated import grpc_service_pb2 as pb

GRPC_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


def grpc_infer_request(
    model: str, inputs: Mapping[str, np.ndarray], output_names: Sequence[str]
) -> bytes:
    """A serialised ``ModelInferRequest`` with the tensors in ``raw_input_contents`` (as
    ``tritonclient.grpc`` sends them), encoded once and sent as it is for every call."""
    request = pb.ModelInferRequest(model_name=model)
    for name, x in inputs.items():
        request.inputs.add(name=name, datatype=v2_datatype(x), shape=list(x.shape))
        request.raw_input_contents.append(_binary(x))
    for name in output_names:
        request.outputs.add(name=name)
    return request.SerializeToString()


def decode_grpc_response(raw: bytes) -> dict[str, np.ndarray]:
    """A serialised ``ModelInferResponse``'s outputs (raw or typed contents)."""
    response = pb.ModelInferResponse.FromString(raw)
    outputs = {}
    for i, tensor in enumerate(response.outputs):
        shape = list(tensor.shape)
        if response.raw_output_contents:
            chunk = response.raw_output_contents[i]
            if tensor.datatype in TEXT_TYPES:
                array = np.array(_split_bytes(chunk), dtype=object)
            else:
                array = np.frombuffer(chunk, dtype=np.dtype(V2_TO_NUMPY[tensor.datatype]))
        else:
            (values,) = MessageToDict(tensor.contents).values() or ([],)
            array = np.asarray(values, dtype=np.dtype(V2_TO_NUMPY[tensor.datatype]))
        outputs[tensor.name] = array.reshape(shape)
    return outputs


async def drive_grpc(
    target: str,
    request: bytes,
    concurrency: int,
    connections: int,
    warmup: float,
    duration: float,
    metadata: Sequence[tuple[str, str]] = (),
    streaming: bool = False,
) -> dict[str, Any]:
    """``drive`` for gRPC: ``concurrency`` ModelInfer calls always in flight, shared out
    over ``connections`` HTTP/2 connections (``layerserve.h2_loadgen``: several streams on
    each). The request is sent pre-serialised and the answer's message only framed (no
    protobuf work per call in this process); a call counts as successful when its status
    is OK. With ``streaming``, each of the ``concurrency`` is a ModelStreamInfer stream with
    one request in flight, which counts as successful when its answer carries no error.
    Returns what ``drive`` returns, ``statuses`` counted by gRPC status name."""
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    loop = asyncio.get_running_loop()
    state: dict[str, Any] = {**new_level_state(), "start": float("inf"), "stop": float("inf")}
    path = GRPC_MODEL_STREAM_INFER if streaming else GRPC_MODEL_INFER
    blocks = request_header_blocks(path, target, metadata)
    count = max(1, min(connections, concurrency))
    shares = [concurrency // count + (i < concurrency % count) for i in range(count)]
    opened: list[GrpcConnection] = []
    try:
        for share in shares:
            _, connection = await loop.create_connection(
                lambda share=share: GrpcConnection(state, blocks, request, share, streaming),
                host,
                int(port),
            )
            connection.transport.get_extra_info("socket").setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
            opened.append(connection)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in opened)), timeout=30)
        begin = time.perf_counter()
        state["start"], state["stop"] = begin + warmup, begin + warmup + duration
        for connection in opened:
            connection.start()
        await asyncio.sleep(max(0.0, state["start"] - time.perf_counter()))
        cpu_start = time.process_time()
        await asyncio.sleep(max(0.0, state["stop"] - time.perf_counter()))
        cpu_used = time.process_time() - cpu_start
        await asyncio.wait_for(asyncio.gather(*(c.done for c in opened)), timeout=60)
    finally:
        for connection in opened:
            connection.transport.close()
            for future in (connection.ready, connection.done):  # read: no "never retrieved"
                if future.done() and not future.cancelled():
                    future.exception()
    return level_result(state, cpu_used, duration)


def run_grpc_level(
    target: str,
    request: bytes,
    concurrency: int,
    connections: int,
    warmup: float,
    duration: float,
    metadata: Sequence[tuple[str, str]] = (),
    streaming: bool = False,
) -> dict[str, Any]:
    """``drive_grpc`` on an event loop of its own (uvloop's when installed), in this
    thread."""
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(
            drive_grpc(
                target, request, concurrency, connections, warmup, duration, metadata, streaming
            )
        )


def generator_process(conn: Any) -> None:
    """A load generator process's main loop: one command at a time over a pipe, answered
    with its result or its exception; ``None`` ends it. A tuple is
    ``layerserve.loadgen.run_level``'s arguments (HTTP), a dict ``run_grpc_level``'s."""
    while True:
        command = conn.recv()
        if command is None:
            return
        try:
            if isinstance(command, dict):
                conn.send(run_grpc_level(**command))
            else:
                conn.send(run_level(*command))
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            conn.send(exc)
