"""Where the dynamic batcher runs a batch: on the event loop when the model's last run was
within ``LOOP_RUN_BUDGET_S`` (no thread handoff), on an executor thread otherwise, and
never so that the loop is held by a long run. Real onnxruntime sessions; the outputs are
checked against the NumPy references."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from live_server import write_model
from slow_model import FEATURES, slow_reference, write_slow_model

from layerserve import examples
from layerserve.service import batcher as batcher_module
from layerserve.service.batcher import LOOP_RUN_BUDGET_S, DynamicBatcher
from layerserve.service.errors import InferenceFailed
from layerserve.service.model_config import ModelConfig
from layerserve.service.runtime import LoadedModel
from layerserve.service.settings import Settings


@dataclass
class RecordingModel(LoadedModel):
    """A loaded model that notes the thread each of its runs took place on."""

    threads: list[threading.Thread] = field(default_factory=list)
    spans: list[tuple[float, float]] = field(default_factory=list)

    def run(self, feeds):  # noqa: ANN001, ANN201 - LoadedModel.run's signature
        self.threads.append(threading.current_thread())
        start = time.monotonic()
        outputs = super().run(feeds)
        self.spans.append((start, time.monotonic()))
        return outputs


def load(path: Path, name: str, **config) -> RecordingModel:
    resolved = ModelConfig(**config).resolved(Settings(model_repository=path.parent.parent))
    model = LoadedModel.load(name, "1", path, resolved)
    return RecordingModel(**{f: getattr(model, f) for f in LoadedModel.__dataclass_fields__})


def test_runs_within_the_budget_take_place_on_the_event_loop(tmp_path, monkeypatch):
    """With a budget every run fits, all runs but the first (timed on a thread) take place
    on the loop's thread; with a budget none fits, they go back to threads."""
    model = load(write_model(tmp_path, "mlp", examples.mlp()), "mlp", instances=1)
    xs = [np.random.default_rng(i).random((2, 784), dtype=np.float32) for i in range(12)]

    async def serve() -> list[dict[str, np.ndarray]]:
        outputs = []
        with ThreadPoolExecutor(2) as executor:
            batcher = DynamicBatcher(model, executor)
            for i, x in enumerate(xs):
                if i == 6:
                    monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 0.0)
                outputs.append(await batcher.submit({"hidden_1_input": x}, 2))
            await batcher.close()
        return outputs

    monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 10.0)
    outputs = asyncio.run(serve())
    main = threading.main_thread()
    assert model.threads[0] is not main
    assert model.threads[1:6] == [main] * 5
    assert main not in model.threads[6:]
    reference = examples.mlp()
    for x, output in zip(xs, outputs, strict=True):
        np.testing.assert_allclose(
            next(iter(output.values())), reference.predict(x), rtol=1e-5, atol=1e-6
        )


def test_long_runs_stay_on_threads_and_the_loop_goes_on(tmp_path):
    """Each run takes about 0.25 s on a thread; the loop keeps turning meanwhile, so a
    ticker on it wakes many times inside every run (none if a run held the loop). Counting
    wake-ups, not the longest gap, keeps the check apart from the host pausing the whole
    machine, which stalls the loop and the run alike."""
    write_slow_model(tmp_path, "slow", {"max_batch_size": 0, "instances": 1})
    model = load(tmp_path / "slow" / "1" / "model.onnx", "slow", max_batch_size=0, instances=1)
    xs = [np.random.default_rng(i).random((2048, FEATURES), dtype=np.float32) for i in range(3)]

    async def serve() -> tuple[list[dict[str, np.ndarray]], list[float]]:
        ticks: list[float] = []
        done = False

        async def ticker() -> None:
            while not done:
                await asyncio.sleep(0.001)
                ticks.append(time.monotonic())

        tick = asyncio.create_task(ticker())
        with ThreadPoolExecutor(2) as executor:
            batcher = DynamicBatcher(model, executor)
            outputs = [await batcher.submit({"x": x}, len(x)) for x in xs]
            await batcher.close()
        done = True
        await tick
        return outputs, ticks

    outputs, ticks = asyncio.run(serve())
    assert all(thread is not threading.main_thread() for thread in model.threads)
    assert len(model.spans) == len(xs)
    for start, end in model.spans:
        inside = sum(start < t < end for t in ticks)
        assert inside >= 20, (end - start, inside)
    for x, output in zip(xs, outputs, strict=True):
        np.testing.assert_allclose(
            next(iter(output.values())), slow_reference(x), rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("delay_us", [1])
def test_a_queue_delay_keeps_runs_on_threads(tmp_path, delay_us):
    """Waiting for more requests to merge happens on a thread: with max_queue_delay_us the
    loop never runs a batch, however short."""
    path = write_model(tmp_path, "mlp", examples.mlp())
    model = load(path, "mlp", instances=1, max_queue_delay_us=delay_us)
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)

    async def serve() -> None:
        with ThreadPoolExecutor(2) as executor:
            batcher = DynamicBatcher(model, executor)
            for _ in range(4):
                await batcher.submit({"hidden_1_input": x}, 1)
            await batcher.close()

    asyncio.run(serve())
    assert len(model.threads) == 4
    assert threading.main_thread() not in model.threads


