"""The publish stages the ranking lists a range of users at a time: ranges that partition the
users, are about the asked size, and let each scan skip the row groups outside it."""

from __future__ import annotations

import re

import duckdb
import pytest

from personalization_pipeline.serving.snapshot import user_ranges

ROWS_PER_USER = 150


@pytest.fixture
def con():
    """A ``user_rankings`` of 4,000 users with quote-bearing ids, stored in user order (as loaded)."""
    with duckdb.connect() as con:
        con.execute(
            "CREATE TABLE user_rankings AS SELECT printf('u''%05d', i // 150) AS user_id, i % 50 AS rank "
            f"FROM range({4000 * ROWS_PER_USER}) t(i) ORDER BY user_id, rank"
        )
        yield con


def test_ranges_partition_the_users_into_slices_of_about_the_asked_rows(con):
    ranges = user_ranges(con, 100_000)
    assert len(ranges) == 6  # boundaries at rows 100k .. 500k of 600k
    sizes = [con.execute(f"SELECT count(*) FROM user_rankings WHERE {r}").fetchone()[0] for r in ranges]
    assert sum(sizes) == 600_000 and all(abs(size - 100_000) <= ROWS_PER_USER for size in sizes)
    owners = con.execute(
        "SELECT max(n) FROM (SELECT user_id, " + " + ".join(f"({r})::INT" for r in ranges) + " AS n FROM user_rankings)"
    ).fetchone()
    assert owners == (1,) and con.execute(
        "SELECT count(*) FROM user_rankings WHERE NOT (" + " OR ".join(f"({r})" for r in ranges) + ")"
    ).fetchone() == (0,)


def test_a_range_scan_reads_only_its_row_groups(con):
    middle = user_ranges(con, 100_000)[2]
    plan = con.execute(f"EXPLAIN ANALYZE SELECT count(*) FROM user_rankings WHERE {middle}").fetchall()[0][1]
    scanned, total = map(int, re.search(r"Row Groups Scanned: (\d+) / (\d+)", plan).groups())
    assert total >= 5 and scanned <= 2  # a hash of the id reads every row group


def test_fewer_rows_than_a_slice_make_one_range_of_everyone(con):
    assert user_ranges(con, 10_000_000) == ["true"]
