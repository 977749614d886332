-- Activity per opted-in user: counts, sessions in the last 7 and 30 days, click-through,
-- session length, preferred hour and device (as of the newest event in the data).
with events as (
    select *, coalesce(session_id, user_id || ':' || strftime(occurred_at, '%Y-%m-%d')) as session_key
    from {{ ref('int_consented_events') }}
),
as_of as (select max(occurred_at) as t from events),
sessions as (
    select user_id, session_key, min(occurred_at) as started_at,
           date_diff('second', min(occurred_at), max(occurred_at)) as seconds
    from events group by user_id, session_key
),
hours as (
    select user_id, hour(occurred_at) as h, count(*) as n from events group by user_id, hour(occurred_at)
),
devices as (
    select user_id, device_type, count(*) as n from events where device_type is not null
    group by user_id, device_type
),
per_user_sessions as (
    select
        s.user_id,
        count(*) as n_sessions,
        count(*) filter (where s.started_at > as_of.t - interval 7 day) as sessions_7d,
        count(*) filter (where s.started_at > as_of.t - interval 30 day) as sessions_30d,
        avg(s.seconds) as avg_session_seconds
    from sessions s, as_of
    group by s.user_id
)
select
    e.user_id,
    count(*) as n_events,
    count(distinct e.item_id) as n_items,
    count(*) filter (where e.event_type = 'view') as n_views,
    count(*) filter (where e.event_type = 'click') as n_clicks,
    count(*) filter (where e.event_type in ('accept', 'complete')) as n_accepts,
    count(*) filter (where e.event_type = 'dismiss') as n_dismisses,
    sum(greatest(e.signal, 0)) as engagement_score,
    (select first(h order by n desc, h) from hours where hours.user_id = e.user_id) as preferred_hour,
    (select first(device_type order by n desc, device_type) from devices d where d.user_id = e.user_id)
        as device_type,
    min(e.occurred_at) as first_at,
    max(e.occurred_at) as last_at,
    any_value(p.n_sessions) as n_sessions,
    any_value(p.sessions_7d) as sessions_7d,
    any_value(p.sessions_30d) as sessions_30d,
    any_value(p.avg_session_seconds) as avg_session_seconds
from events e
join per_user_sessions p using (user_id)
group by e.user_id
