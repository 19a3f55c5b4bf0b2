"""Handing committed writes' outcomes to their waiters: futures of threads, and futures of
event loops, each loop woken once per group (one `call_soon_threadsafe`, not one per
write). A waiter that gave up (cancelled, or timed out) does not undo the commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import Any

from sqlalchemy.engine import Connection

# (operation, future, its loop or None, deadline on the monotonic clock)
Item = tuple[Callable[[Connection], Any], Any, Any, float]


def hand_over(outcomes: list[tuple[Item, Any, BaseException | None]]) -> None:
    """Resolve the futures of committed operations; each event loop is woken once."""
    by_loop: dict[Any, list[tuple[Any, Any, BaseException | None]]] = {}
    for (_, fut, loop, _deadline), result, exc in outcomes:
        if loop is None:
            _resolve(fut, result, exc)
        else:
            by_loop.setdefault(loop, []).append((fut, result, exc))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for fut, result, exc in items:
        if not fut.done():  # a waiter that gave up does not undo the commit
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)


def _resolve(fut: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Hand the outcome over; a waiter that gave up (cancelled) does not undo the commit."""
    if fut.cancelled():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except InvalidStateError:
        pass
