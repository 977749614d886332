"""Batch personalization pipeline: raw events to privacy-safe features, models and served rankings."""

import os

# implicit's ALS threads itself; a multi-threaded OpenBLAS underneath it only slows it down.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
