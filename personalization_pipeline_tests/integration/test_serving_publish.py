"""Publishing snapshots into real PostgreSQL: shape, idempotence, atomicity, rollback, retention."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pytest

from personalization_pipeline.serving import publish
from personalization_pipeline.serving.publish import (
    Snapshot,
    create_load_tables,
    drop_stale_load_tables,
    items_json_sql,
    load_rows,
    publish_snapshot,
    swap_in,
)
from personalization_pipeline.serving.retention import purge_expired

NOW = datetime.now(UTC).replace(microsecond=0)


def items_frame(long: pd.DataFrame, keys: Sequence[str] = ("user_id", "scope")) -> pd.DataFrame:
    """The serving items JSON (:func:`items_json_sql`, as the pipeline builds it) over an in-memory
    frame of ``keys``, rank, item_id, score, confidence."""
    needed = [*keys, "rank", "item_id", "score", "confidence"]
    missing = [c for c in needed if c not in long.columns]
    if missing:
        raise ValueError(f"long rankings frame lacks column(s) {missing}")
    values = long[["score", "confidence"]].to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        raise ValueError("score and confidence must be finite numbers")
    with duckdb.connect() as con:
        con.register("long_rows", long[needed])
        return con.execute(items_json_sql("long_rows", keys)).df()


def long_rankings(n_users: int, n_items: int, seed: int = 0) -> pd.DataFrame:
    """Long rows (user_id, scope, rank, item_id, score, confidence), shuffled."""
    rng = np.random.default_rng(seed)
    rows = n_users * n_items
    frame = pd.DataFrame(
        {
            "user_id": np.repeat([f"u{i}" for i in range(n_users)], n_items),
            "scope": "news",
            "rank": np.tile(np.arange(1, n_items + 1), n_users),
            "item_id": [f"i{(i * 7) % 97}" for i in range(rows)],
            "score": rng.random(rows),
            "confidence": rng.random(rows),
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def snapshot(version: str, n_users: int, n_items: int = 5) -> Snapshot:
    """Rankings for ``n_users`` users plus a global ranking, all tagged ``version``."""
    long = long_rankings(n_users, n_items)
    stamps = {"model_version": version, "generated_at": NOW, "valid_until": NOW + timedelta(hours=24)}
    ranks = items_frame(long).assign(variant="als", **stamps)
    glob = items_frame(long[long["user_id"] == "u0"].drop(columns="user_id"), keys=("scope",))
    return Snapshot(ranks=ranks, global_ranks=glob.assign(**stamps))


def table_state(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM personalization_ranks),"
            " (SELECT min(model_version) FROM personalization_ranks),"
            " (SELECT max(model_version) FROM personalization_ranks),"
            " (SELECT string_agg(model_version, ',') FROM personalization_global_ranks),"
            " (SELECT md5(string_agg(user_id || items::text, ',' ORDER BY user_id))"
            "    FROM personalization_ranks)"
        ).fetchone()


def load_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE '%\\_\\_load\\_%' ORDER BY 1")
        return [name for (name,) in rows.fetchall()]


def test_items_frame_orders_by_rank_then_item_id() -> None:
    long = pd.DataFrame(
        {
            "user_id": ["b", "a", "a", "a"],
            "scope": "s",
            "rank": [1, 2, 1, 1],
            "item_id": [5, "z", "y", "x"],
            "score": [0.5, 0.1, 0.9, 0.9],
            "confidence": [1.0, 0.2, 0.3, 0.4],
        }
    )
    frame = items_frame(long)
    assert frame["user_id"].tolist() == ["a", "b"]
    assert json.loads(frame["items"].iloc[0]) == [
        {"id": "x", "score": 0.9, "confidence": 0.4},
        {"id": "y", "score": 0.9, "confidence": 0.3},
        {"id": "z", "score": 0.1, "confidence": 0.2},
    ]
    assert json.loads(frame["items"].iloc[1]) == [{"id": "5", "score": 0.5, "confidence": 1.0}]


def test_items_frame_rejects_non_finite_scores() -> None:
    long = long_rankings(1, 2)
    long.loc[0, "score"] = np.nan
    with pytest.raises(ValueError, match="finite"):
        items_frame(long)


def test_publish_round_trip_keeps_item_order_and_shape(clean_pg: str) -> None:
    snap = snapshot("v1", n_users=3, n_items=4)
    result = publish_snapshot(clean_pg, snap)
    assert result.loaded == {"ranks": 3, "global_ranks": 1}
    long = long_rankings(3, 4).sort_values(["user_id", "rank"])
    with psycopg.connect(clean_pg) as conn:
        rows = conn.execute(
            "SELECT user_id, scope, items, model_version, variant, valid_until - generated_at"
            " FROM personalization_ranks ORDER BY user_id"
        ).fetchall()
        global_items = conn.execute("SELECT items FROM personalization_global_ranks WHERE scope = 'news'").fetchone()[0]
    assert [r[0] for r in rows] == ["u0", "u1", "u2"]
    for user_id, scope, items, version, variant, ttl in rows:
        expected = long[long["user_id"] == user_id]
        assert (scope, version, variant, ttl) == ("news", "v1", "als", timedelta(hours=24))
        assert [item["id"] for item in items] == expected["item_id"].tolist()
        scores = [item["score"] for item in items]
        # 7 significant digits whatever the magnitude: small ALS scores must not round to 0
        assert scores == pytest.approx(expected["score"].tolist(), rel=1e-6)
        assert all(set(item) == {"id", "score", "confidence"} for item in items)
    assert global_items == rows[0][2]


def test_publish_accepts_python_lists_and_naive_utc_times(clean_pg: str) -> None:
    items = [{"id": "a", "score": np.float32(0.5), "confidence": 1.0}]
    naive = NOW.replace(tzinfo=None)
    ranks = pd.DataFrame(
        {
            "user_id": ["u1"],
            "scope": ["s"],
            "items": [items],
            "model_version": ["v"],
            "generated_at": [naive],
            "valid_until": [naive + timedelta(hours=1)],
        }
    )
    glob = ranks.drop(columns="user_id")
    publish_snapshot(clean_pg, Snapshot(ranks=ranks, global_ranks=glob))
    with psycopg.connect(clean_pg) as conn:
        row = conn.execute("SELECT items, generated_at, variant FROM personalization_ranks").fetchone()
    assert row == ([{"id": "a", "score": 0.5, "confidence": 1.0}], NOW, None)


def test_republish_is_idempotent(clean_pg: str) -> None:
    snap = snapshot("v1", n_users=20)
    publish_snapshot(clean_pg, snap)
    first = table_state(clean_pg)
    publish_snapshot(clean_pg, snap)
    assert table_state(clean_pg) == first
    assert first[:4] == (20, "v1", "v1", "v1")


def test_new_publish_replaces_the_whole_set(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=20))
    publish_snapshot(clean_pg, snapshot("v2", n_users=7))
    assert table_state(clean_pg)[:4] == (7, "v2", "v2", "v2")


def _null_key(snap: Snapshot) -> Snapshot:
    ranks = snap.ranks.astype({"user_id": "object"})
    ranks.loc[3, "user_id"] = None
    return Snapshot(ranks=ranks, global_ranks=snap.global_ranks)


def _duplicate_global_scope(snap: Snapshot) -> Snapshot:
    """Fails only when the global table is written, after the rankings were replaced."""
    return Snapshot(ranks=snap.ranks, global_ranks=pd.concat([snap.global_ranks] * 2))


def _bad_json(snap: Snapshot) -> Snapshot:
    ranks = snap.ranks.copy()
    ranks.loc[5, "items"] = "[{not json"
    return Snapshot(ranks=ranks, global_ranks=snap.global_ranks)


def _duplicate_eval_key(snap: Snapshot) -> Snapshot:
    evals = pd.DataFrame(
        {
            "run_id": ["r"] * 2,
            "model_name": ["als"] * 2,
            "metric": ["ndcg"] * 2,
            "k": [10, 10],
            "value": [0.1, 0.2],
            "computed_at": [NOW, NOW],
        }
    )
    return Snapshot(ranks=snap.ranks, global_ranks=snap.global_ranks, evals=evals)


@pytest.mark.parametrize("break_snapshot", [_null_key, _duplicate_global_scope, _bad_json, _duplicate_eval_key])
def test_failed_publish_keeps_previous_publish(clean_pg: str, break_snapshot) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=12))
    before = table_state(clean_pg)
    with pytest.raises(psycopg.Error):
        publish_snapshot(clean_pg, break_snapshot(snapshot("v2", n_users=30)))
    assert table_state(clean_pg) == before
    assert before[:4] == (12, "v1", "v1", "v1")
    assert load_tables(clean_pg) == []  # the failed publish's load tables are gone


def test_missing_column_is_rejected_before_touching_the_database(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=4))
    before = table_state(clean_pg)
    bad = snapshot("v2", n_users=9)
    with pytest.raises(ValueError, match=r"'ranks' lacks required column.*valid_until"):
        publish_snapshot(clean_pg, Snapshot(bad.ranks.drop(columns="valid_until"), bad.global_ranks))
    assert table_state(clean_pg) == before


def test_readers_see_only_complete_publishes(clean_pg: str) -> None:
    old, new = snapshot("a", n_users=1500), snapshot("b", n_users=2500)
    expected = {(1500, "a", "a", "a"), (2500, "b", "b", "b")}
    publish_snapshot(clean_pg, old)
    seen: list[tuple] = []
    stop = threading.Event()

    def read() -> None:
        with psycopg.connect(clean_pg, autocommit=True) as conn:
            while not stop.is_set() and len(seen) < 50_000:
                seen.append(
                    conn.execute(
                        "SELECT count(*), min(r.model_version), max(r.model_version),"
                        " (SELECT string_agg(model_version, ',') FROM personalization_global_ranks)"
                        " FROM personalization_ranks AS r"
                    ).fetchone()
                )

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for snap in [new, old, new, old, new]:
            publish_snapshot(clean_pg, snap)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert not reader.is_alive()
    assert len(seen) > 10
    assert set(seen) == expected


def test_concurrent_publishers_are_serialised(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("a", n_users=500))
    snaps = [snapshot("b", n_users=800), snapshot("c", n_users=1200)]
    errors: list[BaseException] = []

    def publish(snap: Snapshot) -> None:
        try:
            publish_snapshot(clean_pg, snap)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(snap,)) for snap in snaps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert table_state(clean_pg)[:4] in {(800, "b", "b", "b"), (1200, "c", "c", "c")}


def test_models_keep_one_active_version_per_name(clean_pg: str) -> None:
    base = snapshot("v1", n_users=2)

    def models(*rows: tuple[str, str, bool]) -> Snapshot:
        frame = pd.DataFrame(rows, columns=["model_name", "model_version", "active"])
        frame = frame.assign(metrics=[{"ndcg": 0.1}] * len(rows), trained_at=NOW)
        return Snapshot(ranks=base.ranks, global_ranks=base.global_ranks, models=frame)

    publish_snapshot(clean_pg, models(("als", "v1", True), ("popularity", "p1", True)))
    publish_snapshot(clean_pg, models(("als", "v2", True), ("ranker", "r1", False)))
    publish_snapshot(clean_pg, models(("als", "v2", True), ("ranker", "r1", False)))
    with psycopg.connect(clean_pg) as conn:
        rows = conn.execute(
            "SELECT model_name, model_version, active, metrics FROM personalization_models"
            " ORDER BY model_name, model_version"
        ).fetchall()
    assert [r[:3] for r in rows] == [
        ("als", "v1", False),
        ("als", "v2", True),
        ("popularity", "p1", True),
        ("ranker", "r1", False),
    ]
    assert rows[0][3] == {"ndcg": 0.1}


def test_evals_keep_history_and_user_tables_are_replaced(clean_pg: str) -> None:
    base = snapshot("v1", n_users=2)

    def run(run_id: str, value: float, users: list[str]) -> Snapshot:
        evals = pd.DataFrame(
            {
                "run_id": run_id,
                "model_name": "als",
                "metric": ["ndcg", "recall"],
                "k": 10,
                "value": [value, value / 2],
                "computed_at": NOW,
            }
        )
        features = pd.DataFrame({"user_id": users, "features": [{"engagement": 1.0}] * len(users), "computed_at": NOW})
        similar = pd.DataFrame(
            {
                "user_id": users,
                "similar_user_id": "u0",
                "similarity_score": 0.5,
                "common_attributes": [["country"]] * len(users),
                "calculated_at": NOW,
            }
        )
        return Snapshot(base.ranks, base.global_ranks, features=features, evals=evals, similar_users=similar)

    publish_snapshot(clean_pg, run("r1", 0.2, ["u1", "u2"]))
    publish_snapshot(clean_pg, run("r2", 0.3, ["u3"]))
    publish_snapshot(clean_pg, run("r2", 0.4, ["u3"]))
    publish_snapshot(clean_pg, base)
    with psycopg.connect(clean_pg) as conn:
        evals = conn.execute(
            "SELECT run_id, metric, value FROM personalization_eval ORDER BY run_id, metric"
        ).fetchall()
        features = conn.execute("SELECT user_id, features FROM personalization_features").fetchall()
        similar = conn.execute("SELECT user_id, common_attributes FROM personalization_similar_users").fetchall()
    assert evals == [("r1", "ndcg", 0.2), ("r1", "recall", 0.1), ("r2", "ndcg", 0.4), ("r2", "recall", 0.2)]
    assert features == [("u3", {"engagement": 1.0})]
    assert similar == [("u3", ["country"])]


def test_purge_expired_applies_retention(clean_pg: str) -> None:
    snap = snapshot("v1", n_users=3)
    ranks = snap.ranks.copy()
    ranks.loc[ranks["user_id"] == "u1", "valid_until"] = NOW - timedelta(minutes=1)
    rationale = ranks[["user_id", "scope"]].assign(tags=[["popular"]] * 3)
    features = pd.DataFrame(
        {
            "user_id": ["fresh", "old"],
            "features": ["{}", "{}"],
            "computed_at": [NOW - timedelta(days=1), NOW - timedelta(days=31)],
        }
    )
    evals = pd.DataFrame(
        {
            "run_id": ["new", "old"],
            "model_name": "als",
            "metric": "ndcg",
            "k": 10,
            "value": 0.1,
            "computed_at": [NOW - timedelta(days=2), NOW - timedelta(days=400)],
        }
    )
    publish_snapshot(
        clean_pg,
        Snapshot(ranks, snap.global_ranks, features=features, evals=evals, rationale=rationale),
    )
    deleted = purge_expired(clean_pg)
    assert deleted == {
        "ranks": 1,
        "rationale": 1,
        "features": 1,
        "evals": 1,
        "experiment_exposures": 0,
        "experiment_assignments": 0,
    }
    with psycopg.connect(clean_pg) as conn:
        users = conn.execute("SELECT user_id FROM personalization_ranks ORDER BY 1").fetchall()
        tagged = conn.execute("SELECT user_id FROM personalization_rank_rationale ORDER BY 1").fetchall()
    assert users == tagged == [("u0",), ("u2",)]


def test_items_frame_keeps_seven_significant_digits_at_any_magnitude() -> None:
    long = pd.DataFrame(
        {
            "user_id": "u",
            "scope": "s",
            "rank": [1, 2, 3, 4],
            "item_id": ["a", "b", "c", "d"],
            "score": [0.18230102956295013, 1.234567891e-7, -42.123456789, 0.0],
            "confidence": [0.123456, 1.0, 0.0, 0.5],
        }
    )
    items = json.loads(items_frame(long)["items"].iloc[0])
    assert [i["score"] for i in items] == [0.182301, 1.234568e-7, -42.12346, 0.0]
    assert [i["confidence"] for i in items] == [0.1235, 1.0, 0.0, 0.5]


def test_users_opted_out_at_commit_time_are_not_published(clean_pg: str) -> None:
    """An opt-out stored while the run computed (u1) is honoured by the publish itself: no ranking,
    rationale, feature or similar-user row of u1, as subject or as neighbour."""
    with psycopg.connect(clean_pg) as conn:
        conn.execute(
            "INSERT INTO personalization_settings (user_id, personalization_enabled) VALUES ('u1', false), ('u2', true)"
        )
    base = snapshot("v1", n_users=3)
    users = ["u0", "u1", "u2"]
    full = Snapshot(
        ranks=base.ranks,
        global_ranks=base.global_ranks,
        rationale=base.ranks[["user_id", "scope"]].assign(tags=[["als"]] * 3),
        features=pd.DataFrame({"user_id": users, "features": [{"engagement": 1.0}] * 3, "computed_at": NOW}),
        similar_users=pd.DataFrame(
            {"user_id": users, "similar_user_id": ["u1", "u2", "u0"], "similarity_score": 0.5, "calculated_at": NOW}
        ),
    )
    result = publish_snapshot(clean_pg, full)
    assert result.dropped_opted_out == {"ranks": 1, "rationale": 1, "features": 1, "similar_users": 2}
    with psycopg.connect(clean_pg) as conn:
        for table in ("personalization_ranks", "personalization_rank_rationale", "personalization_features"):
            assert [r[0] for r in conn.execute(f"SELECT user_id FROM {table} ORDER BY 1")] == ["u0", "u2"], table
        pairs = conn.execute("SELECT user_id, similar_user_id FROM personalization_similar_users").fetchall()
    assert pairs == [("u2", "u0")]


def _served_ranks_table(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT c.oid, c.relrowsecurity,"
            " (SELECT array_agg(indexname ORDER BY indexname) FROM pg_indexes WHERE tablename = c.relname),"
            " (SELECT array_agg(policyname ORDER BY policyname) FROM pg_policies WHERE tablename = c.relname),"
            " has_table_privilege('personalization_api', c.oid, 'SELECT'),"
            " has_table_privilege('personalization_api', 'personalization_rank_rationale', 'SELECT')"
            " FROM pg_class AS c WHERE c.relname = 'personalization_ranks'"
        ).fetchone()


def test_each_publish_swaps_in_a_fresh_table_secured_and_indexed_as_before(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=30))
    first = _served_ranks_table(clean_pg)
    publish_snapshot(clean_pg, snapshot("v2", n_users=20))
    second = _served_ranks_table(clean_pg)
    assert second[0] != first[0]  # a new table: the old rows are dropped with the old one, never left dead
    assert first[1:] == second[1:]
    assert second[1] and second[4] and not second[5]  # row-level security, the API's grant, no rationale
    assert second[2] == ["personalization_ranks_pkey", "personalization_ranks_valid_until_idx"]
    assert second[3] == ["caller_reads_own_rows"]
    assert table_state(clean_pg)[:4] == (20, "v2", "v2", "v2")
    assert load_tables(clean_pg) == []


def test_users_loaded_by_separate_loaders_are_served_together_at_the_swap(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=12))
    before = table_state(clean_pg)
    new = snapshot("v2", n_users=40)
    tables = create_load_tables(clean_pg, "bucketed", ("ranks",))
    halves = [new.ranks.iloc[::2], new.ranks.iloc[1::2]]  # as two bucket steps would, each its own transaction
    assert [load_rows(clean_pg, tables, {"ranks": half})["ranks"] for half in halves] == [20, 20]
    assert table_state(clean_pg) == before  # loaded, not served
    result = swap_in(clean_pg, tables, {"global_ranks": new.global_ranks})
    assert result.dropped_opted_out == {"ranks": 0} and result.loaded == {"global_ranks": 1}
    assert table_state(clean_pg)[:4] == (40, "v2", "v2", "v2")
    assert load_tables(clean_pg) == []


def test_stale_load_tables_are_dropped_and_fresh_ones_kept(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=3))
    create_load_tables(clean_pg, "failed", ("ranks", "features"))
    create_load_tables(clean_pg, "running", ("ranks",))
    create_load_tables(clean_pg, "unknown", ("similar_users",))
    with psycopg.connect(clean_pg) as conn:
        for table in ("personalization_ranks__load_failed", "personalization_features__load_failed"):
            conn.execute(f"COMMENT ON TABLE {table} IS '{(NOW - timedelta(days=2)).isoformat()}'")
        conn.execute("COMMENT ON TABLE personalization_similar_users__load_unknown IS 'not a time'")
    assert drop_stale_load_tables(clean_pg) == [
        "personalization_features__load_failed",
        "personalization_ranks__load_failed",
        "personalization_similar_users__load_unknown",
    ]
    assert load_tables(clean_pg) == ["personalization_ranks__load_running"]
    with pytest.raises(ValueError, match="tag"):
        create_load_tables(clean_pg, "x; DROP TABLE y", ("ranks",))


def test_long_lists_are_compressed_with_lz4_where_the_server_has_it(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=3, n_items=60))  # ~3.5 kB of JSON per list
    with psycopg.connect(clean_pg) as conn:
        has_lz4 = conn.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
        methods = conn.execute(
            "SELECT DISTINCT pg_column_compression(items), octet_length(items::text) > 3000 FROM personalization_ranks"
        ).fetchall()
    assert methods == [("lz4" if has_lz4 == (True,) else "pglz", True)]


def _stream(frame: pd.DataFrame, rows_per_batch: int) -> pa.RecordBatchReader:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=rows_per_batch))


def test_a_load_shares_its_batches_over_several_connections_and_commits_them_together(clean_pg: str) -> None:
    new = snapshot("v2", n_users=200)
    tables = create_load_tables(clean_pg, "parallel", ("ranks",))
    assert load_rows(clean_pg, tables, {"ranks": _stream(new.ranks, 5)}, connections=3) == {"ranks": 200}
    with psycopg.connect(clean_pg) as conn:
        users, transactions = conn.execute(
            "SELECT count(DISTINCT user_id), count(DISTINCT xmin::text) FROM personalization_ranks__load_parallel"
        ).fetchone()
    assert users == 200 and transactions > 1  # every row once, copied over more than one connection


@pytest.mark.parametrize("failure", ["repeated key", "unreadable batch"])
def test_a_failed_parallel_load_leaves_nothing_loaded_and_says_why(
    clean_pg: str, failure: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "LOAD_LOCK_TIMEOUT_S", 1)
    ranks = snapshot("v2", n_users=60).ranks
    tables = create_load_tables(clean_pg, "failing", ("ranks",))
    if failure == "repeated key":  # the same user's row in the first and the last batch: two connections
        stream = _stream(pd.concat([ranks, ranks.iloc[:1]]), 5)
        expected: tuple[type[Exception], str] = (ValueError, "repeats a key of personalization_ranks__load_failing")
    else:
        good = _stream(ranks, 5)

        def batches() -> Iterator[pa.RecordBatch]:
            yield from itertools.islice(good, 6)
            raise OSError("the staged file is unreadable")

        stream = pa.RecordBatchReader.from_batches(good.schema, batches())
        expected = (OSError, "unreadable")
    with pytest.raises(expected[0], match=expected[1]):
        load_rows(clean_pg, tables, {"ranks": stream}, connections=2)
    with psycopg.connect(clean_pg) as conn:
        assert conn.execute("SELECT count(*) FROM personalization_ranks__load_failing").fetchone() == (0,)


def test_opted_out_users_are_dropped_by_joins_not_by_a_subquery_per_row(clean_pg: str) -> None:
    publish_snapshot(clean_pg, snapshot("v1", n_users=3))
    with psycopg.connect(clean_pg) as conn:
        for name, statements in publish._DROP_OPTED_OUT.items():
            table = publish._TARGETS[name].table
            for statement in statements:
                plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + statement.format(t=table)).fetchall())
                assert "SubPlan" not in plan and (" Join" in plan or "Nested Loop" in plan), (name, plan)
