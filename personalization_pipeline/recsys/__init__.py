"""Recommendation core: interaction matrices, models, ranking, splits and metrics.

Plain functions and classes over pandas, numpy and scipy; no Dagster, no database.
Ids are strings everywhere and every ordering breaks ties by id ascending.
"""
