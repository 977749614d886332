-- One row per experiment and exposed opted-in user: the variant served and whether the user
-- accepted, completed, engaged with (view, click, accept, complete) or dismissed anything from the
-- first served list until the attribution window after the last one ended.
{% set window_hours = var('attribution_window_hours') %}
with exposures as (
    select x.experiment, x.user_id, x.variant, x.first_served_at,
           x.last_served_at + to_hours(cast({{ window_hours }} as bigint)) as attributed_until
    from {{ source('raw', 'experiment_exposures') }} x
    join {{ ref('stg_settings') }} s using (user_id)
    where s.personalization_enabled
),
attributed as (
    select x.experiment, x.user_id, e.event_type
    from exposures x
    join {{ ref('int_consented_events') }} e
      on e.user_id = x.user_id and e.occurred_at >= x.first_served_at and e.occurred_at < x.attributed_until
)
select
    x.experiment, x.user_id, x.variant, x.first_served_at, x.attributed_until,
    coalesce(bool_or(a.event_type = 'accept'), false) as accepted,
    coalesce(bool_or(a.event_type = 'complete'), false) as completed,
    coalesce(bool_or(a.event_type in ('view', 'click', 'accept', 'complete')), false) as engaged,
    coalesce(bool_or(a.event_type = 'dismiss'), false) as dismissed,
    count(a.event_type) as attributed_events
from exposures x
left join attributed a using (experiment, user_id)
group by all
