"""The serving tables as SQLAlchemy Core definitions: the schema the migrations build.

``integration/test_serving_migrations.py`` compares a freshly migrated database with this
metadata (Alembic's autogenerate comparison), so a migration that changes a table must change
it here too; ``alembic revision --autogenerate`` starts a new migration from the difference.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData()

_NOW = sa.text("now()")
_EMPTY_ARRAY = sa.text("'[]'::jsonb")
_EMPTY_OBJECT = sa.text("'{}'::jsonb")


def _stamp(name: str, *, default: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=_NOW if default else None)


def _key(*names: str) -> list[sa.Column]:
    return [sa.Column(name, sa.Text, primary_key=True) for name in names]


def _ranked_list() -> list[sa.Column]:
    """The columns of a served list: the items document, its model and its validity."""
    return [
        sa.Column("items", JSONB, sa.CheckConstraint("jsonb_typeof(items) = 'array'"), nullable=False),
        sa.Column("model_version", sa.Text, nullable=False),
        sa.Column("variant", sa.Text),
        _stamp("generated_at"),
        _stamp("valid_until"),
    ]


ranks = sa.Table(
    "personalization_ranks",
    metadata,
    *_key("user_id", "scope"),
    *_ranked_list(),
    sa.Column("experiment", sa.Text),
    sa.Index("personalization_ranks_valid_until_idx", "valid_until"),
)

global_ranks = sa.Table(
    "personalization_global_ranks",
    metadata,
    *_key("scope"),
    *_ranked_list(),
)

rank_rationale = sa.Table(
    "personalization_rank_rationale",
    metadata,
    *_key("user_id", "scope"),
    sa.Column("tags", JSONB, nullable=False),
    _stamp("generated_at", default=True),
)

features = sa.Table(
    "personalization_features",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("features", JSONB, nullable=False),
    _stamp("computed_at"),
    sa.Index("personalization_features_computed_at_idx", "computed_at"),
)

similar_users = sa.Table(
    "personalization_similar_users",
    metadata,
    *_key("user_id", "similar_user_id"),
    sa.Column("similarity_score", sa.Double, nullable=False),
    sa.Column("common_attributes", JSONB, nullable=False, server_default=_EMPTY_ARRAY),
    _stamp("calculated_at"),
)

models = sa.Table(
    "personalization_models",
    metadata,
    *_key("model_name", "model_version"),
    sa.Column("metrics", JSONB, nullable=False, server_default=_EMPTY_OBJECT),
    _stamp("trained_at"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("kind", sa.Text),
    sa.Column("params", JSONB, nullable=False, server_default=_EMPTY_OBJECT),
    sa.Index("personalization_models_one_active_idx", "model_name", unique=True, postgresql_where=sa.text("active")),
)

evaluation = sa.Table(
    "personalization_eval",
    metadata,
    *_key("run_id", "model_name", "metric"),
    sa.Column("k", sa.Integer, primary_key=True),
    sa.Column("value", sa.Double),
    _stamp("computed_at"),
    sa.Column("model_version", sa.Text),
    sa.Index("personalization_eval_computed_at_idx", "computed_at"),
)

settings = sa.Table(
    "personalization_settings",
    metadata,
    sa.Column("user_id", sa.Text, primary_key=True),
    sa.Column("personalization_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("data_sharing_consent", sa.Boolean),
    _stamp("updated_at", default=True),
)

experiments = sa.Table(
    "personalization_experiments",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("hypothesis", sa.Text, nullable=False, server_default=""),
    sa.Column("variants", JSONB, sa.CheckConstraint("jsonb_typeof(variants) = 'array'"), nullable=False),
    sa.Column("success_metric", sa.Text, nullable=False),
    sa.Column("min_sample_size", sa.Integer, nullable=False),
    sa.Column("min_lift", sa.Double, nullable=False),
    _stamp("starts_at"),
    sa.Column("ends_at", sa.DateTime(timezone=True)),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("salt", sa.Text, nullable=False),
    _stamp("created_at", default=True),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Index("personalization_experiments_one_active_idx", "active", unique=True, postgresql_where=sa.text("active")),
)

experiment_assignments = sa.Table(
    "personalization_experiment_assignments",
    metadata,
    *_key("user_id", "name"),
    sa.Column("variant", sa.Text, nullable=False),
    _stamp("assigned_at", default=True),
)

experiment_exposures = sa.Table(
    "personalization_experiment_exposures",
    metadata,
    *_key("name", "user_id"),
    sa.Column("variant", sa.Text, nullable=False),
    _stamp("first_served_at"),
    _stamp("last_served_at"),
    sa.Column("last_valid_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("publishes", sa.Integer, nullable=False),
)

experiment_results = sa.Table(
    "personalization_experiment_results",
    metadata,
    *_key("name", "variant"),
    sa.Column("ranking", sa.Text, nullable=False),
    sa.Column("sample_size", sa.Integer, nullable=False),
    *(
        sa.Column(rate, sa.Double)
        for rate in ("acceptance_rate", "completion_rate", "engagement_rate", "dismissal_rate")
    ),
    sa.Column("metric", sa.Text, nullable=False),
    sa.Column("lift", sa.Double),
    sa.Column("lift_low", sa.Double),
    sa.Column("lift_high", sa.Double),
    sa.Column("p_value", sa.Double),
    sa.Column("verdict", sa.Text, nullable=False),
    _stamp("computed_at"),
)
