{{ config(materialized="view") }}
-- A view: each mart joins as it reads, cheaper than storing every consented event (31 s at tier L).
-- Events of opted-in users only, with item scope and category and the event's signal.
-- Opted-out users' events never reach any feature or model.
{% set weights = var('event_weights') %}
{% set mid = var('rating_midpoint') %}
with weighted as (
    select
        e.user_id, e.item_id, i.scope, i.category, e.occurred_at, e.event_type, e.value,
        e.session_id, e.device_type,
        case e.event_type
            {% for name, weight in weights.items() %}when '{{ name }}' then {{ weight }}
            {% endfor %}else {{ var('other_event_weight') }}
        end as base_weight
    from {{ ref('stg_interactions') }} e
    join {{ ref('stg_items') }} i using (item_id)
    join {{ ref('stg_settings') }} s using (user_id)
    where s.personalization_enabled
)
select
    *,
    case
        when event_type = 'rate' and value is not null then base_weight * (value - {{ mid }}) / {{ mid }}
        when event_type = 'time_spent' and value is not null
            then base_weight * least(value / {{ var('time_spent_full_seconds') }}, 1.0)
        else base_weight
    end as signal
from weighted
