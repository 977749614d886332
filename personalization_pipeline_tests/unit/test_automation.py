"""Schedules' default status and the raw-file sensor: first look, landed files, files still being written."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest

from personalization_pipeline.config import Settings
from personalization_pipeline.definitions import build_definitions
from personalization_pipeline.ingest.arrivals import find_arrivals


def _write(path: Path, text: str, age_seconds: float) -> None:
    path.write_text(text)
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))


def test_arrivals_first_look_records_then_new_settled_files_land(tmp_path):
    _write(tmp_path / "interactions.csv", "a", 600)
    first = find_arrivals(tmp_path, None, time.time())
    assert first.landed == [] and first.state is not None and set(first.state) == {"interactions.csv"}
    cursor = json.dumps(first.state)
    assert find_arrivals(tmp_path, cursor, time.time()).state is None  # nothing new: keep the cursor
    _write(tmp_path / "interactions.csv", "ab", 5)  # replaced, still being written
    _write(tmp_path / ".partial", "x", 600)  # hidden files are ignored
    waiting = find_arrivals(tmp_path, cursor, time.time())
    assert waiting.waiting == ["interactions.csv"] and waiting.landed == [] and waiting.state is None
    landed = find_arrivals(tmp_path, cursor, time.time() + 60)
    assert landed.landed == ["interactions.csv"] and landed.state is not None
    assert landed.run_key == find_arrivals(tmp_path, cursor, time.time() + 60).run_key  # one run per state


@pytest.mark.parametrize("running", [False, True])
def test_schedules_and_sensor_default_status_follow_the_settings(monkeypatch, tmp_path, running):
    monkeypatch.setenv("PERSONALIZATION_SCHEDULES_RUNNING", str(running).lower())
    monkeypatch.setenv("PERSONALIZATION_RAW_FILE_SENSOR", str(running).lower())
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    defs = build_definitions()
    schedules = list(defs.schedules or [])
    assert {s.job_name for s in schedules} == {"nightly", "weekly", "cleanup"}
    expected = dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
    assert all(s.default_status == expected for s in schedules)
    sensor = defs.resolve_sensor_def("raw_files")
    assert sensor.default_status == (dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED)


def test_the_sensor_starts_the_nightly_job_once_per_landed_state(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSONALIZATION_DATA_DIR", str(tmp_path))
    sensor = build_definitions().resolve_sensor_def("raw_files")
    assert Settings.from_env().data_dir == tmp_path
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance))
        assert not first.run_requests and first.cursor == "{}"  # empty directory recorded
        _write(tmp_path / "interactions.csv", "user_id,item_id\n", 120)
        landed = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        (request,) = landed.run_requests
        assert request.job_name in (None, "nightly") and request.tags["raw_files"] == "interactions.csv"
        again = sensor(dg.build_sensor_context(instance=instance, cursor=landed.cursor))
        assert not again.run_requests
