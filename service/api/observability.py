"""Prometheus metrics and the V2 statistics extension."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["observability"])
