"""Consent that fails closed: one settings row per user, opted out whenever the input is in doubt.

Rules, applied at ingest to the checked rows of the settings file (DuckDB temp table
``checked``, see :mod:`ingest.validation`) and then to the serving database's rows:

* A row whose ``personalization_enabled``, ``data_sharing_consent`` or ``updated_at`` cannot
  be read opts its user out (both flags false) for this run: ``fail_closed = 'unreadable'``.
  The row stays in the quarantine table as evidence and is never written to the serving
  database, so fixing the file re-enables the user on the next run.
* Of a user's readable rows the latest ``updated_at`` wins (rows without one lose to rows
  with one). When several rows tie for latest and disagree (the same user written twice,
  e.g. ``52`` and ``52.0``), every flag is the AND of theirs: ``fail_closed = 'conflicting'``.
* The serving database's rows win over the file (users change their settings there),
  except that a fail-closed opt-out always stands. Database rows whose ids canonicalise to
  the same user are combined with AND as well.
"""

from __future__ import annotations

from .. import ids
from ..ingest.validation import SETTINGS_FAIL_CLOSED

UNREADABLE = "unreadable"
CONFLICTING = "conflicting"

RAW_SETTINGS_COLUMNS = ("user_id", "personalization_enabled", "data_sharing_consent", "updated_at", "fail_closed")

_FAIL_CLOSED_LIST = ", ".join(f"'{reason}'" for reason in SETTINGS_FAIL_CLOSED)

RESOLVE_FILE_SQL = f"""
CREATE OR REPLACE TABLE raw_settings AS
WITH readable AS (
    SELECT user_id, personalization_enabled, data_sharing_consent, updated_at
    FROM checked WHERE reason IS NULL OR reason = 'superseded_setting'
), latest AS (
    SELECT r.* FROM readable r
    WHERE r.updated_at IS NOT DISTINCT FROM (SELECT max(x.updated_at) FROM readable x WHERE x.user_id = r.user_id)
), resolved AS (
    SELECT user_id,
           bool_and(personalization_enabled) AS personalization_enabled,
           bool_and(data_sharing_consent) AS data_sharing_consent,
           max(updated_at) AS updated_at,
           CASE WHEN count(DISTINCT personalization_enabled) > 1 OR count(DISTINCT data_sharing_consent) > 1
                THEN '{CONFLICTING}' END AS fail_closed
    FROM latest GROUP BY user_id
), unreadable AS (
    SELECT DISTINCT user_id FROM checked WHERE reason IN ({_FAIL_CLOSED_LIST})
)
SELECT user_id, personalization_enabled, data_sharing_consent, updated_at, fail_closed
FROM resolved WHERE user_id NOT IN (SELECT user_id FROM unreadable)
UNION ALL
SELECT user_id, false, false, NULL::TIMESTAMP, '{UNREADABLE}' FROM unreadable
ORDER BY user_id
"""
"""Replace ``raw_settings`` by one resolved row per user of the settings file."""

APPLY_DATABASE_SQL = f"""
CREATE OR REPLACE TABLE raw_settings AS
WITH db AS (
    SELECT canonical_id(CAST(user_id AS VARCHAR)) AS user_id,
           bool_and(personalization_enabled) AS personalization_enabled,
           bool_and(data_sharing_consent) AS data_sharing_consent,
           max(CAST(updated_at AS TIMESTAMP)) AS updated_at
    FROM settings_override_df
    WHERE length(canonical_id(CAST(user_id AS VARCHAR))) <= {ids.MAX_ID_LENGTH}
    GROUP BY 1
)
SELECT f.* FROM raw_settings f
WHERE f.fail_closed IS NOT NULL OR f.user_id NOT IN (SELECT user_id FROM db)
UNION ALL
SELECT db.*, NULL AS fail_closed FROM db
WHERE db.user_id NOT IN (SELECT user_id FROM raw_settings WHERE fail_closed IS NOT NULL)
ORDER BY user_id
"""
"""Overlay the serving database's settings (registered as ``settings_override_df``) on ``raw_settings``."""
