"""The channel between worker processes (``service/cluster.py``), with real Unix
sockets: a worker asks its siblings and gets every answer whole, however large; an
unknown operation, a failing handler or a sibling that is not listening leaves that
sibling out instead of failing the request that asked."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from layerserve.service.cluster import Cluster


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def runtime_dir():
    with tempfile.TemporaryDirectory(prefix="ls-", dir="/tmp") as path:  # short: sun_path
        yield Path(path)


async def siblings(runtime_dir: Path, count: int, answer) -> list[Cluster]:
    workers = []
    for index in range(1, count + 1):
        worker = Cluster(index=index, workers=count + 1, runtime_dir=runtime_dir)

        async def handler(argument, index=index):
            return await answer(index, argument)

        worker.on("snapshot", handler)
        await worker.start()
        workers.append(worker)
    return workers


@pytest.mark.parametrize("size", [10, 300_000, 3_000_000])
def test_every_sibling_answers_whole_however_large(runtime_dir, size):
    async def scenario():
        async def answer(index, argument):
            return {"index": index, "argument": argument, "padding": "x" * size}

        workers = await siblings(runtime_dir, 2, answer)
        asker = Cluster(index=0, workers=3, runtime_dir=runtime_dir)
        try:
            return await asker.ask_siblings("snapshot", timeout=10, argument={"a": [1, 2]})
        finally:
            for worker in workers:
                await worker.close()

    answers = run(scenario())
    assert sorted(a["index"] for a in answers) == [1, 2]
    assert all(a["argument"] == {"a": [1, 2]} and len(a["padding"]) == size for a in answers)


def test_missing_failing_and_unknown_siblings_are_left_out(runtime_dir, caplog):
    async def scenario():
        async def answer(index, argument):
            if index == 2:
                raise RuntimeError("broken handler")
            return index

        workers = await siblings(runtime_dir, 2, answer)  # workers 1 and 2; 3 never starts
        asker = Cluster(index=0, workers=4, runtime_dir=runtime_dir)
        try:
            known = await asker.ask_siblings("snapshot", timeout=5)
            unknown = await asker.ask_siblings("no-such-operation", timeout=5)
            return known, unknown
        finally:
            for worker in workers:
                await worker.close()

    known, unknown = run(scenario())
    assert known == [1]
    assert unknown == []
    assert "could not snapshot: RuntimeError: broken handler" in caplog.text
    assert not list(runtime_dir.iterdir())  # closing removes each worker's socket
