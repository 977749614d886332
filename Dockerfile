# syntax=docker/dockerfile:1
# The pipeline image: Dagster webserver and daemon, the job runner and the lookup API.
# Stage `deps` installs the dependencies into a virtual environment from pyproject.toml alone, so
# that layer is rebuilt only when the dependencies change; the final stage adds the source tree
# (the pipeline reads dbt_project/ and workspace.yaml beside its package) and runs as a user.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
COPY pyproject.toml README.md ./
RUN mkdir personalization_pipeline \
    && touch personalization_pipeline/__init__.py \
    && pip install ".[deploy]" \
    && pip uninstall --yes personalization_pipeline

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    OPENBLAS_NUM_THREADS=1 \
    DAGSTER_HOME=/app/data/dagster_home
RUN useradd --create-home --uid 10001 pipeline
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY . /app
RUN pip install --no-deps --no-build-isolation --editable . \
    && personalization-pipeline prepare \
    && mkdir -p /app/data/dagster_home \
    && chown -R pipeline:pipeline /app
USER pipeline
EXPOSE 3000 8000
CMD ["personalization-pipeline", "--help"]
