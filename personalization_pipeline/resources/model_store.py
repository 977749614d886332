"""Model artefacts on disk: ``<root>/<model_name>/<version>.npz`` plus a ``latest`` pointer."""

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

    def mark_latest(self, model_name: str, version: str) -> None:
        (Path(self.root) / model_name / "LATEST").write_text(version)

    def latest(self, model_name: str) -> tuple[str, Path]:
        marker = Path(self.root) / model_name / "LATEST"
        if not marker.exists():
            raise FileNotFoundError(f"no trained '{model_name}' model in {self.root}; materialize it first")
        version = marker.read_text().strip()
        return version, self.path(model_name, version)
