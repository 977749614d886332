"""Raw input: contract, column mapping, loading with quarantine."""

from .contract import CONTRACTS
from .errors import InputError
from .loader import IngestReport, load_raw_tables
from .mapping import TableMapping, load_mapping

__all__ = ["CONTRACTS", "InputError", "IngestReport", "TableMapping", "load_mapping", "load_raw_tables"]
