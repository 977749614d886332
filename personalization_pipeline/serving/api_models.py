"""Request and response bodies of the lookup API (they define the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, StrictBool


class ErrorBody(BaseModel):
    """Every error response: a short machine code and a human-readable message."""

    error: str
    detail: str


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(ErrorBody):
    """A request that does not validate (path, query or body, malformed JSON included): one entry per problem."""

    errors: list[FieldError]


class RankedItem(BaseModel):
    id: str
    score: float
    confidence: float


class RankingBody(BaseModel):
    """A ranking read; ``personalized`` is false for the scope's global fallback."""

    user_id: str
    scope: str
    items: list[RankedItem]
    personalized: bool
    model_version: str
    generated_at: datetime
    valid_until: datetime


class ExplainedItem(BaseModel):
    rank: int
    item_id: str
    score: float
    tags: list[str]


class ExplanationBody(BaseModel):
    """A user's served personalized ranking with each item's internal rationale tags (admins only)."""

    user_id: str
    scope: str
    model_version: str
    generated_at: datetime
    valid_until: datetime
    items: list[ExplainedItem]


class EvalMetric(BaseModel):
    model_name: str
    metric: str
    k: int
    value: float | None


class MetricsBody(BaseModel):
    """The latest offline evaluation run."""

    run_id: str
    computed_at: datetime
    metrics: list[EvalMetric]


class SettingsBody(BaseModel):
    user_id: str
    personalization_enabled: bool
    data_sharing_consent: bool | None
    updated_at: datetime | None


class SettingsUpdate(BaseModel):
    """New opt-out flag; ``data_sharing_consent`` left out (or null) keeps the stored value.

    JSON booleans only (no ``"true"``, ``1`` or ``"yes"``); any other field is rejected, so a
    body can never name a user: settings are always the token's user's.
    """

    model_config = ConfigDict(extra="forbid")

    personalization_enabled: StrictBool
    data_sharing_consent: StrictBool | None = None
