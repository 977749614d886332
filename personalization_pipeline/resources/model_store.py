"""Model artefacts on disk: ``<root>/<model_name>/<version>/model.npz``.

Directories are content-addressed (the version is a hash of kind, parameters and learned state)
and never overwritten; which version a run ranks with is recorded in the warehouse registry
(``model_registry``), so a failed run leaves it as it was.
"""

from __future__ import annotations

import dagster as dg


class ModelStoreResource(dg.ConfigurableResource):
    """Directory holding trained model files."""

    root: str
