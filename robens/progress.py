"""One progress helper: a transient rich bar on a terminal, a line per stage otherwise.

Used by the trainer, the suite units, sweeps and recipes (one implementation instead of three
wrappers). ``Progress(enabled=False)`` is a no-op, so callers never branch; given an ``echo``
it writes one line per stage instead of a bar (logs, pipes, CI).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any


def rich_progress(*fields: str, eta: bool = True) -> Any:
    """A transient rich progress bar: description, bar, ``n/total``, the text columns ``fields``
    (``"loss {task.fields[loss]:.4f}"``) and the time remaining. Entered by the caller."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as _RichProgress

    columns: list[Any] = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    columns += [TextColumn(f) for f in fields]
    if eta:
        columns.append(TimeRemainingColumn())
    return _RichProgress(*columns, transient=True)


def _length(items: Iterable) -> int | None:
    return len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]


class Task:
    """One bar of a :class:`Progress`: ``advance(n=1, **fields)``, then ``close()``."""

    def __init__(self, progress: Progress, task_id: Any) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        p = self._progress._p
        if p is not None and self._id is not None:
            p.update(self._id, advance=n, **fields)

    def close(self) -> None:
        p = self._progress._p
        if p is not None and self._id is not None:
            p.remove_task(self._id)
            self._id = None


class Progress:
    """A context manager holding zero or more bars (no-op when ``enabled`` is false).

    ``fields`` are extra text columns (``"loss {task.fields[loss]:.4f}"``) whose values are
    given to :meth:`task` and :meth:`Task.advance`.
    """

    def __init__(
        self,
        enabled: bool = True,
        *fields: str,
        eta: bool = True,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.enabled = enabled
        self.fields = fields
        self.eta = eta
        self.echo = echo
        self._p: Any = None

    def _line(self, desc: str, total: int | None) -> None:
        """Without a bar, one line per stage (when an ``echo`` is given)."""
        if self.echo is not None:
            self.echo(desc if total is None else f"{desc} ({total} steps)")

    def __enter__(self) -> Progress:
        if self.enabled:
            self._p = rich_progress(*self.fields, eta=self.eta)
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)
            self._p = None

    def task(self, desc: str, total: int | None, **fields: Any) -> Task:
        """A new bar of ``total`` steps."""
        if self._p is None:
            self._line(desc, total)
            return Task(self, None)
        return Task(self, self._p.add_task(desc, total=total, **fields))

    def track(self, items: Iterable, desc: str, total: int | None = None) -> Iterator:
        """Yield ``items`` while a bar advances (removed when the iteration ends)."""
        if self._p is None:
            self._line(desc, total if total is not None else _length(items))
            yield from items
            return
        if total is None:
            total = _length(items)
        task = self.task(desc, total)
        for it in items:
            yield it
            task.advance()
        task.close()
