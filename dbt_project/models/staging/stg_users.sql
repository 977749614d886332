-- Users by allowlist (no PII column is selected), plus users seen only in interactions.
with listed as (
    select user_id, signup_at, country_code, timezone_offset, device_type
    from {{ source('raw', 'raw_users') }}
),
derived as (
    select distinct user_id
    from {{ source('raw', 'raw_interactions') }}
    where user_id not in (select user_id from listed)
)
select * from listed
union all
select user_id, null as signup_at, null as country_code, null as timezone_offset, null as device_type
from derived
