"""The fleet console: a live web view of the fleet, its federations and the registry (``tinyfleet console``).

``start_console(port, workdir=..., store_or_url=..., broker=...)`` serves it on a thread and returns a
:class:`~server.console.handle.ConsoleHandle` (``.url``, ``.observer`` for the round loop, ``.stop()``);
``server.console.cli.console`` is the command. Imported lazily: ``tinyfleet`` itself does not load FastAPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from server.console.handle import ConsoleHandle, start_console

__all__ = ["ConsoleHandle", "start_console"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from server.console import handle

        return getattr(handle, name)
    raise AttributeError(name)
