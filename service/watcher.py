"""Polling the model repository: every ``repository_poll_seconds`` each worker converges
to what the repository on disk holds, like Triton's poll mode and TensorFlow Serving's
file-system polling. Versions published from outside appear, removed ones go, edited
``config.json`` files apply; versions whose files changed within the last
``SETTLE_SECONDS`` wait for a later poll, so that a copy still in progress is not loaded
(publish by renaming a finished folder into place, and nothing waits: a rename changes
neither the folder's contents nor its files). A sibling worker that changed a model
through the API asks for that model at once (``sibling_changed``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from layerserve.service.model_admin import ModelAdmin
from layerserve.service.repository_scan import SETTLE_SECONDS

log = logging.getLogger("layerserve.service")


class RepositoryWatcher:
    def __init__(self, admin: ModelAdmin, poll_seconds: float) -> None:
        self.admin = admin
        self.poll_seconds = poll_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.poll_seconds > 0 and self._task is None:
            self._task = asyncio.create_task(self._poll(), name="repository-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def converge_all(self, settle_seconds: float = SETTLE_SECONDS) -> None:
        """Converge every model on disk or served, one after the other."""
        names = await asyncio.to_thread(self.admin.plane.repository.names)
        for name in names:
            await self.admin.converge(name, settle_seconds)

    async def sibling_changed(self, change: dict[str, Any]) -> None:
        """A sibling worker changed model ``change["name"]`` through the API: converge it
        now; the versions it published (``trusted``) need no settling, and ``force``
        repeats an explicit load."""
        await self.admin.converge(
            change["name"],
            float(change.get("settle_seconds", SETTLE_SECONDS)),
            force=bool(change.get("force")),
            trusted=frozenset(change.get("trusted", ())),
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.converge_all()
            except Exception:  # a poll must never stop the polling
                log.exception("reading the model repository failed; retrying next poll")
