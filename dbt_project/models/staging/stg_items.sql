-- Catalog: the items file, plus items seen only in interactions (scope 'default'), without the
-- items the catalogue screening withheld from this run.
with listed as (
    select item_id, scope, category, created_at, approved_at, title
    from {{ source('raw', 'raw_items') }}
),
derived as (
    select distinct item_id
    from {{ source('raw', 'raw_interactions') }}
    where item_id not in (select item_id from listed)
)
select * from (
    select * from listed
    union all
    select item_id, 'default' as scope, null as category, null as created_at, null as approved_at, null as title
    from derived
)
where item_id not in (select item_id from {{ source('raw', 'withheld_items') }})
