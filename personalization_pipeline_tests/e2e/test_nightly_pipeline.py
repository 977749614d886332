"""The whole nightly job on generated data: real DuckDB, dbt, ALS, PostgreSQL and HTTP endpoint."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import pandas as pd
import psycopg
import pytest
from fastapi.testclient import TestClient

from personalization_pipeline.config import Settings
from personalization_pipeline.dbt_manifest import dbt_project
from personalization_pipeline.runner import run_job, sample_lookup
from personalization_pipeline.serving.app import create_app
from personalization_pipeline.serving.auth import mint_token
from personalization_pipeline.steps.tuning import read_signals_decayed
from personalization_pipeline.synth.generator import generate
from personalization_pipeline_tests.pipeline_support import pipeline_env, served_ranks

TOP_N = 20
# Rows that break the input contract, appended to the generated interactions.
BAD_ROWS = [
    ",i0001,2024-01-01T00:00:00Z,view,,s,mobile",  # null user id
    "u0000001,i0001,not-a-time,view,,s,mobile",  # unparseable time
    "u0000001,i0001,2999-01-01T00:00:00Z,view,,s,mobile",  # far future
]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, reset_pg):
    """Generate data, run the nightly job once, and yield (settings, job result)."""
    root = tmp_path_factory.mktemp("pipeline")
    raw = root / "raw"
    # the same events every run: the generator cuts the last day at ``end``'s hour, so pin the hour
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=1)
    generate(raw, users=600, items=240, seed=11, end=end)
    interactions = raw / "interactions.csv"
    natural = pd.read_csv(interactions, dtype=str).duplicated(["user_id", "item_id", "occurred_at", "event_type"])
    lines = interactions.read_text().splitlines()
    header, first = next(csv.reader(lines[:1])), lines[1]
    assert header == ["user_id", "item_id", "occurred_at", "event_type", "value", "session_id", "device_type"]
    with interactions.open("a") as handle:
        handle.write("\n".join([first, *BAD_ROWS]) + "\n")  # `first` again: an exact duplicate
    # 600 users leave the re-ranker's gain over ALS within one standard error: serve the best evaluated
    # model (the margin rule itself is tested in test_regression_gate)
    target = dbt_project.project_dir / dbt_project.target_path
    with pipeline_env(root, reset_pg(), top_n=TOP_N, ranker_margin_stderrs=0) as env:
        settings = Settings.from_env()
        before = {p.name for p in target.iterdir()}
        result = run_job("nightly")
        assert result.success, result.error
        assert {p.name for p in target.iterdir()} <= before  # dbt's run artifacts went to a temporary directory
        yield settings, result, env, int(natural.sum())


def test_rankings_are_published_complete_and_exclude_seen_items(pipeline):
    settings, *_ = pipeline
    served = served_ranks(settings)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        expected = con.execute("SELECT count(*) FROM (SELECT DISTINCT user_id, scope FROM user_rankings)").fetchall()[
            0
        ][0]
        seen = con.execute("SELECT user_id, item_id FROM mart_user_item_signals").df()
        scopes = dict(con.execute("SELECT item_id, scope FROM stg_items").fetchall())
    assert len(served) == expected > 0
    seen_pairs = set(zip(seen["user_id"], seen["item_id"], strict=True))
    for row in served.itertuples():
        ids = [item["id"] for item in row.items]
        scores = [item["score"] for item in row.items]
        assert 0 < len(ids) <= TOP_N and len(set(ids)) == len(ids)
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= item["confidence"] <= 1.0 for item in row.items)
        assert not any((row.user_id, i) in seen_pairs for i in ids), row.user_id
        assert {scopes[i] for i in ids} == {row.scope}
    assert (served["valid_until"] > served["generated_at"]).all()


def test_model_registry_rows_carry_training_time_and_metrics(pipeline):
    settings, *_ = pipeline
    with psycopg.connect(settings.database_url) as conn:
        models = conn.execute(
            "SELECT model_name, model_version, trained_at, metrics, kind, params FROM personalization_models "
            "WHERE active ORDER BY model_name"
        ).fetchall()
    published = served_ranks(settings)["generated_at"].min()
    assert [m[0] for m in models] == ["als", "ease", "popularity", "ranker"]
    assert all(m[1].startswith(f"{m[4]}-") for m in models)  # versions are <kind>-<content hash>
    assert [m[4] for m in models] == ["als", "ease", "popularity", "lambdarank"]  # kind and parameters mirrored
    assert models[0][5]["factors"] == 16 and models[1][5]["regularization"] == 250.0
    assert models[3][5]["diversity_weight"] in (0.0, 0.05, 0.1, 0.2, 0.3)
    assert all(m[2] < published for m in models)  # trained before the publish, not stamped with it
    assert all(m[3]["ndcg@10"] > 0 for m in models)
    best = max((m for m in models if m[0] != "popularity"), key=lambda m: m[3]["ndcg@10"])
    assert set(served_ranks(settings)["model_version"]) == {best[1]}  # the best evaluated model serves


def test_opted_out_users_get_no_features_and_no_rankings(pipeline):
    settings, *_ = pipeline
    opted_out = pd.read_csv(settings.data_dir / "settings.csv", dtype=str)
    opted_out = set(opted_out.loc[opted_out["personalization_enabled"].str.lower() == "false", "user_id"])
    assert opted_out
    with psycopg.connect(settings.database_url) as conn:
        ranked = {r[0] for r in conn.execute("SELECT user_id FROM personalization_ranks").fetchall()}
        featured = {r[0] for r in conn.execute("SELECT user_id FROM personalization_features").fetchall()}
    assert ranked and featured
    assert not (opted_out & ranked) and not (opted_out & featured)


def test_every_asset_check_passes_on_clean_input(pipeline):
    _, result, *_ = pipeline
    assert len(result.checks) >= 25  # dbt tests and privacy checks
    assert all(result.checks.values()), [name for name, ok in result.checks.items() if not ok]
    assert result.checks["mart_user_item_signals.no_opted_out_user_in_marts"]


def test_every_python_asset_reports_its_steps_time_and_memory(pipeline):
    _, result, *_ = pipeline
    python_assets = ["raw_interactions", "raw_items", "user_features", "als_model", "ranker_model", "offline_eval"]
    python_assets += ["user_rankings", "global_rankings", "serving_tables", "privacy_report"]
    for name in python_assets:
        meta = result.metadata[name]
        wall, spans = meta["wall_seconds"], result.steps[name if not name.startswith("raw_") else "raw_tables"]
        assert 0 < wall <= sum(end - start for start, end in spans) + 0.5, name  # within the step's own spans
        assert meta["cpu_seconds"] >= 0 and 50 < meta["peak_rss_mb"] < 16_000, name
    assert (
        result.metadata["raw_items"]["wall_seconds"] == result.metadata["raw_interactions"]["wall_seconds"]
    )  # one step


def test_dbt_models_report_their_row_counts_and_column_types(pipeline):
    settings, result, *_ = pipeline
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for model in ("stg_items", "mart_user_item_signals"):
            meta = result.metadata[model]
            rows = con.execute(f"SELECT count(*) FROM {model}").fetchone()[0]
            types = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [model],
            ).fetchall()
            assert meta["dagster/row_count"] == rows > 0, model
            assert [(c.name, c.type) for c in meta["dagster/column_schema"].columns] == types, model


def test_features_are_k_anonymous_per_quasi_identifier(pipeline):
    settings, result, *_ = pipeline
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        for column in ("country", "timezone", "device_type"):
            groups = dict(con.execute(f"SELECT {column}, count(*) FROM user_features GROUP BY 1").fetchall())
            assert min(groups.values()) >= settings.k_anonymity, (column, groups)
        # the generator plants rare countries, so some users really were generalised
        assert con.execute("SELECT count(*) FROM user_features WHERE country = 'other'").fetchall()[0][0] > 0
    assert result.metadata["user_features"]["generalised_country"] > 0


def test_quarantine_counts_are_reported_in_asset_metadata(pipeline):
    _, result, _, natural_duplicates = pipeline
    meta = result.metadata["raw_interactions"]
    assert meta["quarantined_by_reason"] == {
        "duplicate": natural_duplicates + 1,
        "future_occurred_at": 1,
        "null_user_id": 1,
        "unparseable_occurred_at": 1,
    }
    assert meta["quarantined"] == natural_duplicates + 4


def test_signals_decay_with_a_half_life_of_half_the_data_span(pipeline):
    settings, *_ = pipeline
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        span, worst = con.execute(
            """
            WITH bounds AS (SELECT min(occurred_at) AS t0, max(occurred_at) AS t1 FROM int_consented_events),
            expected AS (
                SELECT e.user_id, e.item_id, sum(e.signal * pow(0.5, date_diff('second', e.occurred_at, b.t1)
                       / (date_diff('second', b.t0, b.t1) * 0.5))) AS weight
                FROM int_consented_events e, bounds b GROUP BY ALL
            )
            SELECT (SELECT date_diff('day', t0, t1) FROM bounds), max(abs(s.weight - x.weight))
            FROM mart_user_item_signals s JOIN expected x USING (user_id, item_id)
            """
        ).fetchone()
    assert span >= 30 and worst < 1e-9


def test_als_beats_popularity_on_planted_preferences(pipeline):
    settings, result, *_ = pipeline
    with psycopg.connect(settings.database_url) as conn:
        metrics = {
            (model, metric): value
            for model, metric, value in conn.execute(
                "SELECT model_name, metric, value FROM personalization_eval WHERE k = 10"
            ).fetchall()
        }
    assert metrics[("popularity", "ndcg")] > 0
    assert metrics[("als", "ndcg")] >= 1.25 * metrics[("popularity", "ndcg")]
    meta = result.metadata["offline_eval"]
    table = {row.data["model"]: row.data for row in meta["metrics"].records}
    assert table["als"]["ndcg"] == round(metrics[("als", "ndcg")], 4)
    ndcg = {model: row["ndcg"] for model, row in table.items() if row["ndcg"] is not None}  # candidates: recall only
    assert meta["best_model"] == max(ndcg, key=ndcg.__getitem__) and meta["best_ndcg@10"] == max(ndcg.values())
    assert [row.data["run_id"] for row in meta["ndcg_over_runs"].records][-1] == result.run_id


def test_the_served_reranked_lists_beat_als_alone_on_planted_data(pipeline):
    settings, result, *_ = pipeline
    with psycopg.connect(settings.database_url) as conn:
        ndcg = dict(conn.execute("SELECT model_name, value FROM personalization_eval WHERE metric = 'ndcg'").fetchall())
        (ranker_version,) = conn.execute(
            "SELECT model_version FROM personalization_models WHERE model_name = 'ranker'"
        ).fetchone()
    assert ndcg["ranker"] > 1.02 * ndcg["als"] and ndcg["ranker"] > 2 * ndcg["popularity"]
    assert set(served_ranks(settings)["model_version"]) == {ranker_version}
    meta = result.metadata["ranker_model"]
    assert meta["best_iteration"] >= 1 and set(meta["feature_importance_gain"]) >= {"als_rank", "ease_rank"}
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        unexplained = con.execute(
            "SELECT count(*) FROM user_rankings r ANTI JOIN rank_rationale t USING (user_id, scope, item_id)"
        ).fetchone()[0]
        recall = con.execute(
            "SELECT value FROM eval_history WHERE model_name = 'candidates' AND metric = 'recall'"
        ).fetchone()[0]
    assert unexplained == 0 and recall > ndcg["ranker"]
    with psycopg.connect(settings.database_url) as conn:
        explained = conn.execute(
            "SELECT r.user_id, r.scope, jsonb_array_length(r.items), jsonb_array_length(t.tags), t.tags -> 0 "
            "FROM personalization_ranks r JOIN personalization_rank_rationale t USING (user_id, scope)"
        ).fetchall()
    assert len(explained) == len(served_ranks(settings))  # every served list is explained, item by item
    assert all(n_items == n_tags and first["rank"] == 1 for _, _, n_items, n_tags, first in explained)
    assert any(tag.startswith("source:") for *_, first in explained for tag in first["tags"])


def test_lookup_over_http_returns_the_published_ranking_and_falls_back(pipeline):
    settings, *_ = pipeline
    served = served_ranks(settings).sort_values(["user_id", "scope"]).iloc[0]
    headers = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, served.user_id)}"}
    with TestClient(create_app(settings.database_url, settings)) as client:
        own = client.get(f"/v1/rankings/{served.scope}?limit=5", headers=headers)
        assert own.status_code == 200
        body = own.json()
        assert body["personalized"] is True and body["user_id"] == served.user_id
        assert body["items"] == served["items"][:5]
        stranger = {"Authorization": f"Bearer {mint_token(settings.jwt_secret, 'never-seen-user')}"}
        fallback = client.get(f"/v1/rankings/{served.scope}?limit=5", headers=stranger).json()
        assert fallback["personalized"] is False and len(fallback["items"]) == 5


def test_run_command_sample_lookup_goes_over_real_http(pipeline):
    settings, *_ = pipeline
    lookup = sample_lookup(settings)
    first = served_ranks(settings).sort_values(["user_id", "scope"]).iloc[0]
    assert lookup is not None
    assert lookup.request == f"GET /v1/rankings/{first.scope}?limit=5 as user {first.user_id} -> 200"
    assert lookup.response["items"] == first["items"][:5] and lookup.response["personalized"] is True


def test_weekly_job_rechecks_and_republishes_from_the_warehouse(pipeline):
    settings, _, env, _ = pipeline
    before = served_ranks(settings)
    env.setenv("PERSONALIZATION_PER_USER_MIN_INTERACTIONS", "12")  # the sample's users have short histories
    env.setenv("PERSONALIZATION_PER_USER_MARGIN_STDERRS", "-100")  # keep them even if they lower held-out NDCG
    env.setenv("PERSONALIZATION_TUNING_MAX_TRIALS", "1")  # tuning keeps the configuration in force
    with duckdb.connect(str(settings.warehouse_path)) as con:  # as an earlier version left it
        con.execute("CREATE TABLE similar_user_candidates AS SELECT 'u1' AS user_id, 'i1' AS item_id")
    try:
        weekly = run_job("weekly")
    finally:
        for name in ("PER_USER_MIN_INTERACTIONS", "PER_USER_MARGIN_STDERRS", "TUNING_MAX_TRIALS"):
            env.delenv(f"PERSONALIZATION_{name}")
    assert weekly.success, weekly.error
    assert weekly.metadata["tuned_settings"]["stopped_by"] == {"als": "trials", "ease": "trials", "ranker": "trials"}
    assert {"user_features", "als_model", "offline_eval", "serving_tables"} <= set(weekly.metadata)
    assert "raw_interactions" not in weekly.metadata  # no re-ingest
    assert weekly.checks["user_features.pii_free"] and weekly.checks["user_rankings.pii_free"]
    after = served_ranks(settings)
    assert after["generated_at"].min() > before["generated_at"].max()
    per_user = weekly.metadata["per_user_models"]
    assert per_user["eligible_users"] >= per_user["models_trained"] >= per_user["models_kept"] > 0
    assert per_user["mean_auc_kept"] >= max(0.70, per_user["mean_global_auc_of_kept_users"])
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        report = con.execute("SELECT * FROM per_user_report").df()
    kept = set(report.loc[report["kept"], "user_id"])
    assert len(kept) == per_user["models_kept"] and (report.loc[report["kept"], "auc"] >= 0.70).all()
    judged = report.dropna(subset=["ndcg"])  # the held-out judgement, refitted without the evaluation holdout
    assert per_user["users_judged_on_ndcg"] == len(judged) > 0
    gain = judged["ndcg"] - judged["global_ndcg"]
    assert per_user["held_out_ndcg_gain"] == pytest.approx(gain.mean(), abs=1e-4)
    assert per_user["held_out_ndcg_gain_stderr"] == pytest.approx(gain.std() / len(gain) ** 0.5, abs=1e-4)
    with psycopg.connect(settings.database_url) as conn:
        (bundle,) = conn.execute(
            "SELECT model_version FROM personalization_models WHERE model_name = 'per_user' AND active"
        ).fetchone()
    own = after[after["user_id"].isin(kept)]
    assert set(own["model_version"]) == {bundle} and bundle == per_user["model_version"]  # rows say who ranked them
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        ranked = con.execute(
            "SELECT count(DISTINCT user_id), count(DISTINCT user_id) FILTER (model_version = ?) FROM user_rankings",
            [bundle],
        ).fetchone()
    assert (
        ranked[1] > 0
        and (weekly.metadata["user_rankings"]["users"], weekly.metadata["user_rankings"]["per_user_models"]) == ranked
    )
    others = after[~after["user_id"].isin(kept)]
    assert (
        others[["user_id", "scope", "items"]]
        .reset_index(drop=True)
        .equals(before[~before["user_id"].isin(kept)][["user_id", "scope", "items"]].reset_index(drop=True))
    )  # everyone else: the same global model on the same inputs
    assert weekly.checks["similar_users.pii_free"]
    similar = weekly.metadata["similar_users"]
    assert similar["subjects"] > 0 and similar["search"] == "exact"
    with psycopg.connect(settings.database_url) as conn:
        pairs = conn.execute(
            "SELECT user_id, similar_user_id, similarity_score, common_attributes FROM personalization_similar_users"
        ).fetchall()
        opted_out = {
            r[0] for r in conn.execute("SELECT user_id FROM personalization_settings WHERE NOT personalization_enabled")
        }
    assert len(pairs) == similar["dagster/row_count"]
    assert all(score >= 0.5 and user != other for user, other, score, _ in pairs)  # default threshold, no self
    assert max(pd.Series([p[0] for p in pairs]).value_counts()) <= 20  # default K
    assert not {u for p in pairs for u in p[:2]} & opted_out  # neither subject nor neighbour
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        categories = {r[0] for r in con.execute("SELECT DISTINCT category FROM stg_items").fetchall()}
        features = con.execute("SELECT user_id, device_type, country, timezone FROM user_features").df()
        tables = {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    allowed = {f"category:{c}" for c in categories} | {
        f"{column}:{value}" for column in ("device_type", "country", "timezone") for value in features[column]
    }
    shared = [attribute for *_, attributes in pairs for attribute in attributes]
    assert shared and set(shared) <= allowed  # only screened categories and generalised feature groups
    assert not any(a.endswith((":other", ":unknown")) for a in shared)
    assert "similar_user_candidates" not in tables  # a stale derivative of the map does not outlive it


def test_bad_input_fails_the_run_and_keeps_the_served_rankings(pipeline, tmp_path):
    settings, _, env, _ = pipeline
    before = served_ranks(settings)
    broken = tmp_path / "raw"
    shutil.copytree(settings.data_dir, broken)
    frame = pd.read_csv(broken / "interactions.csv", dtype=str).drop(columns=["user_id"])
    frame.to_csv(broken / "interactions.csv", index=False)
    env.setenv("PERSONALIZATION_DATA_DIR", str(broken))
    try:
        failed = run_job("nightly")
    finally:
        env.delenv("PERSONALIZATION_DATA_DIR")
    assert not failed.success
    assert "interactions.csv" in failed.error and "'user_id'" in failed.error
    after = served_ranks(settings)
    assert len(after) == len(before)
    assert json.dumps(sorted(after["items"].map(json.dumps))) == json.dumps(sorted(before["items"].map(json.dumps)))
    assert after["generated_at"].max() == before["generated_at"].max()


def test_weekly_tuning_registers_its_best_trial_and_later_runs_train_with_it(pipeline):
    settings, _, env, _ = pipeline
    env.setenv("PERSONALIZATION_TUNING_MAX_TRIALS", "4")
    env.setenv("PERSONALIZATION_ALS_FACTORS", "8")  # set by the operator: never tuned, always used
    try:
        weekly = run_job("weekly")
        assert weekly.success, weekly.error
        nightly = run_job("nightly")
        assert nightly.success, nightly.error
    finally:
        env.delenv("PERSONALIZATION_TUNING_MAX_TRIALS")
        env.delenv("PERSONALIZATION_ALS_FACTORS")
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        trials = con.execute("SELECT * FROM tuning_trials WHERE run_id = ?", [weekly.run_id]).df()
        (tuned,) = con.execute(
            "SELECT params FROM model_registry WHERE model_name = 'tuning' AND run_id = ?", [weekly.run_id]
        ).fetchall()
        params = dict(
            con.execute(
                "SELECT model_name, params FROM model_registry WHERE (run_id = ? AND model_name IN ('als', 'ease')) "
                "OR (run_id = ? AND model_name = 'ranker')",
                [nightly.run_id, weekly.run_id],  # the weekly trains the re-ranker; the nightly reuses it
            ).fetchall()
        )
        chosen = json.loads(tuned[0])
        weights = con.execute("SELECT user_id, item_id, weight FROM mart_user_item_signals ORDER BY ALL").df()
        expected = read_signals_decayed(con, chosen["half_life_days"], chosen["half_life_span_fraction"])
    assert trials.groupby("model_name").size().to_dict() == {"als": 4, "ease": 4, "ranker": 4}
    assert weekly.metadata["ranker_model"]["retrained"] and not nightly.metadata["ranker_model"]["retrained"]
    assert nightly.metadata["ranker_model"]["model_version"] == weekly.metadata["ranker_model"]["model_version"]
    assert nightly.metadata["ranker_model"]["reused_because"].startswith("trained 0.0 days ago")
    for _, rows in trials.groupby("model_name"):
        best = rows.sort_values(["ndcg", "trial"], ascending=[False, True]).iloc[0]
        (picked,) = rows[rows["chosen"]].itertuples()  # the best, or the one in force when not clearly beaten
        assert picked.trial in (best["trial"], 0)
        assert json.loads(picked.settings).items() <= chosen.items()
    assert not any("als_factors" in json.loads(config) for config in trials["settings"])
    assert "als_factors" not in chosen
    als, ease, ranker = (json.loads(params[name]) for name in ("als", "ease", "ranker"))
    assert als["factors"] == 8  # the environment wins
    assert (als["regularization"], als["alpha"]) == (chosen["als_regularization"], chosen["als_alpha"])
    assert (ease["regularization"], ease["sequence_weight"]) == (
        chosen["ease_regularization"],
        chosen["ease_sequence_weight"],
    )
    assert {name: ranker[name] for name in ("num_leaves", "learning_rate", "min_child_samples", "lambda_l2")} == {
        name: chosen[f"ranker_{name}"] for name in ("num_leaves", "learning_rate", "min_child_samples", "lambda_l2")
    }
    merged = weights.merge(expected, on=["user_id", "item_id"], suffixes=("", "_tuned"))
    assert len(merged) == len(weights) and (merged["weight"] - merged["weight_tuned"]).abs().max() < 1e-9


def test_a_runs_setting_overrides_apply_to_that_run_only_and_fixed_ones_are_refused(pipeline):
    settings, *_ = pipeline

    def ranks_per_scope() -> set[int]:
        with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
            return {n for (n,) in con.execute("SELECT count(*) FROM global_rankings GROUP BY scope").fetchall()}

    assert run_job("nightly", assets=["global_rankings"], overrides={"top_n": 3}).success
    assert ranks_per_scope() == {3}
    assert run_job("nightly", assets=["global_rankings"]).success
    assert ranks_per_scope() == {TOP_N}  # the next run is back to the environment's settings
    refused = run_job("nightly", assets=["global_rankings"], overrides={"executor": "celery", "top_m": 3})
    assert not refused.success
    assert "executor: fixed when the definitions load" in refused.error and "top_m: no such setting" in refused.error
