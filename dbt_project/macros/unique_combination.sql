{% test unique_combination(model, columns) %}
-- Rows whose combination of `columns` is not unique (no hub package needed).
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