def test_the_expected_run_scales_with_the_input_values(tmp_path):
    """The next run is expected to take the last one's time scaled by the values of its
    inputs: more rows, or longer rows (a longer sequence), both count."""
    model = load(write_model(tmp_path, "mlp", examples.mlp()), "mlp", instances=1)

    async def expectations() -> list[bool]:
        with ThreadPoolExecutor(1) as executor:
            batcher = DynamicBatcher(model, executor)
            batcher._last_run = (LOOP_RUN_BUDGET_S / 4, 2 * 784)  # 2 rows in a quarter
            return [batcher._runs_on_loop(values) for values in (784, 8 * 784, 9 * 784)]

    assert asyncio.run(expectations()) == [True, True, False]


def test_a_run_over_the_budget_keeps_the_next_runs_on_threads_a_while(tmp_path, monkeypatch):
    """A model whose run on the loop took ten times the budget (its time depends on the
    data, say) runs on threads for LOOP_RUN_COOLDOWN_S, then on the loop again."""
    model = load(write_model(tmp_path, "mlp", examples.mlp()), "mlp", instances=1)
    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    main = threading.main_thread()

    async def serve() -> None:
        with ThreadPoolExecutor(2) as executor:
            batcher = DynamicBatcher(model, executor)
            for _ in range(2):  # timed on a thread, then on the loop
                await batcher.submit({"hidden_1_input": x}, 1)
            assert model.threads[-1] is main
            batcher._last_run = (0.0, 1)  # expected to fit, but takes ten times the budget
            monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 1e-10)
            await batcher.submit({"hidden_1_input": x}, 1)
            assert model.threads[-1] is main
            monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 10.0)
            for _ in range(3):
                await batcher.submit({"hidden_1_input": x}, 1)
                assert model.threads[-1] is not main  # cooling down
            batcher._loop_runs_from = 0.0  # the cooldown is over
            await batcher.submit({"hidden_1_input": x}, 1)
            assert model.threads[-1] is main
            await batcher.close()

    monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 10.0)
    asyncio.run(serve())


def test_a_failure_on_the_loop_fails_its_requests_and_the_draining_goes_on(tmp_path, monkeypatch):
    """Something raises while a batch run on the loop is delivered (here the statistics
    observer, once): its request fails with a 500-kind error instead of waiting for ever,
    the next requests are served, and the batcher still closes."""
    model = load(write_model(tmp_path, "mlp", examples.mlp()), "mlp", instances=1)
    xs = [np.random.default_rng(i).random((1, 784), dtype=np.float32) for i in range(4)]
    failures = []

    def observer(event: str, data: dict) -> None:
        if event == "executed" and len(model.threads) == 2 and not failures:
            failures.append(event)
            raise RuntimeError("the observer failed")

    async def serve() -> list:
        with ThreadPoolExecutor(1) as executor:
            batcher = DynamicBatcher(model, executor, observer)
            outcomes = []
            for x in xs:  # the first timed on a thread, the others on the loop
                try:
                    outcomes.append(
                        await asyncio.wait_for(batcher.submit({"hidden_1_input": x}, 1), 10)
                    )
                except InferenceFailed as error:
                    outcomes.append(error)
            await asyncio.wait_for(batcher.close(), 10)
        return outcomes

    monkeypatch.setattr(batcher_module, "LOOP_RUN_BUDGET_S", 10.0)
    outcomes = asyncio.run(serve())
    assert model.threads[1:] == [threading.main_thread()] * 3
    assert isinstance(outcomes[1], InferenceFailed)
    assert "'mlp' failed to run" in str(outcomes[1])
    reference = examples.mlp()
    for i in (0, 2, 3):
        np.testing.assert_allclose(
            next(iter(outcomes[i].values())), reference.predict(xs[i]), rtol=1e-5, atol=1e-6
        )
