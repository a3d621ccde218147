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


@pytest.mark.parametrize(
    ("text", "token"),
    [("s3cret", "s3cret"), ("s3cret\n", "s3cret"), ("s3cret\r\n", "s3cret")],
    ids=["bare", "newline", "crlf"],
)
def test_a_token_file_gives_the_token_without_its_trailing_newline(tmp_path, text, token):
    path = tmp_path / "admin_token"
    path.write_text(text, newline="")
    settings = Settings(admin_token_file=path, api_token_file=path)
    assert settings.admin_token.get_secret_value() == token
    assert settings.api_token.get_secret_value() == token


def test_a_token_file_and_a_token_together_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "admin_token"
    path.write_text("from-file")
    monkeypatch.setenv("LAYERSERVE_ADMIN_TOKEN", "from-env")
    with pytest.raises(ValueError, match="LAYERSERVE_ADMIN_TOKEN or LAYERSERVE_ADMIN_TOKEN_FILE"):
        Settings(admin_token_file=path)


def test_a_missing_token_file_is_refused_naming_it(tmp_path):
    with pytest.raises(ValueError, match="cannot read admin_token_file .*absent"):
        Settings(admin_token_file=tmp_path / "absent")
