"""Request and response bodies of the lookup API (they define the OpenAPI schema: every field is
described and every body has an example)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool

from personalization_pipeline.experiments.definition import EXAMPLE, ExperimentSpec

_GENERATED_AT = "2026-12-03T02:14:07.512034Z"
_VALID_UNTIL = "2026-12-04T02:14:07.512034Z"


def _example(**fields: JsonValue) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [fields]})


class ErrorBody(BaseModel):
    """Every error response: a short machine code and a human-readable message."""

    model_config = _example(error="forbidden", detail="role 'client' may only read its own rankings")

    error: str = Field(
        description="Machine-readable code: the HTTP status phrase in snake case, or `validation_error`."
    )
    detail: str = Field(description="What went wrong, for a human.")


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the problem is: `path`, `query` or `body`, then the field.")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(description="Pydantic's error type.")


class ValidationErrorBody(ErrorBody):
    """A request that does not validate (path, query or body, malformed JSON included): one entry per problem."""

    model_config = _example(
        error="validation_error",
        detail="query.limit: Input should be less than or equal to 100",
        errors=[
            {"loc": ["query", "limit"], "msg": "Input should be less than or equal to 100", "type": "less_than_equal"}
        ],
    )

    errors: list[FieldError] = Field(description="One entry per problem.")


class RankedItem(BaseModel):
    id: str = Field(description="Catalogue item id.")
    score: float = Field(
        description="The ranking model's score: orders the list, comparable only within one list and model version."
    )
    confidence: float = Field(
        ge=0,
        le=1,
        description="How much to trust the item's place, 0-1: its score relative to the list's first item, damped"
        " for users with little history (global lists: the relative score alone).",
    )


class RankingBody(BaseModel):
    """A ranking read; ``personalized`` is false for the scope's global fallback."""

    model_config = _example(
        user_id="u1042",
        scope="news",
        items=[
            {"id": "item-8812", "score": 1.734521, "confidence": 0.7692},
            {"id": "item-0417", "score": 1.52094, "confidence": 0.6745},
        ],
        personalized=True,
        model_version="als-f21374ccc829",
        experiment="rerank-vs-als",
        variant="control",
        generated_at=_GENERATED_AT,
        valid_until=_VALID_UNTIL,
    )

    user_id: str = Field(description="The user the ranking is for (canonical id).")
    scope: str = Field(description="The catalogue scope ranked (lower case).")
    items: list[RankedItem] = Field(description="Best first, at most `limit`; seen items are never listed.")
    personalized: bool = Field(
        description="False when the user has no current personal ranking (new, opted out or expired) and the"
        " scope's global ranking is served instead."
    )
    model_version: str = Field(description="Version of the model that ranked this list.")
    experiment: str | None = Field(description="The A/B experiment the user was served in; null outside any.")
    variant: str | None = Field(description="The experiment's variant this list was ranked for; null outside any.")
    generated_at: datetime = Field(description="When the list was published (UTC).")
    valid_until: datetime = Field(
        description="When a personal list stops being served (UTC); a global list is served until replaced."
    )


class ExplainedItem(BaseModel):
    rank: int = Field(ge=1, description="1-based position in the served list.")
    item_id: str = Field(description="Catalogue item id.")
    score: float = Field(description="The score it was ranked by.")
    tags: list[str] = Field(description="Internal rationale: the candidate sources and boosts that placed the item.")


class ExplanationBody(BaseModel):
    """A user's served personalized ranking with each item's internal rationale tags (admins only)."""

    model_config = _example(
        user_id="u1042",
        scope="news",
        model_version="ranker-5b0e1f2a9c31",
        generated_at=_GENERATED_AT,
        valid_until=_VALID_UNTIL,
        items=[{"rank": 1, "item_id": "item-8812", "score": 0.9132, "tags": ["source:als", "source:similar_users"]}],
    )

    user_id: str = Field(description="The user the ranking is for.")
    scope: str = Field(description="The catalogue scope ranked.")
    model_version: str = Field(description="Version of the model that ranked this list.")
    generated_at: datetime = Field(description="When the list was published (UTC).")
    valid_until: datetime = Field(description="When the list stops being served (UTC).")
    items: list[ExplainedItem] = Field(description="Best first, at most `limit`.")


class EvalMetric(BaseModel):
    model_name: str = Field(description="Model or list evaluated (e.g. `als`, `popularity`, `served`).")
    metric: str = Field(description="`precision`, `recall`, `ndcg`, `map` or `coverage`, among others.")
    k: int = Field(description="Cut-off of the list the metric reads.")
    value: float | None = Field(description="The metric's value; null when it could not be computed.")


