"""Running the service on uvicorn, with a graceful SIGTERM drain.

On SIGTERM (or SIGINT) the server reports not ready at once, keeps serving for
``drain_seconds`` (load balancers need a moment to stop sending), then stops accepting
connections, lets in-flight requests finish within ``exit_timeout_seconds``, finishes the
queued work in the lifespan shutdown, and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import uvicorn

from layerserve.service.api.app import create_app
from layerserve.service.settings import Settings

log = logging.getLogger("layerserve.service")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, settings: Settings) -> None:
        super().__init__(config)
        self.settings = settings
        self._draining = False

    def handle_exit(self, sig: int, frame: Any) -> None:
        """First signal: not ready, then stop after the drain. A second SIGINT forces the
        exit. Unlike plain uvicorn, the signal is not raised again after shutdown: a
        drained server exits 0."""
        if self._draining:
            if sig == signal.SIGINT and self.should_exit:
                self.force_exit = True
            self.should_exit = True
            return
        self._draining = True
        self.config.app.state.dataplane.draining = True
        log.info("signal %s: not ready now, draining for %.1f s", sig, self.settings.drain_seconds)
        if self.settings.drain_seconds <= 0:
            self.should_exit = True
            return
        timer = threading.Timer(self.settings.drain_seconds, self._stop_accepting)
        timer.daemon = True
        timer.start()

    def _stop_accepting(self) -> None:
        self.should_exit = True


def build_server(settings: Settings) -> DrainingServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.exit_timeout_seconds) or None,
        loop="auto",
        http="auto",
        lifespan="on",
    )
    return DrainingServer(config, settings)


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    build_server(settings).run()
