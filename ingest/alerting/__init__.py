"""Alerting: the rule engine on the consumer's after-commit hook, and its notifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..settings import Settings
    from .engine import AlertEngine
    from .notify import Notifier
    from .process import EngineProcess

__all__ = ["AlertEngine", "Alerting", "EngineProcess", "Notifier", "attach"]


@dataclass
class Alerting:
    engine: AlertEngine | EngineProcess
    notifier: Notifier

    def stop(self) -> None:
        self.engine.stop()
        self.notifier.stop()


def attach(consumer, settings: Settings, dsn: str, process: bool = True) -> Alerting:
    """Start the engine and the notifier, and hook the engine onto ``consumer``.

    The engine runs in a process of its own (``process``; see .process), or in a
    thread of this one."""
    from .engine import AlertEngine
    from .notify import Notifier
    from .process import EngineProcess

    engine = EngineProcess(settings, dsn) if process else AlertEngine(settings, dsn)
    engine.start()
    consumer.after_commit.append(engine.hook)
    return Alerting(engine, Notifier(settings, dsn).start())


def __getattr__(name: str) -> Any:
    # the engine pulls in numpy/scipy: imported when used, not when `swc` starts
    if name == "AlertEngine":
        from .engine import AlertEngine

        return AlertEngine
    if name == "EngineProcess":
        from .process import EngineProcess

        return EngineProcess
    if name == "Notifier":
        from .notify import Notifier

        return Notifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
