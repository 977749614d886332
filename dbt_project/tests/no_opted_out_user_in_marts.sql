{{ config(meta={'dagster': {'ref': {'name': 'mart_user_item_signals'}}}) }}
-- Opted-out users must not appear in any mart.
select s.user_id
from {{ ref('stg_settings') }} s
where not s.personalization_enabled
  and (
    s.user_id in (select user_id from {{ ref('mart_user_item_signals') }})
    or s.user_id in (select user_id from {{ ref('mart_user_activity') }})
    or s.user_id in (select user_id from {{ ref('mart_experiment_outcomes') }})
  )
