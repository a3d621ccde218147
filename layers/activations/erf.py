"""The error function, for the exact GELU of ``layerserve.activations``."""

from __future__ import annotations

from typing import Any

import numpy as np

# W. J. Cody's rational Chebyshev approximations (netlib specfun CALERF), accurate to
# about 1e-16 in float64.
_ERF_A = (
    3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
    3.20937758913846947e03, 1.85777706184603153e-1,
)  # fmt: skip
_ERF_B = (
    2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
    2.84423683343917062e03,
)  # fmt: skip
_ERF_C = (
    5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
    2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
    2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8,
)  # fmt: skip
_ERF_D = (
    1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
    1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
    3.43936767414372164e03, 1.23033935480374942e03,
)  # fmt: skip
_ERF_P = (
    3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
    1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2,
)  # fmt: skip
_ERF_Q = (
    2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
    6.05183413124413191e-2, 2.33520497626869185e-3,
)  # fmt: skip
_INV_SQRT_PI = 5.6418958354775628695e-1


def _erf_small(x: np.ndarray) -> np.ndarray:
    ysq = x * x
    num = _ERF_A[4] * ysq
    den = ysq
    for a, b in zip(_ERF_A[:3], _ERF_B[:3], strict=True):
        num = (num + a) * ysq
        den = (den + b) * ysq
    return x * (num + _ERF_A[3]) / (den + _ERF_B[3])


def _erfc_scaled_mid(y: np.ndarray) -> np.ndarray:
    num = _ERF_C[8] * y
    den = y
    for c, d in zip(_ERF_C[:7], _ERF_D[:7], strict=True):
        num = (num + c) * y
        den = (den + d) * y
    return (num + _ERF_C[7]) / (den + _ERF_D[7])


def _erfc_scaled_large(y: np.ndarray) -> np.ndarray:
    ysq = 1.0 / (y * y)
    num = _ERF_P[5] * ysq
    den = ysq
    for p, q in zip(_ERF_P[:4], _ERF_Q[:4], strict=True):
        num = (num + p) * ysq
        den = (den + q) * ysq
    return (_INV_SQRT_PI - ysq * (num + _ERF_P[4]) / (den + _ERF_Q[4])) / y


def erf(x: Any) -> np.ndarray:
    """The error function, computed in float64 with Cody's approximations."""
    x = np.asarray(x, dtype=np.float64)
    y = np.abs(x)
    small = _erf_small(np.where(y <= 0.46875, x, 0.0))
    y_big = np.clip(np.where(y > 0.46875, y, 1.0), 0.0, 27.0)
    scaled = np.where(y_big <= 4.0, _erfc_scaled_mid(y_big), _erfc_scaled_large(y_big))
    y_trunc = np.trunc(y_big * 16.0) / 16.0
    erfc = np.exp(-y_trunc * y_trunc) * np.exp(-(y_big - y_trunc) * (y_big + y_trunc)) * scaled
    big = np.sign(x) * ((0.5 - erfc) + 0.5)
    return np.where(y <= 0.46875, small, np.where(np.isnan(x), x, big))
