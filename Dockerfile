# Astro Runtime 3.3-2 = Apache Airflow 3.3. The same platform as `make start`: multi-team,
# one DAG bundle per domain owned by the team of the same name, the project root importable
# (shared/ and domains.*), OpenLineage on. tests/test_astro_project.py keeps this in step
# with devplatform/config.py. AIRFLOW__OPENLINEAGE__NAMESPACE below is the one source of
# the namespace: devplatform/config.py reads it from here for the local platform and tests,
# and of the extractor that puts every dataset a @task records on its events (shared/lineage.py).
# Per-team limits (platform_runtime/team_limits.py, README "Per-team limits"): PARALLELISM is
# every team's pool slots together (`make dockerfile` writes it), MAX_ACTIVE_RUNS_PER_DAG the
# platform's default for a DAG that sets none, PARSING_PROCESSES a parse slot per team's bundle
# (the dag-processor holds each bundle to its share: platform_runtime/airflow_internals.py);
# each team's ceiling and parse-time limit come from its domains/<d>/settings.yaml through the
# cluster policies (airflow_local_settings.py).
FROM astrocrpublic.azurecr.io/runtime:3.3-2

ENV PYTHONPATH=/usr/local/airflow \
    AIRFLOW__CORE__MULTI_TEAM=True \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__PARALLELISM="21" \
    AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES="5" \
    AIRFLOW__CORE__MAX_ACTIVE_RUNS_PER_DAG=4 \
    AIRFLOW__PLATFORM__TEAM_LIMITS=True \
    AIRFLOW__CORE__EXECUTOR="platform_runtime.executors.RefusingExecutor;aurora=CeleryExecutor;ecommerce_ml=CeleryExecutor;hss_workflow=CeleryExecutor;looklyy=CeleryExecutor;referral=CeleryExecutor" \
    AIRFLOW__CORE__AUTH_MANAGER=platform_runtime.auth.TeamScopedAuthManager \
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,aurora_op:op:aurora,aurora_viewer:viewer:aurora,ecommerce_ml_op:op:ecommerce_ml,ecommerce_ml_viewer:viewer:ecommerce_ml,hss_workflow_op:op:hss_workflow,hss_workflow_viewer:viewer:hss_workflow,looklyy_op:op:looklyy,looklyy_viewer:viewer:looklyy,referral_op:op:referral,referral_viewer:viewer:referral" \
    AIRFLOW__OPENLINEAGE__NAMESPACE=airflow-platform \
    AIRFLOW__OPENLINEAGE__EXTRACTORS=shared.lineage.TaskFlowLineageExtractor \
    AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST='[{"name": "aurora", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": "/usr/local/airflow/domains/aurora/dags"}, "team_name": "aurora"}, {"name": "ecommerce_ml", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": "/usr/local/airflow/domains/ecommerce_ml/dags"}, "team_name": "ecommerce_ml"}, {"name": "hss_workflow", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": "/usr/local/airflow/domains/hss_workflow/dags"}, "team_name": "hss_workflow"}, {"name": "looklyy", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": "/usr/local/airflow/domains/looklyy/dags"}, "team_name": "looklyy"}, {"name": "referral", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": "/usr/local/airflow/domains/referral/dags"}, "team_name": "referral"}]'
# A task rides out an api-server outage, and the scheduler never gives up on a task that is
# still alive (issue 26; devplatform/config.py `heartbeat_settings` checks these numbers, and the
# local platform and the tests read them from here). Each call to the Execution API is tried
# EXECUTION_API_RETRIES times, RETRY_WAIT_MIN = _MAX seconds apart (tenacity's random wait
# between the two is then exact): an outage of up to (17 - 1) x 15 = 240 s is ridden out, and a
# task reports its state once the api-server is back (an api-server restart took 47 s to 3 min on
# a loaded 2-core machine). A call gives up at the latest after 240 s + 17 x the 5 s request
# timeout = 325 s; with MAX_FAILED_HEARTBEATS=1 the task's supervisor then kills the task at
# once. The scheduler fails a task without a heartbeat only after
# TASK_INSTANCE_HEARTBEAT_TIMEOUT = 360 s > 325 s + the 5 s heartbeat interval: so it never fails
# (and retries) a try that is still running, which then finished and wrote its output twice.
ENV AIRFLOW__WORKERS__EXECUTION_API_RETRIES=17 \
    AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MIN=15 \
    AIRFLOW__WORKERS__EXECUTION_API_RETRY_WAIT_MAX=15 \
    AIRFLOW__WORKERS__MAX_FAILED_HEARTBEATS=1 \
    AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=360
