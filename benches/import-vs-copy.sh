#!/usr/bin/env bash
# End-to-end import benchmark: in one run, the same generated Airflow 2.10 task_instance rows
# loaded into the same empty, indexed task_instance table (its dag runs already there, so the
# foreign key is checked on both sides) by PostgreSQL's raw
# `COPY task_instance FROM STDIN (FORMAT binary)` and by `contrail import --tables
# task_instance` from the exported Parquet dataset; their ratio, and contrail's peak RSS.
# Each side runs RUNS times (default 3), alternating, the table truncated before each; the
# best time of each is compared. The import's own post-commit verification is timed apart.
#
#   benches/import-vs-copy.sh [TASK_INSTANCES (default 5000000)]
#
# It measures the `dist` build (Cargo.toml); PROFILE=release measures another profile, and
# CONTRAIL_BIN=path a binary built elsewhere.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

rows=${1:-5000000}
runs=${RUNS:-3}
bin=$(contrail_bench_binary)
work=$(mktemp -d -t contrail-bench-XXXXXX)
contrail_pg_start "$(mktemp -d -t contrail-bench-pg-XXXXXX)"
admin="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres"
source_url="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/source"
target_url="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/target"
for db in source target; do
    "$CONTRAIL_PSQL" -X -q -d "$admin" -c "CREATE DATABASE $db"
    "$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/$db" \
        -f tests/fixtures/ddl/airflow-2.10.5.sql >/dev/null
done
echo "Generating $rows task instances (Airflow 2.10)..." >&2
"$bin" generate --db "$source_url" --task-instances "$rows" --seed 7 --output json > "$work/generate.json"
ti_rows=$("$CONTRAIL_PSQL" -X -qAt -d "$source_url" -c "SELECT count(*) FROM task_instance")
"$bin" --quiet export --db "$source_url" --to "$work/dataset" --tables log_template,dag_run,task_instance >/dev/null
"$CONTRAIL_PSQL" -X -q -d "$source_url" -c "\\copy (SELECT * FROM task_instance) TO '$work/ti.copy' (FORMAT binary)"
# The runs the task instances belong to, loaded once and untimed.
"$bin" --quiet import --from "$work/dataset" --db "$target_url" --tables log_template,dag_run --no-verify >/dev/null
"$CONTRAIL_PSQL" -X -q -d "$target_url" -c "VACUUM ANALYZE"
indexes=$("$CONTRAIL_PSQL" -X -qAt -d "$target_url" -c "SELECT count(*) FROM pg_indexes WHERE tablename = 'task_instance'")
echo "task_instance: $ti_rows rows, $indexes indexes on the target" >&2

truncate_ti() { "$CONTRAIL_PSQL" -X -q -d "$target_url" -c "TRUNCATE task_instance CASCADE" 2>/dev/null; }
copy_in() { "$CONTRAIL_PSQL" -X -q -d "$target_url" -c "\\copy task_instance FROM '$work/ti.copy' (FORMAT binary)"; }
import_ti() { "$bin" --quiet import --from "$work/dataset" --db "$target_url" --tables task_instance --no-verify; }
verify_ti() { "$bin" --quiet verify --from "$work/dataset" --db "$target_url" --tables task_instance; }
export -f copy_in import_ti verify_ti
export target_url bin work CONTRAIL_PSQL
best_copy="" best_import="" rss=""
for _ in $(seq "$runs"); do
    truncate_ti
    c=$(python3 benches/measure.py bash -c copy_in)
    truncate_ti
    i=$(python3 benches/measure.py bash -c import_ti)
    cs=$(echo "$c" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
    is=$(echo "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
    ir=$(echo "$i" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_mib"])')
    echo "run: raw COPY FROM ${cs}s, contrail import ${is}s (peak RSS ${ir} MiB)" >&2
    best_copy=$(python3 -c "print(min(x for x in [$cs, ${best_copy:-1e9}]))")
    best_import=$(python3 -c "print(min(x for x in [$is, ${best_import:-1e9}]))")
    rss=$(python3 -c "print(max(x for x in [$ir, ${rss:-0}]))")
done
loaded=$("$CONTRAIL_PSQL" -X -qAt -d "$target_url" -c "SELECT count(*) FROM task_instance")
v=$(python3 benches/measure.py bash -c verify_ti)
vs=$(echo "$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
rm -rf "$work"
python3 - "$ti_rows" "$loaded" "$best_copy" "$best_import" "$rss" "$vs" "$indexes" <<'PY'
import json, sys
rows, loaded, copy_s, import_s, rss, verify_s, indexes = sys.argv[1:]
print(json.dumps({
    "task_instance_rows": int(rows),
    "rows_imported": int(loaded),
    "target_indexes": int(indexes),
    "raw_copy_from_seconds": float(copy_s),
    "contrail_import_seconds": float(import_s),
    "ratio_import_to_copy": round(float(import_s) / float(copy_s), 3),
    "contrail_peak_rss_mib": float(rss),
    "contrail_verify_seconds": float(verify_s),
    "contrail_rows_per_second": round(int(rows) / float(import_s)),
}, indent=2))
PY
