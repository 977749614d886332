"""One benchmark tier: generate it, run the nightly and weekly jobs under a sampler, time the bare
kernels on what the run left, and render the tier's section of ``BENCHMARKS.md``."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import psutil

from ..config import PREFIX, Settings
from ..recsys.registry import PERSONAL_MODELS
from ..recsys.similarity import SearchParams
from ..runner import JobResult, run_job
from ..serving.database import resolve_database_url
from ..sqlutil import scalar
from ..steps.inputs import read_active_users
from ..steps.registry import latest_trained
from ..steps.rerank import RANKER, load_ranker
from ..steps.tables import ITEMS
from ..steps.train import load
from ..synth.generator import generate
from .kernels import (
    KernelTime,
    als_fit,
    copy_serving_rows,
    first_batch_features,
    reranker_predict,
    reranking_floor,
    similar_user_search,
    top_n,
)
from .tiers import Tier
from .usage import Sampler, Usage, step_usage

JOBS = ("nightly", "weekly")
TOP_N_KERNEL = 50


@dataclass(frozen=True)
class StepRow:
    job: str
    step: str
    usage: Usage
    rows_out: int | None


@dataclass(frozen=True)
class TierResult:
    tier: Tier
    events: int
    jobs: dict[str, Usage]
    steps: list[StepRow]
    kernels: list[KernelTime]
    peak_rss_mb: float
    serving_model: str
    measured_at: datetime
    executor: str = "in_process"  # PERSONALIZATION_EXECUTOR of the runs
    buckets: int = 1  # user buckets the rankings fanned out over
    failed_job: str | None = None  # a later job that failed: the steps it ran are kept, the jobs after it not run
    failure: str | None = None  # its error
    pending: tuple[str, ...] = ()  # a report written while the run goes on: jobs still to run (kernels after)


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """``os.environ`` with ``values`` set (None: removed) for the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


def _apply(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def run_tier(
    tier: Tier,
    workdir: Path,
    database_url: str | None,
    say: Callable[[str], None],
    jobs: tuple[str, ...] = JOBS,
    seed: int = 42,
    on_job: Callable[[TierResult], None] | None = None,
) -> TierResult:
    """Generate ``tier`` under ``workdir`` (its runtime directory: raw data, warehouse, models and,
    without ``database_url``, an embedded PostgreSQL), run ``jobs`` (nightly first), then the
    kernels on the models of the last job that succeeded. Raises ``RuntimeError`` when the first
    job fails; a later job's failure is the result's ``failure``, with the steps it ran.
    ``on_job`` receives the result so far (``pending``: what is still to run) after each job
    that succeeded, so a long run's measurements outlive an interruption."""
    for leaf in ("raw", "warehouse.duckdb", "models", "logs"):
        target = workdir / leaf
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    say(f"generating tier {tier.name}: {tier.users:,} users, {tier.items:,} items")
    counts = generate(
        workdir / "raw", users=tier.users, items=tier.items, seed=seed, events_per_user=tier.events_per_user
    )
    env = {f"{PREFIX}RUNTIME_DIR": str(workdir), f"{PREFIX}DATABASE_URL": database_url, f"{PREFIX}MAPPING_PATH": None}
    with _environment(env):
        settings = Settings.from_env()
        sampler = Sampler()
        sampler.start()
        results: dict[str, JobResult] = {}
        failed_job = None
        for done, job in enumerate(jobs, 1):
            say(f"tier {tier.name}: {job} job")
            results[job] = run_job(job)
            if not results[job].success:
                if len(results) == 1:
                    sampler.stop()
                    raise RuntimeError(f"the {job} job failed on tier {tier.name}: {results[job].error}")
                failed_job = job
                break
            if on_job is not None:
                partial = _measured(tier, counts, results, list(sampler.samples), [], _served(results[job]), settings)
                on_job(replace(partial, pending=(*jobs[done:], "bare kernels")))
        samples = sampler.stop()
        last = [result for result in results.values() if result.success][-1]  # the nightly at least
        say(f"tier {tier.name}: bare kernels")
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            registry = latest_trained(con)
            served = _served(last)  # what the kernels load
            kernels = [als_fit(con, registry["als"].params_dict)]
            if served == RANKER:
                lists = len(read_active_users(con)) * scalar(con, f"SELECT count(DISTINCT scope) FROM {ITEMS}")
                reranker = load_ranker(registry[RANKER])
                features = first_batch_features(con, settings, registry, reranker)
                predict = reranker_predict(reranker, features, lists * settings.ranker_candidates)
                sources = [
                    top_n(con, load(registry[name]), settings.ranker_candidates)
                    for name in PERSONAL_MODELS
                    if name in registry
                ]
                kernels += [predict, reranking_floor(predict, sources)]
            else:
                kernels.append(top_n(con, load(registry[served]), TOP_N_KERNEL))
            if last.steps.get("similar_users"):
                params = SearchParams(k=settings.similar_users_k, threshold=settings.similar_users_threshold)
                kernels.append(similar_user_search(con, params))
            kernels.append(copy_serving_rows(con, resolve_database_url(settings)))
    result = _measured(tier, counts, results, samples, kernels, served, settings)
    return replace(result, failed_job=failed_job, failure=results[failed_job].error if failed_job else None)


def _served(result: JobResult) -> str:
    """The model a job's rankings were served by."""
    return str(result.metadata["user_rankings"]["serving_model"])


def _measured(
    tier: Tier,
    counts: dict[str, int],
    results: dict[str, JobResult],
    samples: list[tuple[float, float, float]],
    kernels: list[KernelTime],
    served: str,
    settings: Settings,
) -> TierResult:
    """The tier's result from the jobs' step times cut out of the samples, ``kernels`` and the
    model that ``served``."""
    steps = [
        StepRow(job, step, step_usage(samples, spans), result.rows.get(step))
        for job, result in results.items()
        for step, spans in result.steps.items()
    ]
    by_job = {
        job: step_usage(samples, [(min(s[0][0] for s in r.steps.values()), max(s[-1][1] for s in r.steps.values()))])
        for job, r in results.items()
        if r.steps
    }
    return TierResult(
        tier,
        counts["interactions"],
        by_job,
        steps,
        kernels,
        max(sample[2] for sample in samples) / 2**20,
        served,
        datetime.now(UTC).replace(microsecond=0, tzinfo=None),
        settings.executor,
        settings.buckets,
    )


def machine() -> str:
    """One line describing this machine."""
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.machine()}, {os.cpu_count()} logical cores, {memory:.0f} GB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )
