"""Logging with the webhook delivery id on every record.

The id lives in a context variable: the webhook route sets it while it answers,
and a queue worker sets it while it handles that delivery's job, so every log
line written on the way (in any module, through `logging.getLogger(__name__)`)
carries `delivery_id` without passing it around.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from typing import Any

NO_DELIVERY = "-"
delivery_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "hubbot_delivery_id", default=NO_DELIVERY
)

FORMAT = "%(asctime)s %(levelname)s %(name)s [delivery=%(delivery_id)s] %(message)s"

_installed = False


def install_record_factory() -> None:
    """Make every LogRecord carry `delivery_id` (idempotent; wraps the current factory)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if not hasattr(record, "delivery_id"):
            record.delivery_id = delivery_id_var.get()
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


@contextlib.contextmanager
def delivery_context(delivery_id: str) -> Iterator[None]:
    """Tag log records written inside the block with `delivery_id`."""
    token = delivery_id_var.set(delivery_id)
    try:
        yield
    finally:
        delivery_id_var.reset(token)


def configure(level: str = "INFO") -> None:
    """Set up logging for the `hubbot serve` process: one line per record on stderr."""
    install_record_factory()
    logging.basicConfig(level=level.upper(), format=FORMAT)
    # aiohttp's access log would repeat every webhook at INFO; the metrics count them.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
