"""What the user sees while a command works: the one way every command shows its stages.

On a terminal a stage is a spinner line that the next stage replaces; elsewhere (CI logs, a
pipe, `make demo` under a non-interactive shell) each stage is printed once as a plain line,
so logs stay readable and nothing is redrawn. Anything longer than ~2 s gets a stage.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.status import Status


class Stages:
    """`with Stages(err) as stages: stages.begin("loading the embedder"); ...`.

    `begin` ends the previous stage and starts the next; leaving the block ends the last one.
    Non-interactive output gets `text ...` per stage and, for stages over two seconds, the
    time it took when the next one starts, so a slow step is visible in a log.
    """

    def __init__(self, console: Console, *, prefix: str = "") -> None:
        self.console = console
        self.prefix = prefix
        self._status: Status | None = None
        self._current: str | None = None
        self._started = 0.0

    @property
    def interactive(self) -> bool:
        return self.console.is_terminal

    def begin(self, text: str) -> None:
        self._finish_current()
        self._current, self._started = text, time.monotonic()
        if self.interactive:
            if self._status is None:
                self._status = self.console.status(self.prefix + text, spinner="dots")
                self._status.start()
            else:
                self._status.update(self.prefix + text)
        else:
            self.console.print(f"{self.prefix}{text} ...", markup=False, highlight=False)

    def detail(self, text: str) -> None:
        """Show what the current stage is doing now (pip's last line) on the spinner line; nothing
        off a terminal, where each stage stays one line."""
        if self._status is not None and self._current is not None:
            self._status.update(f"{self.prefix}{self._current} · {text}")

    def _finish_current(self) -> None:
        if self._current is None or self.interactive:
            return
        seconds = time.monotonic() - self._started
        if seconds >= 2:
            self.console.print(f"{self.prefix}{self._current}: done in {seconds:.0f} s", markup=False,
                               highlight=False)
        self._current = None

    def end(self) -> None:
        """Stop the spinner (before printing a result that should stay on screen)."""
        if self._status is not None:
            self._status.stop()
            self._status = None
        self._finish_current()
        self._current = None

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.end()
