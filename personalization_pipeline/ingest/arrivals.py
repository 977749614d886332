"""New raw files: what the raw-file sensor compares between its ticks (no Dagster).

A directory's state is each visible file's modification time (ns) and size. A file is new when
the previous state lacks it or recorded another time or size; it has landed once it has not
changed for ``settle_seconds`` (a copy still being written waits for the next tick).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SETTLE_SECONDS = 30.0

State = dict[str, list[int]]


@dataclass(frozen=True)
class Arrivals:
    """What a tick found: ``landed`` (new files, all settled: start a run), ``waiting`` (new files
    still changing: look again), and the state to remember (``None``: keep the previous one)."""

    landed: list[str]
    waiting: list[str]
    state: State | None

    @property
    def cursor(self) -> str | None:
        """The state to remember, as the JSON :func:`find_arrivals` reads back (``None``: keep the previous one)."""
        return None if self.state is None else json.dumps(self.state, sort_keys=True)

    @property
    def run_key(self) -> str:
        """The same for the same landed state, so a state triggers one run at most."""
        return hashlib.sha256((self.cursor or "").encode()).hexdigest()[:16]


def file_state(directory: Path) -> State:
    """Modification time (ns) and size of every visible regular file directly in ``directory``."""
    if not directory.is_dir():
        return {}
    state = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            state[path.name] = [stat.st_mtime_ns, stat.st_size]
    return state


def find_arrivals(directory: Path, cursor: str | None, now: float, settle_seconds: float = SETTLE_SECONDS) -> Arrivals:
    """Compare ``directory`` with the state in ``cursor`` (JSON, ``None`` on the first look, which
    only records what is there). ``now`` in epoch seconds."""
    current = file_state(directory)
    if cursor is None:
        return Arrivals([], [], current)
    previous: State = json.loads(cursor)
    new = [name for name, stat in current.items() if previous.get(name) != stat]
    waiting = [name for name in new if now - current[name][0] / 1e9 < settle_seconds]
    if waiting:
        return Arrivals([], waiting, None)
    return Arrivals(new, [], current if new or current != previous else None)
