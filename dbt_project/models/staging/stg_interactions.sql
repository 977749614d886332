{{ config(materialized="view") }}
-- A view: its one reader (int_consented_events) filters as it reads; a stored copy of every event
-- cost a tier L nightly 21 s.
-- Typed, deduplicated interaction events (dedup and typing happen at ingest; columns by allowlist).
select
    cast(user_id as varchar) as user_id,
    cast(item_id as varchar) as item_id,
    cast(occurred_at as timestamp) as occurred_at,
    event_type,
    value,
    session_id,
    device_type
from {{ source('raw', 'raw_interactions') }}
-- events on items withheld by the catalogue screening stay out of every mart and model
where item_id not in (select item_id from {{ source('raw', 'withheld_items') }})
