#!/bin/bash
# Runs once, on the first start of an empty data volume (docker-entrypoint-initdb.d):
# one database per service besides the source database (POSTGRES_DB), each owned by
# POSTGRES_USER. The names come from RAGTUNE_EXTRA_DATABASES (space-separated).
set -euo pipefail

for db in ${RAGTUNE_EXTRA_DATABASES:-mlflow prefect}; do
  echo "creating database ${db}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE \"${db}\" OWNER \"${POSTGRES_USER}\""
done
