"""Rankings: top-N per user and scope from the serving model, popularity per scope as the fallback."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..recsys.base import Recommender
from ..recsys.cold_start import with_cold_start
from ..recsys.per_user import PerUserComposite
from ..recsys.popularity import Popularity
from ..recsys.ranking import USER_COLUMNS, Scorer, global_rankings, iter_user_rankings
from ..recsys.registry import GLOBAL_MODELS, PERSONAL_MODELS
from ..sqlutil import has_table, scalar
from .gate import GAIN_STDERR, METRIC, STDERR, Figure
from .inputs import read_active_users, read_catalog, read_history
from .registry import RegistryEntry, record
from .rerank import RANKER, cold_start_params, load_ranker, rerank, signals_as_of
from .sinks import ParquetSink
from .tables import EVAL_HISTORY, GLOBAL_RANKINGS, RANK_RATIONALE, USER_RANKINGS
from .train import load


@dataclass(frozen=True)
class RankingCounts:
    """Users and rows ranked; of those users, how many a per-user model ranked and how many each
    experiment variant holds (by ``experiment/variant``); whether the rows were written in key
    order (user, scope, rank)."""

    users: int = 0
    rows: int = 0
    per_user_users: int = 0
    variant_users: dict[str, int] = field(default_factory=dict)
    in_key_order: bool = True

    def __add__(self, other: RankingCounts) -> RankingCounts:
        """The counts of two disjoint sets of users, the second's rows written after the first's."""
        variants = Counter(self.variant_users) + Counter(other.variant_users)
        return RankingCounts(
            self.users + other.users,
            self.rows + other.rows,
            self.per_user_users + other.per_user_users,
            dict(sorted(variants.items())),
            self.in_key_order and other.in_key_order and not (self.rows and other.rows),
        )


def choose_serving_model(
    con: duckdb.DuckDBPyConnection,
    entries: dict[str, RegistryEntry],
    names: tuple[str, ...] = (*PERSONAL_MODELS, RANKER),
    margin_stderrs: float = 1.0,
) -> RegistryEntry:
    """Of ``names`` (the personal models, then the re-ranker), the one :func:`pick_serving` picks by
    the latest evaluation of these versions; ALS when none of them was evaluated."""
    candidates = [entries[name] for name in names if name in entries]
    if not candidates:
        raise ValueError("no personal model is trained: nothing to rank with")
    versions = [entry.model_version for entry in candidates]
    evaluated: dict[str, dict[str, float]] = {}
    if has_table(con, EVAL_HISTORY):
        for version, metric, value in con.execute(
            f"SELECT model_version, metric, value FROM {EVAL_HISTORY} WHERE metric IN (?, ?, ?) "
            "AND list_contains(?, model_version) "
            "QUALIFY row_number() OVER (PARTITION BY model_version, metric ORDER BY computed_at DESC) = 1",
            [METRIC, STDERR, GAIN_STDERR, versions],
        ).fetchall():
            evaluated.setdefault(version, {})[metric] = value
    figures = {
        e.model_name: Figure(e.model_version, got[METRIC], got.get(STDERR, 0.0), got.get(GAIN_STDERR))
        for e in candidates
        if e.model_version is not None and METRIC in (got := evaluated.get(e.model_version, {}))
    }
    if not figures:
        return entries.get("als", candidates[0])
    return entries[pick_serving(figures, [e.model_name for e in candidates], margin_stderrs)]


def pick_serving(figures: dict[str, Figure], names: list[str], margin_stderrs: float = 1.0) -> str:
    """The personal model (any name but the re-ranker's) with the best NDCG (ties: the order of
    ``names``); the re-ranker instead only when its NDCG beats that one's by more than
    ``margin_stderrs`` standard errors of the difference (of the per-user gain when the
    evaluation recorded it, else of two independent means): a stage on top of the personal
    models must earn its cost and its risk, not win on evaluation noise."""
    personal = [name for name in names if name in figures and name != RANKER]
    if not personal:
        return RANKER
    best = max(personal, key=lambda name: (figures[name].ndcg, -names.index(name)))
    ranker = figures.get(RANKER)
    if ranker is None:
        return best
    noise = ranker.gain_stderr
    if noise is None:
        noise = (ranker.stderr**2 + figures[best].stderr ** 2) ** 0.5
    margin = margin_stderrs * noise
    return RANKER if ranker.ndcg > figures[best].ndcg + margin else best


def write_user_rankings(
    con: duckdb.DuckDBPyConnection,
    settings: Any,
    entry: RegistryEntry,
    registry: dict[str, RegistryEntry],
    sink: ParquetSink,
    per_user: PerUserComposite | None = None,
    neighbours: pd.DataFrame | None = None,
    variant: tuple[str | None, str | None] = (None, None),
) -> RankingCounts:
    """Top-``settings.top_n`` per opted-in user and scope of ``con``'s staged inputs into ``sink``'s
    ``user_rankings`` (its schema: :data:`OUTPUT_SCHEMAS`), seen items
    removed, from ``entry``: a personal model (blended for short histories, see :mod:`~.cold_start`),
    or the re-ranker over the registered models' candidates (its rationale tags go to
    ``rank_rationale``; ``neighbours``: its ALS neighbours when already computed). With
    ``per_user``, kept users are scored by their own model over the personal model (for the
    re-ranker, over the best personal model's source). Every row records the version of the model
    that produced it, and the (experiment, variant) the users are served (``variant``; none outside
    an experiment)."""
    history = read_history(con)
    users, catalog, n = read_active_users(con), read_catalog(con), settings.top_n
    kept = pa.array(per_user.users.ids if per_user is not None else [], pa.string())
    batches: Iterator[pa.Table]
    if entry.model_name == RANKER:
        models: dict[str, Recommender] = {name: load(registry[name]) for name in GLOBAL_MODELS if name in registry}
        base = choose_serving_model(con, registry, PERSONAL_MODELS).model_name
        ranked = rerank(
            con,
            settings,
            load_ranker(entry),
            models,
            history,
            signals_as_of(con),
            users.to_numpy(str),
            catalog,
            n,
            personal=(base, per_user) if per_user is not None else None,
            neighbours=neighbours,
        )
        batches = (_with_rationale(sink, batch.lists) for batch in ranked)
    else:
        model: Recommender = load(entry)
        if per_user is not None:
            model = per_user.over(model)
        scorer: Scorer = model
        if not isinstance(model, Popularity):  # the blend personalises short histories; popularity stays global
            scorer = with_cold_start(model, catalog, history, signals_as_of(con), cold_start_params(settings))
        batches = iter_user_rankings(scorer, users, catalog, history, n)
    users_ranked = per_user_users = rows = 0
    experiment, name = variant
    for batch in batches:  # each batch holds whole users, no user in two batches
        user_ids = batch.column("user_id")
        versions = pa.repeat(pa.scalar(str(entry.model_version), pa.string()), len(batch))
        if per_user is not None and len(kept):
            own = pc.is_in(user_ids, value_set=kept)
            versions = pc.if_else(own, per_user.version, versions)
            per_user_users += pc.count_distinct(user_ids.filter(own)).as_py()
        sink.append(
            USER_RANKINGS,
            batch.select(USER_COLUMNS)
            .append_column("model_version", versions)
            .append_column("experiment", pa.repeat(pa.scalar(experiment, pa.string()), len(batch)))
            .append_column("variant", pa.repeat(pa.scalar(name, pa.string()), len(batch))),
        )
        users_ranked += pc.count_distinct(user_ids).as_py()
        rows += len(batch)
    variant_users = {f"{experiment}/{name}": users_ranked} if name is not None and users_ranked else {}
    # a personal model's batches come in key order (iter_user_rankings); the re-ranker's are not promised to
    return RankingCounts(users_ranked, rows, per_user_users, variant_users, entry.model_name != RANKER)


OUTPUT_SCHEMAS: dict[str, pa.Schema] = {
    USER_RANKINGS: pa.schema(
        [
            ("user_id", pa.string()),
            ("scope", pa.string()),
            ("rank", pa.int32()),
            ("item_id", pa.string()),
            ("score", pa.float64()),
            ("confidence", pa.float64()),
            ("model_version", pa.string()),
            ("experiment", pa.string()),
            ("variant", pa.string()),
        ]
    ),
    RANK_RATIONALE: pa.schema(
        [
            ("user_id", pa.string()),
            ("scope", pa.string()),
            ("item_id", pa.string()),
            ("rank", pa.int32()),
            ("tags", pa.list_(pa.string())),
        ]
    ),
}
"""The ranking step's outputs: the rankings and, when the re-ranker serves, each item's rationale tags."""


def _with_rationale(sink: ParquetSink, lists: pd.DataFrame) -> pa.Table:
    """Append the lists' rationale tags to ``rank_rationale``; return the lists' ranking columns."""
    sink.append(RANK_RATIONALE, lists)
    return pa.Table.from_pandas(lists[USER_COLUMNS], preserve_index=False)


def current_per_user(
    con: duckdb.DuckDBPyConnection, entry: RegistryEntry | None, store: Path, run_id: str, now: datetime
) -> PerUserComposite | None:
    """The registered per-user bundle without the models of users who are no longer opted in with
    history (a user who opts out loses their model at the next run: the pruned bundle is stored
    and registered in place of the old one)."""
    if entry is None:
        return None
    bundle = load(entry)
    assert isinstance(bundle, PerUserComposite)
    gone = set(bundle.users.ids) - set(read_active_users(con))
    if not gone:
        return bundle
    pruned = bundle.without(gone)
    path = pruned.save(store / entry.model_name / pruned.version)
    detail = f"{len(gone)} users no longer opted in removed"
    record(
        con,
        replace(
            entry, run_id=run_id, model_version=pruned.version, trained_at=now, detail=detail, path=str(path.parent)
        ),
    )
    return pruned


def write_global_rankings(con: duckdb.DuckDBPyConnection, entry: RegistryEntry, n: int) -> int:
    """Top-``n`` popular items per scope into ``global_rankings``; returns the scope count."""
    popularity = load(entry)
    assert isinstance(popularity, Popularity)
    frame = global_rankings(popularity, read_catalog(con), n).assign(model_version=entry.model_version)
    con.register("global_df", frame)
    con.execute(f"CREATE OR REPLACE TABLE {GLOBAL_RANKINGS} AS SELECT * FROM global_df ORDER BY scope, rank")
    con.unregister("global_df")
    return scalar(con, f"SELECT count(DISTINCT scope) FROM {GLOBAL_RANKINGS}")
