"""The admin explanation of a served ranking: a SECURITY DEFINER function, the only way to rationale tags.

It runs as the tables' owner, so the API role needs no privilege on the rationale table: only
``EXECUTE`` on the function (granted by ``schema.ensure_schema``, as every grant to that role).
It refuses any caller but an admin one, and returns what the ranking read would serve (valid,
not opted out), each item joined with its tags (``[]`` when none was published).

Revision ID: 0003
Revises: 0002
"""

from personalization_pipeline.serving.migrations.functions import create_function, drop_function

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SIGNATURE = "personalization_rank_explanation(text, text, integer)"

CREATE = """CREATE OR REPLACE FUNCTION personalization_rank_explanation(
        for_user text, for_scope text, max_items integer)
    RETURNS TABLE (model_version text, generated_at timestamptz, valid_until timestamptz, rank integer,
                   item_id text, score double precision, tags jsonb)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = {search_path}
AS $$
BEGIN
    IF coalesce(current_setting('personalization.role', true), '') NOT IN ('admin', 'superadmin') THEN
        RAISE EXCEPTION 'only an admin caller may read ranking rationale' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN QUERY
    SELECT r.model_version, r.generated_at, r.valid_until, i.place::integer, i.item ->> 'id',
           (i.item ->> 'score')::double precision,
           coalesce(jsonb_path_query_first(x.tags, '$[*] ? (@.id == $id).tags',
                                           jsonb_build_object('id', i.item -> 'id')), '[]'::jsonb)
    FROM personalization_ranks AS r
    CROSS JOIN LATERAL jsonb_array_elements(r.items) WITH ORDINALITY AS i (item, place)
    LEFT JOIN personalization_rank_rationale AS x ON x.user_id = r.user_id AND x.scope = r.scope
    WHERE r.user_id = for_user AND r.scope = for_scope AND r.valid_until > now() AND i.place <= max_items
      AND NOT EXISTS (
          SELECT 1 FROM personalization_settings AS s
          WHERE s.user_id = r.user_id AND NOT s.personalization_enabled)
    ORDER BY i.place;
END
$$"""


def upgrade() -> None:
    create_function(CREATE, SIGNATURE)


def downgrade() -> None:
    drop_function(SIGNATURE)