# The team workers' settings from issue 25's timeline (devplatform/tenants.py WORKER_TUNING says
# why each; tests/test_astro_project.py keeps them equal): the Task SDK's listener manager loaded
# once per worker before its pool forks (platform_runtime/celery_preload.py), not once per task;
# a pool process free at most 1 s after its task succeeded (not 5 s); no stale-bundle cleanup
# process (every bundle is a LocalDagBundle, which has no versions to clean).
ENV AIRFLOW__CELERY__EXTRA_CELERY_CONFIG='{"imports": ["platform_runtime.celery_preload"]}' \
    AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL=1 \
    AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL=0
# OpenLineage transport, SMTP and every connection/variable are set per Deployment (Astro
# environment variables or a secrets backend), e.g. the team-scoped lines from `make settings-env`.
# Lineage goes to the api-server's lineage explorer (plugins/lineage_explorer/README.md):
# AIRFLOW__OPENLINEAGE__TRANSPORT='{"type": "http", "url": "<api-server>/", "endpoint":
# "lineage-explorer/api/v1/lineage", "auth": {"type": "api_key", "apiKey": "<key>"}}' with each
# team's worker queue's own ingest key; the api-server alone gets AIRFLOW__LINEAGE_EXPLORER__*.
# Per-team runtime (README "Security"): one image, started per process with only what that
# process needs. api-server: DB URL, Fernet key, AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH (an
# Ed25519 key, AIRFLOW__API_AUTH__JWT_ALGORITHM=EdDSA) and no jwt_secret; scheduler: the same
# plus AIRFLOW__<TEAM>___CELERY__BROKER_URL/RESULT_BACKEND and
# AIRFLOW__<TEAM>___CORE__EXECUTION_API_SERVER_URL for every team; dag-processor (run as
# `python -m platform_runtime.airflow_internals dag-processor`: each team's DAG files parsed by a
# zygote as OS user tenant-<team> with an environment from scratch; create those users in the
# image and set AIRFLOW__PLATFORM__TEAM_HOME to a folder they can reach) and
# `triggerer --team-name <team>`: DB URL and Fernet key; per team `airflow celery worker`
# (and Flower, as `python -m platform_runtime.flower`: every page behind FLOWER_BASIC_AUTH): ONLY its team's AIRFLOW__CELERY__BROKER_URL/RESULT_BACKEND (a managed Redis
# per team), AIRFLOW__CORE__EXECUTION_API_SERVER_URL, its own bundle in
# AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST, --skip-serve-logs, and remote logging
# credentials scoped to its team. The runtime isolation ships in the image with the project
# (.dockerignore keeps them): platform_runtime/ (product code: the cluster policy loaded by
# airflow_local_settings.py, which runs a team's tasks only on its own executor and refuses
# cross-team DAG ids; the api-server middleware registered by plugins/tenant_guard.py; the
# auth manager above, platform_runtime.auth, which scopes assets by team; the
# global executor above, RefusingExecutor, which runs nothing: a team task that reaches it
# fails instead of running inside the scheduler).
# ecommerce_ml's heavy environment (issue 12): the embedding/NLP models in a virtualenv of their
# own, built the same way as `make install` builds .venv-embed (plain pip, requirements-embed.txt
# fully pinned); tasks reach it with @task.external_python through ECOMMERCE_ML_EMBED_PYTHON
# (domains/ecommerce_ml/config.py). Airflow's own environment never gets torch. The image's
# build stage copies the project into /usr/local/airflow before these lines (Astro ONBUILD).
ENV ECOMMERCE_ML_EMBED_PYTHON=/usr/local/ecommerce_ml_embed/bin/python \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
# The registry's default torch wheel for Linux pulls the CUDA packages: the image takes the CPU
# build from PyTorch's CPU index (2.13.0+cpu satisfies ==2.13.0 and sorts after 2.13.0).
# /usr/local belongs to root in the Runtime image, which runs as `astro`.
USER root
RUN python -m venv /usr/local/ecommerce_ml_embed \
    && /usr/local/ecommerce_ml_embed/bin/python -m pip install --no-cache-dir --disable-pip-version-check \
       --extra-index-url https://download.pytorch.org/whl/cpu -r /usr/local/airflow/requirements-embed.txt
USER astro
