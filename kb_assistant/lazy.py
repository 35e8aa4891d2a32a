"""The one lazy-loading helper: a value built on first use, exactly once, safe across threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Lazy(Generic[T]):
    """``Lazy(factory).get()`` calls ``factory`` once (the first caller builds, concurrent callers wait)."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._value: T | None = None
        self._built = False
        self._lock = threading.Lock()

    def get(self) -> T:
        if not self._built:
            with self._lock:
                if not self._built:
                    self._value = self._factory()
                    self._built = True
        return self._value  # type: ignore[return-value]

    @property
    def loaded(self) -> bool:
        return self._built

    def peek(self) -> T | None:
        """The value if it was built, else None (never builds)."""
        return self._value if self._built else None

    def reset(self) -> None:
        """Forget the value: the next :meth:`get` builds it again."""
        with self._lock:
            self._value, self._built = None, False