class MetricsBody(BaseModel):
    """The latest offline evaluation run."""

    model_config = _example(
        run_id="f48ecbf3-9acd-47e5-b40d-493e6ac856e8",
        computed_at=_GENERATED_AT,
        metrics=[{"model_name": "als", "metric": "ndcg", "k": 10, "value": 0.4210}],
    )

    run_id: str = Field(description="The Dagster run that computed the metrics.")
    computed_at: datetime = Field(description="When they were computed (UTC).")
    metrics: list[EvalMetric] = Field(description="One entry per model, metric and cut-off.")


class SettingsBody(BaseModel):
    model_config = _example(
        user_id="u1042", personalization_enabled=False, data_sharing_consent=True, updated_at=_GENERATED_AT
    )

    user_id: str = Field(description="The token's user.")
    personalization_enabled: bool = Field(
        description="False once the user opted out: no personal ranking is served, and the next run drops the"
        " user's data from features, models and maps."
    )
    data_sharing_consent: bool | None = Field(description="The user's data-sharing consent; null when never given.")
    updated_at: datetime | None = Field(description="When the settings last changed (UTC); null when never set.")


class SettingsUpdate(BaseModel):
    """New opt-out flag; ``data_sharing_consent`` left out (or null) keeps the stored value.

    JSON booleans only (no ``"true"``, ``1`` or ``"yes"``); any other field is rejected, so a
    body can never name a user: settings are always the token's user's.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"personalization_enabled": False}]})

    personalization_enabled: StrictBool = Field(description="False opts the user out of personalization.")
    data_sharing_consent: StrictBool | None = Field(None, description="Left out or null: keep the stored value.")


class ExperimentBody(ExperimentSpec):
    """A stored experiment (its assignment salt is never returned)."""

    model_config = _example(
        **EXAMPLE,
        starts_at=_GENERATED_AT,
        ends_at=None,
        active=True,
        created_at=_GENERATED_AT,
        ended_at=None,
    )

    starts_at: datetime = Field(description="When assignment started or starts (UTC).")
    active: bool = Field(description="False once ended; an ended experiment serves nobody from the next publish.")
    created_at: datetime = Field(description="When it was created (UTC).")
    ended_at: datetime | None = Field(None, description="When it was ended; null while active.")


class VariantResult(BaseModel):
    variant: str = Field(description="Variant name.")
    ranking: str = Field(description="The ranking configuration its users were served.")
    sample_size: int = Field(description="Exposed opted-in users.")
    acceptance_rate: float | None = Field(description="Share of them who accepted an item in an attribution window.")
    completion_rate: float | None = Field(description="Share who completed an item.")
    engagement_rate: float | None = Field(description="Share who viewed, clicked, accepted or completed an item.")
    dismissal_rate: float | None = Field(description="Share who dismissed an item.")
    metric: str = Field(description="The success metric the comparison is on.")
    lift: float | None = Field(description="Relative difference from control on the metric (0.12 = +12%).")
    lift_low: float | None = Field(description="Lower bound of the lift's confidence interval.")
    lift_high: float | None = Field(description="Upper bound of the lift's confidence interval.")
    p_value: float | None = Field(description="Two-sided p-value of the two-proportion z-test against control.")
    verdict: str = Field(description="`control`, `roll_out`, `stop` or `keep_testing` (see the README's rule).")
    computed_at: datetime = Field(description="When the analysis ran (UTC).")


class ExperimentResultsBody(BaseModel):
    """The latest published analysis of an experiment."""

    model_config = _example(
        experiment="rerank-vs-als",
        winner="reranked",
        variants=[
            {
                "variant": "control",
                "ranking": "als",
                "sample_size": 4980,
                "acceptance_rate": 0.101,
                "completion_rate": 0.041,
                "engagement_rate": 0.52,
                "dismissal_rate": 0.049,
                "metric": "acceptance_rate",
                "lift": None,
                "lift_low": None,
                "lift_high": None,
                "p_value": None,
                "verdict": "control",
                "computed_at": _GENERATED_AT,
            },
            {
                "variant": "reranked",
                "ranking": "reranked",
                "sample_size": 5020,
                "acceptance_rate": 0.131,
                "completion_rate": 0.052,
                "engagement_rate": 0.53,
                "dismissal_rate": 0.047,
                "metric": "acceptance_rate",
                "lift": 0.297,
                "lift_low": 0.151,
                "lift_high": 0.461,
                "p_value": 0.000002,
                "verdict": "roll_out",
                "computed_at": _GENERATED_AT,
            },
        ],
    )

    experiment: str = Field(description="Experiment name.")
    winner: str | None = Field(description="The variant to roll out, if the rule names one.")
    variants: list[VariantResult] = Field(description="Control first; empty until the first analysis.")
