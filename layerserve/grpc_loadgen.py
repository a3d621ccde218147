"""The load generator's gRPC side (``inference.GRPCInferenceService``): a ModelInfer
request serialised once and sent as it is, calls kept in flight on grpc.aio channels with
the responses kept as bytes, so that the generator does no protobuf work per call; the
counting is ``layerserve.loadgen.drive``'s (failed calls never count as throughput). Used by
``benchmarks/service_load.py``, whose generator processes run ``generator_process``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf.json_format import MessageToDict

from layerserve.loadgen import (
    ERROR_SNIPPET_BYTES,
    TEXT_TYPES,
    V2_TO_NUMPY,
    _binary,
    _split_bytes,
    level_result,
    new_level_state,
    run_level,
    v2_datatype,
)
from layerserve.service.grpc.generated import grpc_service_pb2 as pb

GRPC_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
GRPC_MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"
# A ModelStreamInferResponse that carries an error starts with its error_message (field 1,
# a string: tag 0x0a); an answer starts with its infer_response (field 2: tag 0x12).
STREAM_ERROR_TAG = b"\x0a"


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
    over ``connections`` channels (HTTP/2 connections: several streams on each). The
    request is sent pre-serialised and the response kept as bytes (no protobuf work per
    call in this process); a call counts as successful when its status is OK. With
    ``streaming``, each of the ``concurrency`` is a ModelStreamInfer stream with one request
    in flight, which counts as successful when its answer carries no error. Returns what
    ``drive`` returns, ``statuses`` counted by gRPC status name."""
    options = [
        # Each channel its own connection (channels to one target share one otherwise).
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 2**31 - 1),
        ("grpc.max_send_message_length", 2**31 - 1),
    ]
    channels = [
        grpc.aio.insecure_channel(target, options=options)
        for _ in range(max(1, min(connections, concurrency)))
    ]
    if streaming:
        calls = [channel.stream_stream(GRPC_MODEL_STREAM_INFER) for channel in channels]
    else:
        calls = [channel.unary_unary(GRPC_MODEL_INFER) for channel in channels]
    state = new_level_state()
    try:
        for channel in channels:
            await asyncio.wait_for(channel.channel_ready(), timeout=30)
        begin = time.perf_counter()
        start, stop = begin + warmup, begin + warmup + duration

        def note_error(code: str, details: bytes) -> None:
            if state["first_error"] is None:
                state["first_error"] = (code, details[:ERROR_SNIPPET_BYTES])

        async def unary(call: Any) -> str:
            try:
                await call(request, metadata=metadata or None, timeout=60)
            except grpc.aio.AioRpcError as error:
                note_error(error.code().name, (error.details() or "").encode())
                return error.code().name
            return "OK"

        async def one_on(stream_call: Any) -> str:
            try:
                await stream_call.write(request)
                answer = await stream_call.read()
            except grpc.aio.AioRpcError as error:
                note_error(error.code().name, (error.details() or "").encode())
                return error.code().name
            if answer is grpc.aio.EOF:
                note_error("EOF", b"the server ended the stream")
                return "EOF"
            if answer[:1] == STREAM_ERROR_TAG:
                note_error("STREAM_ERROR", answer)
                return "STREAM_ERROR"
            return "OK"

        def open_stream(call: Any) -> Any:
            # One deadline for the whole stream, not a timer for each read: a server that
            # stops answering ends it with DEADLINE_EXCEEDED half a minute after the level,
            # well within the minute the level's end waits for its streams.
            timeout = max(1.0, stop + 30 - time.perf_counter())
            return call(metadata=metadata or None, timeout=timeout)

        async def stream(call: Any) -> None:
            stream_call = open_stream(call) if streaming else None
            first = True  # see loadgen: the first wave's latencies are the warm-up's
            while True:
                sent = time.perf_counter()
                state["sent"] += 1
                if not streaming:
                    code = await unary(call)
                else:
                    code = await one_on(stream_call)
                    if code not in ("OK", "STREAM_ERROR"):  # the stream is over: a new one
                        stream_call = open_stream(call)
                now = time.perf_counter()
                state["statuses"][code] += 1
                if start <= now <= stop:
                    if code == "OK":
                        state["succeeded"] += 1
                        if not first:
                            state["latencies"].append(now - sent)
                    else:
                        state["errors"] += 1
                elif code != "OK":
                    state["errors_outside"] += 1
                first = False
                if now >= stop:
                    if stream_call is not None:
                        await stream_call.done_writing()
                    return

        tasks = [asyncio.ensure_future(stream(calls[i % len(calls)])) for i in range(concurrency)]
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu_start = time.process_time()
        await asyncio.sleep(max(0.0, stop - time.perf_counter()))
        cpu_used = time.process_time() - cpu_start
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
    finally:
        for channel in channels:
            await channel.close()
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
    """``drive_grpc`` on asyncio's own event loop (gRPC's asyncio support is written for
    it), in this thread."""
    return asyncio.run(
        drive_grpc(target, request, concurrency, connections, warmup, duration, metadata, streaming)
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
