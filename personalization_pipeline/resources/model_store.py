"""Model artefacts on disk: ``<root>/<model_name>/<version>.npz``.

Files are content-addressed and never overwritten; which version a run ranks with is recorded
in the warehouse (``model_versions``), so a failed run leaves it as it was.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg


class ModelStoreResource(dg.ConfigurableResource):
    """Directory holding trained model files."""

    root: str

    def path(self, model_name: str, version: str) -> Path:
        folder = Path(self.root) / model_name
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{version}.npz"
