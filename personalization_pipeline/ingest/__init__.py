"""Raw input: contract, column mapping, loading with quarantine."""

from .contract import CONTRACTS
from .errors import InputError
from .loader import IngestOptions, IngestReport, load_raw_tables
from .mapping import TableMapping, load_mapping

__all__ = [
    "CONTRACTS",
    "IngestOptions",
    "IngestReport",
    "InputError",
    "TableMapping",
    "load_mapping",
    "load_raw_tables",
]
