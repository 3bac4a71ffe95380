# syntax=docker/dockerfile:1
# Image for the distributed deployment (docker-compose.yaml, deploy/helm/values.yaml).
#
#   docker compose build                      # builds both targets below
#   docker build --target airflow -t cloud-runbooks-airflow:3.3.2 .
#
# Base: the *slim* official image of the same release and Python (apache/airflow:slim-3.3.2-python3.11).
# The full image ships ~30 providers resolved against Airflow's own constraints; installing our lock
# on top would move shared libraries (pandas 3, SQLAlchemy 2.1, ...) under providers we never use and
# `pip check` would fail on them. From slim, every installed distribution is one we name below, pinned
# by requirements.lock, and `pip check` verifies the set. Set AIRFLOW_BASE_IMAGE to use the full image.
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
ARG AIRFLOW_BASE_IMAGE=apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}

# ---- gcs-emulator: the GCS emulator of the `emulators` compose profile (demo estate only) ----------
# Same emulator and version the tests and `make up` use (gcp-storage-emulator keeps bucket metadata -
# labels, uniform access, public access prevention, retention - that the compliance rules read).
FROM ${AIRFLOW_BASE_IMAGE} AS gcs-emulator
COPY --chown=airflow:0 requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir gcp-storage-emulator --constraint /tmp/requirements.lock
ENTRYPOINT ["gcp-storage-emulator"]
CMD ["start", "--host", "0.0.0.0", "--port", "9023", "--in-memory"]

# ---- airflow: api-server, scheduler, dag-processor, worker, triggerer (the default target) ----------
FROM ${AIRFLOW_BASE_IMAGE} AS airflow
ARG AIRFLOW_VERSION
COPY --chown=airflow:0 requirements.lock /opt/airflow/requirements.lock
# Runtime distributions only; versions come from requirements.lock (the set the tests run against),
# which also pins the deployment extras (Celery executor, FAB auth manager, Postgres). Test/dev tools (pytest, ruff, uv, psutil, moto,
# gcp-storage-emulator) do not belong in a production image.
RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        apache-airflow-providers-amazon \
        apache-airflow-providers-google \
        apache-airflow-providers-microsoft-azure \
        apache-airflow-providers-standard \
        apache-airflow-providers-slack \
        apache-airflow-providers-smtp \
        apache-airflow-providers-pagerduty \
        great-expectations \
        apache-airflow-providers-celery \
        "celery[redis]" \
        apache-airflow-providers-fab \
        apache-airflow-providers-postgres \
        --constraint /opt/airflow/requirements.lock \
    && pip check

# Project code baked in, so the same image runs on Kubernetes without git-sync. docker-compose.yaml
# bind-mounts the working tree over these paths for local development.
ENV PYTHONPATH=/opt/airflow \
    RUNBOOKS_TARGETS_FILE=/opt/airflow/config/targets.yaml \
    RUNBOOKS_DATA_DIR=/opt/airflow/data
# .dockerignore allow-lists requirements.lock, dags/, include/, plugins/ and config/ (never localdev/: the
# emulators, the demo seed and `make demo` are local-only tooling, and include/ never imports them).
COPY --chown=airflow:0 . /opt/airflow/
RUN mkdir -p /opt/airflow/data
