-- Implicit feedback per (user, item): event signals with exponential time decay
-- (half-life in days, measured back from the newest event in the data, so a re-run on
-- the same input gives the same weights; a half-life <= 0 turns decay off).
{% set half_life = var('half_life_days') | float %}
with as_of as (
    select max(occurred_at) as t from {{ ref('int_consented_events') }}
)
select
    e.user_id,
    e.item_id,
    any_value(e.scope) as scope,
    any_value(e.category) as category,
    {% if half_life > 0 %}
    sum(e.signal * pow(0.5, date_diff('second', e.occurred_at, as_of.t) / 86400.0 / {{ half_life }})) as weight,
    {% else %}
    sum(e.signal) as weight,
    {% endif %}
    count(*) as n_events,
    count(*) filter (where e.event_type = 'dismiss') as n_dismiss,
    count(*) filter (where e.event_type in ('accept', 'complete')) as n_accept,
    min(e.occurred_at) as first_at,
    max(e.occurred_at) as last_at
from {{ ref('int_consented_events') }} e, as_of
group by e.user_id, e.item_id
