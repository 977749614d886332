-- One consent row per known user: personalization on unless a setting says otherwise,
-- data sharing off unless a setting says otherwise.
select
    u.user_id,
    coalesce(s.personalization_enabled, true) as personalization_enabled,
    coalesce(s.data_sharing_consent, false) as data_sharing_consent,
    s.updated_at
from (
    select user_id from {{ ref('stg_users') }}
    union
    select user_id from {{ source('raw', 'raw_settings') }}
) u
left join {{ source('raw', 'raw_settings') }} s using (user_id)
