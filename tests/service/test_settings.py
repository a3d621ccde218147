"""Settings from LAYERSERVE_* variables, and thread counts that respect CPU quotas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerserve.service.settings import Settings, available_cpus, cgroup_cpu_quota


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
    ids=["v2-quota", "v2-unlimited", "v1-quota", "v1-unlimited", "no-cgroup"],
)
def test_cgroup_cpu_quota(tmp_path: Path, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == expected


def test_available_cpus_is_capped_by_the_quota_and_the_affinity_mask(tmp_path: Path):
    allowed = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core
    assert available_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == allowed


def test_every_option_reads_layerserve_environment_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("LAYERSERVE_MODEL_REPOSITORY", str(tmp_path))
    monkeypatch.setenv("LAYERSERVE_PORT", "9001")
    monkeypatch.setenv("LAYERSERVE_PROVIDERS", '["cuda"]')
    monkeypatch.setenv("LAYERSERVE_MAX_QUEUE_DELAY_US", "250")
    monkeypatch.setenv("LAYERSERVE_INTRA_OP_THREADS", "3")
    settings = Settings()
    assert (settings.model_repository, settings.port, settings.providers) == (
        tmp_path,
        9001,
        ["cuda"],
    )
    assert settings.max_queue_delay_us == 250
    assert settings.threads_per_run(instances=2) == 3


def test_threads_per_run_splits_the_available_cores_between_instances():
    cores = available_cpus()
    assert Settings().threads_per_run(instances=1) == cores
    assert Settings().threads_per_run(instances=cores * 2) == 1
