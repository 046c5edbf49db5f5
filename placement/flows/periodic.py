"""The background thread the reconciler and the in-service drift audit run in: a round
now, then one every interval, until stopped. A failed round is logged (a store or
upstream failure in one line, anything else with its traceback) and the next one runs:
a background job never dies of one bad round."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from placement.errors import UpstreamError
from placement.store import StoreError

log = logging.getLogger(__name__)


class Periodic:
    """Runs `round_` every `interval` seconds in a daemon thread named `name`."""

    def __init__(
        self,
        name: str,
        round_: Callable[[], object],
        expected: tuple[type[Exception], ...] = (StoreError, UpstreamError),
    ) -> None:
        self._name = name
        self._round = round_
        self._expected = expected
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called: a long round checks it to end early."""
        return self._stop.is_set()

    def start(self, interval: float) -> None:
        """Run a round now, then every `interval` seconds."""
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round under way (which may end early: `stopping`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception as exc:
                if self._stop.is_set():
                    return  # a round cut short by stop()
                if isinstance(exc, self._expected):
                    log.warning("%s round failed: %s", self._name, exc)
                else:
                    log.exception("%s round failed", self._name)
            self._stop.wait(interval)
