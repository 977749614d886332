"""The generated time window and timestamp helpers (epoch seconds, UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

DAY = 86_400
TIMESTAMP = pa.timestamp("s", tz="UTC")


def default_end() -> datetime:
    """The current time truncated to the hour, in UTC."""
    return datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def epoch_seconds(moment: datetime) -> int:
    """Epoch seconds of ``moment``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


@dataclass(frozen=True)
class Window:
    """``days`` UTC calendar days ending with the day holding ``end`` (epoch seconds)."""

    end: int
    days: int

    @property
    def start(self) -> int:
        """Midnight UTC opening the first day of the window."""
        return (self.end // DAY - (self.days - 1)) * DAY


def timestamps(seconds: np.ndarray) -> pa.Array:
    """Arrow UTC timestamps from epoch seconds."""
    return pa.array(np.asarray(seconds, dtype=np.int64)).cast(TIMESTAMP)
