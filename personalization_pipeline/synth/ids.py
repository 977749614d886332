"""Zero-padded string ids such as ``u0000123`` and ``i000123``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def padded_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """String ids such as ``i000123``: prefix plus the zero-padded number."""
    digits = pc.utf8_lpad(pa.array(numbers).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def id_width(count: int, minimum: int) -> int:
    """Digits needed to number ``count`` things, at least ``minimum``."""
    return max(minimum, len(str(max(count - 1, 0))))
