# MLflow tracking server for infra/docker-compose.yml: the official image plus the
# PostgreSQL driver (backend store) and boto3 (S3 artifacts on MinIO).
ARG MLFLOW_VERSION=v3.17.2
FROM ghcr.io/mlflow/mlflow:${MLFLOW_VERSION}

RUN pip install --no-cache-dir "psycopg2-binary>=2.9,<3" "boto3>=1.34,<2"

ENV MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1
