#!/usr/bin/env bash
# End-to-end export benchmark: in one run, on one generated Airflow 2.10 task_instance table,
# the wall time of PostgreSQL's raw `COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)`
# (read by psql into /dev/null) against `contrail export` of that table to zstd Parquet, their
# ratio, and contrail's peak RSS. Machines are noisy: each side runs RUNS times (default 3),
# alternating, and the best time of each is compared.
#
#   benches/export-vs-copy.sh [TASK_INSTANCES (default 5000000)] [JOBS (default 2)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

rows=${1:-5000000}
jobs=${2:-2}
runs=${RUNS:-3}
cargo build --release --quiet --bin contrail
bin=${CARGO_TARGET_DIR:-target}/release/contrail
work=$(mktemp -d -t contrail-bench-XXXXXX)
contrail_pg_start "$(mktemp -d -t contrail-bench-pg-XXXXXX)"
url="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/airflow"
"$CONTRAIL_PSQL" -X -q -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres" -c "CREATE DATABASE airflow"
"$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$url" -f tests/fixtures/ddl/airflow-2.10.5.sql >/dev/null
echo "Generating $rows task instances (Airflow 2.10)..." >&2
"$bin" generate --db "$url" --task-instances "$rows" --seed 7 --output json > "$work/generate.json"
"$CONTRAIL_PSQL" -X -q -d "$url" -c "VACUUM ANALYZE"
ti_rows=$("$CONTRAIL_PSQL" -X -qAt -d "$url" -c "SELECT count(*) FROM task_instance")
ti_size=$("$CONTRAIL_PSQL" -X -qAt -d "$url" -c "SELECT pg_size_pretty(pg_relation_size('task_instance'))")
echo "task_instance: $ti_rows rows, $ti_size" >&2

copy() { "$CONTRAIL_PSQL" -X -q -d "$url" -c "COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)"; }
export_ti() { rm -rf "$work/out"; "$bin" --quiet export --db "$url" --to "$work/out" --tables task_instance --jobs "$jobs"; }
export -f copy export_ti
export url bin work jobs CONTRAIL_PSQL
copy >/dev/null  # warm the page cache
best_copy="" best_export="" rss=""
for _ in $(seq "$runs"); do
    c=$(python3 benches/measure.py bash -c copy)
    e=$(python3 benches/measure.py bash -c export_ti)
    cs=$(echo "$c" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
    es=$(echo "$e" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
    er=$(echo "$e" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_mib"])')
    echo "run: raw COPY ${cs}s, contrail export ${es}s (peak RSS ${er} MiB)" >&2
    best_copy=$(python3 -c "print(min(x for x in [$cs, ${best_copy:-1e9}]))")
    best_export=$(python3 -c "print(min(x for x in [$es, ${best_export:-1e9}]))")
    rss=$(python3 -c "print(max(x for x in [$er, ${rss:-0}]))")
done
parquet_bytes=$(du -sb "$work/out" | cut -f1)
rm -rf "$work"
python3 - "$ti_rows" "$best_copy" "$best_export" "$rss" "$parquet_bytes" "$jobs" <<'PY'
import json, sys
rows, copy_s, export_s, rss, parquet, jobs = sys.argv[1:]
print(json.dumps({
    "task_instance_rows": int(rows),
    "jobs": int(jobs),
    "raw_copy_seconds": float(copy_s),
    "contrail_export_seconds": float(export_s),
    "ratio_export_to_copy": round(float(export_s) / float(copy_s), 3),
    "contrail_peak_rss_mib": float(rss),
    "parquet_bytes": int(parquet),
    "contrail_rows_per_second": round(int(rows) / float(export_s)),
}, indent=2))
PY
