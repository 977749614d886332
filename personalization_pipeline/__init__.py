"""Batch personalization pipeline: raw events to privacy-safe features, models and served rankings."""

import os
import sys
from pathlib import Path

# implicit's ALS threads itself; a multi-threaded OpenBLAS underneath it only slows it down.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The environment's scripts (dbt above all, which dagster-dbt runs by name) are found even when
# the virtualenv is not activated, e.g. `.venv/bin/personalization-pipeline run`.
_SCRIPTS = str(Path(sys.executable).parent)
if _SCRIPTS not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join(filter(None, [_SCRIPTS, os.environ.get("PATH")]))
