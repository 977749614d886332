-- Item popularity over opted-in users: distinct users with positive signal and total positive weight.
select
    i.item_id,
    i.scope,
    i.category,
    coalesce(count(distinct s.user_id) filter (where s.weight > 0), 0) as n_users,
    coalesce(sum(s.weight) filter (where s.weight > 0), 0) as weight,
    coalesce(sum(s.n_events), 0) as n_events
from {{ ref('stg_items') }} i
left join {{ ref('mart_user_item_signals') }} s using (item_id)
group by i.item_id, i.scope, i.category
