-- Implicit feedback per (user, item): event signals with exponential time decay, measured back
-- from the newest event in the data (a re-run on the same input gives the same weights). The
-- half-life is a number of days (<= 0 turns decay off) or 'auto': a fraction of the data's own
-- time span, so an export spanning years keeps its signal and a recent one favours recent events.
{% set half_life = var('half_life_days') %}
{% set decays = half_life == 'auto' or (half_life | float) > 0 %}
with as_of as (
    select
        max(occurred_at) as t,
        {% if half_life == 'auto' %}
        greatest(date_diff('second', min(occurred_at), max(occurred_at)) / 86400.0
                 * {{ var('half_life_span_fraction') }}, 1.0) as half_life_days
        {% else %}
        {{ half_life | float }} as half_life_days
        {% endif %}
    from {{ ref('int_consented_events') }}
)
select
    e.user_id,
    e.item_id,
    any_value(e.scope) as scope,
    any_value(e.category) as category,
    {% if decays %}
    sum(e.signal * pow(0.5, date_diff('second', e.occurred_at, as_of.t) / 86400.0 / as_of.half_life_days)) as weight,
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
