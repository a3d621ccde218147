"""Fixtures of the export tests."""

from __future__ import annotations

import pytest
from onnx_checks import OPSETS


@pytest.fixture(params=OPSETS, ids=lambda o: f"opset{o}")
def opset(request):
    return request.param
