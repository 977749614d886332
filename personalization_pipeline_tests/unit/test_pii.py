"""PII patterns, raw PII values of the users file, and masking."""

from __future__ import annotations

import pytest

from personalization_pipeline.ingest import load_mapping
from personalization_pipeline.privacy.pii import (
    collect_raw_pii,
    is_identifying,
    mask,
    normalise,
    pii_kinds,
)

FOUND = [
    ("omar.haddad312@example.com", "email"),
    ("write to A.B+news@mail.example.co.uk!", "email"),
    ("ｊｏｈｎ＠example.com", "email"),  # full-width look-alikes, folded by NFKC
    ("+1 865951230", "phone"),
    ("+44 20 7946 0958", "phone"),
    ("+49 (0)30 1234567", "phone"),
    ("+4915112345678", "phone"),
    ("0044 20 7946 0958", "phone"),
    ("(202) 555-0143", "phone"),
    ("call 202.555.0143 today", "phone"),
    ("020 7946 0958", "phone"),
    ("06 12 34 56 78", "phone"),
    ("030/1234567", "phone"),
    ("71.86.243.211", "ipv4"),
    ("from 192.168.0.1:8080", "ipv4"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ipv6"),
    ("2001:db8::1", "ipv6"),
    ("FE80::1FF:FE23:4567:890A", "ipv6"),
    ("::1", "ipv6"),
]

CLEAN = [
    "34",
    "57028",
    "1700000000",
    "1700000000000",
    "0612345678",
    "0000012345",
    "-300",  # plain integers
    "2024-01-15",
    "2024-01-15T10:30:00Z",
    "2024-06-01 12:00:00.123456",
    "1962-12-28",  # ISO dates
    "06.12.2024",
    "06.12.2024 10:30",
    "01/15/2024",
    "12:30:45",  # other dates and times
    "u0000123",
    "i000123",
    "u0000000-s0000",  # ids
    "0.123456789",
    "12.5",
    "-0.000123",
    "1234.5678",
    "1e-05",
    "+1.5",  # scores
    "1.2.3",
    "v1.2.3.4",
    "1.2.3.4.5",
    "std::vector",
    "00:1a:2b:3c:4d:5e",
    "16:9",
    "a@b",
    "@handle",
    "Urban Garden Story",
    "Top 100 Songs of 1999-2000",
    "ISBN 978-3-16-148410-0",
    "123e4567-e89b-12d3-a456-426614174000",
]


@pytest.mark.parametrize(("text", "kind"), FOUND)
def test_patterns_find_personal_data(text, kind):
    assert pii_kinds(text) == [kind]


@pytest.mark.parametrize("text", CLEAN)
def test_patterns_leave_numbers_dates_ids_and_scores_alone(text):
    assert pii_kinds(text) == []


def test_normalise_folds_case_width_and_whitespace():
    assert normalise("  Omar\t HADDAD \n") == "omar haddad"
    assert normalise("ＯＭＡＲ") == "omar"


def test_mask_keeps_only_a_hint():
    assert mask("Ana.Costa77@Example.com") == "a***@example.com"
    assert mask("Omar Haddad") == "o***"
    assert mask("+1 865951230") == "+***"
    assert mask("ab") == "***"


@pytest.mark.parametrize(
    ("value", "holders", "expected"),
    [
        ("ana.costa77@example.com", 1, True),
        ("omar haddad", 1, True),
        ("+1 865951230", 1, True),
        ("1962-12-28", 1, True),  # 8 digits: a birth date
        ("57028-1234", 1, True),  # ZIP+4: 9 digits
        ("34", 1, False),  # an age: short number, like any count
        ("57028", 1, False),  # a postal code: short number
        ("f", 1, False),  # too short to identify anyone
        ("other", 1, False),  # the pipeline's own generalisation token
        ("nurse", 10, False),  # held by k rows: an attribute of a crowd
        ("nurse", 9, True),
    ],
)
def test_which_raw_values_identify(value, holders, expected):
    assert is_identifying(value, holders, k=10) is expected


@pytest.fixture
def odd_users(tmp_path):
    """A users export with its own column names, mapped onto the contract."""
    (tmp_path / "people.csv").write_text(
        "uid,signup,device,login,e_mail,dob,zip,sex,job,age\n"
        "user-0001,2024-01-01,mobile,user-0001,Ana.Costa@example.com,1990-04-02,57028,F,nurse,34\n"
        "user-0002,2024-01-02,desktop,user-0002,omar.h@example.org,1985-11-30,10115,M,nurse,41\n"
        "user-0003,2024-01-03,mobile,user-0003,lina@example.net,1979-01-15,75001,F,nurse,34\n"
        "user-0004,2024-01-04,tablet,user-0004,kai.ito@example.com,2001-07-07,75001,X,astronaut,22\n"
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "users:\n  file: people.csv\n  columns: {uid: user_id, signup: signup_at, device: device_type}\n"
    )
    return tmp_path, load_mapping(mapping)


def test_raw_values_come_from_every_dropped_column_after_mapping(odd_users):
    data_dir, mapping = odd_users
    raw = collect_raw_pii(data_dir, mapping, k=3)
    assert raw.source == data_dir / "people.csv"
    assert raw.columns == ("login", "e_mail", "dob", "zip", "sex", "job", "age")
    assert raw.values == {
        "ana.costa@example.com",
        "omar.h@example.org",
        "lina@example.net",
        "kai.ito@example.com",
        "1990-04-02",
        "1985-11-30",
        "1979-01-15",
        "2001-07-07",
        "astronaut",  # 'nurse' is held by 3 rows (k): not identifying
    }  # no ages or postal codes (short numbers), no 'f'/'m'/'x', no copies of user ids ('login')
    assert normalise("  ANA.COSTA@example.com ") in raw.values and normalise("ana.costa") not in raw.values
    assert "example" not in repr(raw)


def test_mapped_columns_are_not_raw_pii(odd_users):
    data_dir, _mapping = odd_users
    (data_dir / "remap.yaml").write_text("users:\n  file: people.csv\n  columns: {e_mail: user_id}\n")
    raw = collect_raw_pii(data_dir, load_mapping(data_dir / "remap.yaml"), k=3)
    assert "e_mail" not in raw.columns and "uid" in raw.columns
    assert "ana.costa@example.com" not in raw.values  # now the user id: published by design


def test_no_users_file_means_no_raw_values(tmp_path):
    raw = collect_raw_pii(tmp_path, {}, k=10)
    assert raw.source is None and raw.columns == () and not raw.values
