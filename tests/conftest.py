"""Shared fixtures for the layerserve test suite."""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
# Servers started by tests listen for gRPC only where a test asks for a port: the default
# 8081 would be shared by every test server (and test run) on the machine.
os.environ.setdefault("LAYERSERVE_GRPC_PORT", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from layerserve import backend as K  # noqa: E402

# The autouse fixture below only restores global state between tests; it is safe to
# share across the examples of a hypothesis test.
settings.register_profile(
    "layerserve",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
settings.load_profile("layerserve")


@pytest.fixture(autouse=True)
def _restore_image_data_format():
    """Every test starts and ends with the default channels_last image data format."""
    K.set_image_data_format("channels_last")
    yield
    K.set_image_data_format("channels_last")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def keras_oracle(request: pytest.FixtureRequest):
    """Files real Keras (3 and tf_keras) wrote for every collected case module."""
    from keras_oracle import KerasOracle, collected_case_modules, default_cache_root

    return KerasOracle(default_cache_root(), collected_case_modules(request.session.items))


@pytest.fixture(params=(13, "newest"), ids=lambda o: f"opset{o}")
def opset(request: pytest.FixtureRequest) -> int:
    """The lowest opset layerserve writes and the newest the installed onnxruntime runs."""
    from onnx_checks import OPSETS

    return OPSETS[0] if request.param == 13 else OPSETS[-1]
