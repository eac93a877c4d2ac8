"""Alerting: the rule engine on the consumer's after-commit hook, and its notifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..settings import Settings
    from .engine import AlertEngine
    from .notify import Notifier

__all__ = ["AlertEngine", "Alerting", "Notifier", "attach"]


@dataclass
class Alerting:
    engine: AlertEngine
    notifier: Notifier

    def stop(self) -> None:
        self.engine.stop()
        self.notifier.stop()


def attach(consumer, settings: Settings, dsn: str) -> Alerting:
    """Start the engine and the notifier, and hook the engine onto ``consumer``."""
    from .engine import AlertEngine
    from .notify import Notifier

    engine = AlertEngine(settings, dsn).start()
    consumer.after_commit.append(engine.hook)
    return Alerting(engine, Notifier(settings, dsn).start())


def __getattr__(name: str) -> Any:
    # the engine pulls in numpy/scipy: imported when used, not when `swc` starts
    if name == "AlertEngine":
        from .engine import AlertEngine

        return AlertEngine
    if name == "Notifier":
        from .notify import Notifier

        return Notifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
