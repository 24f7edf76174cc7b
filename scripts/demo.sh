#!/usr/bin/env bash
# The main job on an embedded default, with nothing but this repository: starts a throwaway
# PostgreSQL, creates a real Airflow 2.10 schema in it (the DDL Airflow 2.10.5 itself generated),
# fills it with a generated history, inspects it, exports it to canonical Parquet in
# ./demo-output (or $CONTRAIL_DEMO_OUTPUT), and imports that dataset into a second database with
# the real Airflow 3.2 schema (a cutover), verified. Installs PostgreSQL with apt if it is missing.
#
#   scripts/demo.sh [TASK_INSTANCES (default 50000)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

task_instances=${1:-50000}
out=${CONTRAIL_DEMO_OUTPUT:-$PWD/demo-output}
cargo build --release --quiet --bin contrail
bin=${CARGO_TARGET_DIR:-target}/release/contrail
contrail_pg_start "$(mktemp -d -t contrail-demo-XXXXXX)"
url="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/airflow"
"$CONTRAIL_PSQL" -X -q -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres" -c "CREATE DATABASE airflow"
"$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" -f tests/fixtures/ddl/airflow-2.10.5.sql >/dev/null

echo "== An Airflow 2.10 metadata database at $url, filled with a generated history" >&2
"$bin" generate --db "$url" --task-instances "$task_instances" --seed 42
echo >&2
echo "== contrail inspect" >&2
"$bin" inspect --db "$url"
echo >&2
echo "== contrail export to $out" >&2
rm -rf "$out"
"$bin" export --db "$url" --to "$out"
target="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/airflow3"
"$CONTRAIL_PSQL" -X -q -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres" -c "CREATE DATABASE airflow3"
"$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$target" -f tests/fixtures/ddl/airflow-3.2.2.sql >/dev/null
echo >&2
echo "== contrail import into an empty Airflow 3.2 database at $target" >&2
"$bin" import --from "$out" --db "$target"
cat <<HINT

The dataset in $out is Hive-partitioned Parquet; _contrail/exports/*.json is its manifest.
Query it with DuckDB:
  duckdb -c "SELECT state, count(*) FROM read_parquet('$out/task_instance/*/*.parquet', hive_partitioning = true) GROUP BY 1 ORDER BY 2 DESC"
or with pyarrow:
  python3 -c "import pyarrow.dataset as ds; print(ds.dataset('$out/dag_run', format='parquet', partitioning='hive').to_table().num_rows)"
HINT
