"""``@metered``: an asset's wall time, CPU time and peak RSS in the metadata of what it materializes."""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from ..resource_usage import measured


def _with_usage(result: Any, usage: dict[str, float]) -> Any:
    if not isinstance(result, dg.MaterializeResult):
        return result
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata={**(result.metadata or {}), **usage},
        check_results=result.check_results,
        data_version=result.data_version,
        tags=result.tags,
    )


def metered(compute: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an asset function (place it under ``@dg.asset``): each MaterializeResult it returns or
    yields gains ``wall_seconds``, ``cpu_seconds`` and ``peak_rss_mb`` of the whole step."""
    if inspect.isgeneratorfunction(compute):

        @functools.wraps(compute)
        def generator(*args: Any, **kwargs: Any) -> Any:
            with measured() as usage:
                results = list(compute(*args, **kwargs))
            yield from (_with_usage(result, usage) for result in results)

        return generator

    @functools.wraps(compute)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with measured() as usage:
            result = compute(*args, **kwargs)
        return _with_usage(result, usage)

    return wrapper


def fanned_out_usage(started: float, steps: list[dict[str, float]]) -> dict[str, float]:
    """Usage of a fanned-out asset: wall time since ``started`` (epoch seconds), CPU time summed
    over its ``steps`` (each :func:`measured`), the highest peak RSS among them."""
    return {
        "wall_seconds": round(time.time() - started, 3),
        "cpu_seconds": round(sum(u["cpu_seconds"] for u in steps), 3),
        "peak_rss_mb": max(u["peak_rss_mb"] for u in steps),
    }
