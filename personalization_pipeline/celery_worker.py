"""The Celery app the ``celery`` executor's workers run (``personalization-pipeline worker``).

A worker executes the steps the executor sends to the ``dagster`` queue of
``PERSONALIZATION_CELERY_BROKER``, reporting to ``PERSONALIZATION_CELERY_BACKEND``. It loads the
job from this package with its own environment, so every ``PERSONALIZATION_`` setting a run
depends on (database, paths, model settings) must be the same where the workers run; the
warehouse, model store and staging directories must be shared paths.
"""

from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from .config import Settings

_settings = Settings.from_env()
app = make_app({"broker": _settings.celery_broker, "backend": _settings.celery_backend})
execute_plan = create_task(app)
