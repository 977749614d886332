"""The only columns a user feature vector may hold (features are built from this list)."""

FEATURE_COLUMNS: tuple[str, ...] = (
    "engagement_score",
    "click_through_rate",
    "sessions_7d",
    "sessions_30d",
    "avg_session_seconds",
    "preferred_hour",
    "device_type",
    "country",
    "timezone",
    "category_preferences",
)

# Categorical features generalised for k-anonymity, with the warehouse expression they come from.
QUASI_IDENTIFIERS: dict[str, str] = {
    "country": "u.country_code",
    "timezone": "CAST(u.timezone_offset AS VARCHAR)",
    "device_type": "coalesce(a.device_type, u.device_type)",
}
