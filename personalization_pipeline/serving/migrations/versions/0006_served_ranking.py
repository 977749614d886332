"""The rankings read as one statement: a function that names its caller, then reads as that caller.

``personalization_served_ranking`` runs with the rights of whoever calls it (SECURITY INVOKER):
called by the API role, row-level security still limits it to the rows of the caller it names.
It names that caller with transaction-local settings, as the endpoint did in a statement of its
own before, so the read is one statement on the endpoint's autocommit connections and the caller
is gone when it ends. It returns what the rankings read serves: the caller's valid ranking unless
opted out, else the scope's global one, cut to ``max_items`` items of id, score and confidence,
written as the response document (times in UTC); NULL for a scope without a global ranking
(``lookup.fetch_ranking_json``).

Revision ID: 0006
Revises: 0005
"""

from personalization_pipeline.serving.migrations.functions import create_function, drop_function

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SIGNATURE = "personalization_served_ranking(text, text, text, text, integer)"

CREATE = """CREATE OR REPLACE FUNCTION personalization_served_ranking(
        caller_user text, caller_role text, for_user text, for_scope text, max_items integer)
    RETURNS text
    LANGUAGE plpgsql VOLATILE SECURITY INVOKER SET search_path = {search_path}
AS $$
DECLARE
    served record;
    personalized boolean := true;
BEGIN
    PERFORM set_config('personalization.user_id', caller_user, true),
            set_config('personalization.role', caller_role, true);
    SELECT r.items, r.model_version, r.experiment, r.variant, r.generated_at, r.valid_until INTO served
    FROM personalization_ranks AS r
    WHERE r.user_id = for_user AND r.scope = for_scope AND r.valid_until > now()
      AND NOT EXISTS (
          SELECT 1 FROM personalization_settings AS s
          WHERE s.user_id = r.user_id AND NOT s.personalization_enabled);
    IF NOT FOUND THEN  -- the global ranking is read only when the user's own is not served
        personalized := false;
        SELECT g.items, g.model_version, NULL::text AS experiment, NULL::text AS variant, g.generated_at,
               g.valid_until INTO served
        FROM personalization_global_ranks AS g
        WHERE g.scope = for_scope;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    RETURN json_build_object(
        'user_id', for_user, 'scope', for_scope,
        'items', (SELECT coalesce(json_agg(json_build_object('id', item ->> 'id', 'score', item -> 'score',
                                                             'confidence', item -> 'confidence')
                                           ORDER BY position), '[]')
                  FROM jsonb_path_query(served.items, '$[0 to $last]', jsonb_build_object('last', max_items - 1))
                       WITH ORDINALITY AS listed (item, position)),
        'personalized', personalized, 'model_version', served.model_version,
        'experiment', served.experiment, 'variant', served.variant,
        'generated_at', to_char(served.generated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        'valid_until', to_char(served.valid_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))::text;
END
$$"""


def upgrade() -> None:
    create_function(CREATE, SIGNATURE)


def downgrade() -> None:
    drop_function(SIGNATURE)
