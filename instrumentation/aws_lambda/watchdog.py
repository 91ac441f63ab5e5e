"""The timeout watchdog: act shortly before Lambda's deadline, from a thread, not SIGALRM.

Lambda kills a function at its deadline without warning, and a killed function's spans die
with it. One daemon thread waits for the armed deadline; if the invocation is still running
then, it calls back (mark the timeout, end open spans, flush). SIGALRM is left to the user.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from ..guard import guard


class Watchdog:
    """One reusable timer thread; arm() per invocation, disarm() when it ends."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._callback: Callable[[], None] | None = None
        self._generation = 0
        self._thread: threading.Thread | None = None

    def arm(
        self,
        deadline_monotonic: float,
        callback: Callable[[], None],
        tick: Callable[[], None] | None = None,
        every_s: float = 0.05,
    ) -> None:
        """Call ``callback`` at ``deadline_monotonic`` unless disarmed before; ``tick`` every
        ``every_s`` until then."""
        with self._cond:
            self._deadline = deadline_monotonic
            self._callback = callback
            self._tick = tick
            self._every_s = every_s
            self._generation += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hoptrace-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None
            self._callback = None
            self._tick = None
            self._generation += 1
            self._cond.notify_all()

    _tick: Callable[[], None] | None = None
    _every_s = 0.05

    def _run(self) -> None:
        while True:
            tick: Callable[[], None] | None = None
            with self._cond:
                while self._deadline is None:
                    self._cond.wait()
                remaining = self._deadline - time.monotonic()
                if remaining > 0:
                    generation = self._generation
                    self._cond.wait(min(remaining, self._every_s) if self._tick is not None else remaining)
                    if self._generation == generation and self._deadline is not None:
                        tick = self._tick  # still the same invocation: read its memory
                    callback = None
                else:
                    callback = self._callback
                    self._deadline = None
                    self._callback = None
                    self._tick = None
            if tick is not None:
                with guard("watchdog.tick"):
                    tick()
            if callback is not None:
                with guard("watchdog"):
                    callback()


watchdog = Watchdog()
