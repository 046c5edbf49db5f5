"""Logging set-up, shared by the CLI and every server worker."""

from __future__ import annotations

import logging


def configure(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    # uvicorn's per-request access lines duplicate our own request logging.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
