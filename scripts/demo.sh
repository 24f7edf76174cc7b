#!/usr/bin/env bash
# The main job on an embedded default: starts a throwaway PostgreSQL, creates a real Airflow
# 2.10 schema in it (the DDL Airflow 2.10.5 itself generated), adds a small history, and runs
# `contrail inspect` on it. Needs nothing but this repository; installs PostgreSQL if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

cargo build --release --quiet --bin contrail
contrail_pg_start "$(mktemp -d -t contrail-demo-XXXXXX)"
url="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/airflow"
"$CONTRAIL_PSQL" -X -q -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres" -c "CREATE DATABASE airflow"
"$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" -f tests/fixtures/ddl/airflow-2.10.5.sql >/dev/null
"$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" -f scripts/demo-history.sql >/dev/null
echo "Airflow 2.10 metadata database at $url" >&2
echo >&2
cargo run --release --quiet --bin contrail -- inspect --db "$url" "$@"
