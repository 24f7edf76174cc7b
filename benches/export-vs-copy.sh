#!/usr/bin/env bash
# End-to-end export benchmark: in one run, on one generated Airflow 2.10 task_instance table,
# the wall time of PostgreSQL's raw `COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)`
# (read by psql into /dev/null) against `contrail export` of that table to zstd Parquet, their
# ratio, and contrail's peak RSS and CPU time. Machines are noisy: each side runs RUNS times
# (default 3), alternating; the best time of each is compared, and each run's own ratio is
# reported too (with their median), since the machine's speed drifts between runs.
#
# The reference is one COPY stream of `SELECT *`; contrail reads with JOBS connections, reads
# dag_run once for its run index and selects canonical expressions. So the script also replays
# the exact COPY statements contrail ran (taken from the server log), one after another on one
# connection with contrail's session settings: PostgreSQL's own cost of producing contrail's
# rows, the part of the budget no client-side work can remove. On a machine with few cores,
# PostgreSQL and contrail share the CPUs, so the script also reports the CPU time of the server's
# backends (from the postmaster's reaped-children counters) for the raw COPY and the export:
# on C cores, wall time cannot be below (server CPU + contrail CPU) / C.
#
#   benches/export-vs-copy.sh [TASK_INSTANCES (default 5000000)] [JOBS (default 2)]
#
# It measures the `dist` build (Cargo.toml); PROFILE=release measures another profile, and
# CONTRAIL_BIN=path a binary built elsewhere.
# EXPORT_ARGS adds options to the export, e.g. EXPORT_ARGS="--run-index-memory 64".
# ORDER is the generator's --insertion-order: `time` (default; rows sit in the table in the
# order the scheduler created them, as in a real Airflow database) or `dag` (DAG by DAG: every
# stretch of the table spans every day, the worst case for grouping rows into day files).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

rows=${1:-5000000}
jobs=${2:-2}
runs=${RUNS:-3}
bin=$(contrail_bench_binary)
work=$(mktemp -d -t contrail-bench-XXXXXX)
pgdir=$(mktemp -d -t contrail-bench-pg-XXXXXX)
contrail_pg_start "$pgdir"
order=${ORDER:-time}
contrail_bench_history "$rows" "$bin" "$order"
url=$CONTRAIL_BENCH_URL
ti_rows=$("$CONTRAIL_PSQL" -X -qAt -d "$url" -c "SELECT count(*) FROM task_instance")
ti_size=$("$CONTRAIL_PSQL" -X -qAt -d "$url" -c "SELECT pg_size_pretty(pg_relation_size('task_instance'))")
echo "task_instance: $ti_rows rows, $ti_size" >&2

copy() { "$CONTRAIL_PSQL" -X -q -d "$url" -c "COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)"; }
# shellcheck disable=SC2086
export_ti() { rm -rf "$work/out"; "$bin" --quiet export --db "$url" --to "$work/out" --tables task_instance --jobs "$jobs" ${EXPORT_ARGS:-} "$@"; }
export -f copy export_ti
export url bin work jobs CONTRAIL_PSQL EXPORT_ARGS
copy >/dev/null  # warm the page cache

# One logged export yields the statements contrail runs, and its summary whether task instances
# were matched to their runs by contrail's index or by PostgreSQL's join (a dag_run too big for
# --run-index-memory), which changes PostgreSQL's cost a lot.
"$CONTRAIL_PSQL" -X -q -d "$url" -c "ALTER DATABASE airflow SET log_min_duration_statement = 0"
export_ti --output json > "$work/summary.json"
runs_indexed=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['tables'][0]['runs_indexed'])" "$work/summary.json")
"$CONTRAIL_PSQL" -X -q -d "$url" -c "ALTER DATABASE airflow RESET log_min_duration_statement"
grep -o 'execute [^:]*: COPY .*' "$pgdir/server.log" | sed 's/^execute [^:]*: //' > "$work/statements.sql"
# Contrail's reader session settings (src/source/snapshot.rs).
replay() {
    while IFS= read -r statement; do
        PGOPTIONS="-c work_mem=64MB -c jit=off -c max_parallel_workers_per_gather=0" \
            "$CONTRAIL_PSQL" -X -q -d "$url" -c "$statement"
    done < "$work/statements.sql"
}
export -f replay

# CPU seconds of every backend the postmaster has reaped so far (cutime + cstime).
postmaster=$(head -1 "$pgdir/data/postmaster.pid")
server_cpu() {
    sleep 0.3  # let the postmaster reap the finished session's backends
    python3 -c "import os; f = open('/proc/$postmaster/stat').read().rsplit(')', 1)[1].split(); \
print((int(f[13]) + int(f[14])) / os.sysconf('SC_CLK_TCK'))"
}

best_copy="" best_export="" best_replay="" rss="" cpu="" copy_server="" export_server="" ratios=""
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
for _ in $(seq "$runs"); do
    s0=$(server_cpu)
    c=$(python3 benches/measure.py bash -c copy)
    s1=$(server_cpu)
    e=$(python3 benches/measure.py bash -c export_ti)
    s2=$(server_cpu)
    p=$(python3 benches/measure.py bash -c replay)
    cserver=$(python3 -c "print(round($s1 - $s0, 2))")
    eserver=$(python3 -c "print(round($s2 - $s1, 2))")
    cs=$(echo "$c" | field seconds)
    es=$(echo "$e" | field seconds)
    ps=$(echo "$p" | field seconds)
    er=$(echo "$e" | field rss_mib)
    eu=$(echo "$e" | field user_seconds)
    esys=$(echo "$e" | field system_seconds)
    echo "run: raw COPY ${cs}s (server CPU ${cserver}s), contrail export ${es}s (CPU ${eu}s user + ${esys}s system, server CPU ${eserver}s, peak RSS ${er} MiB), contrail's statements replayed on one connection ${ps}s" >&2
    if [[ -z $best_copy ]] || python3 -c "import sys; sys.exit(0 if $cs < $best_copy else 1)"; then
        best_copy=$cs copy_server=$cserver
    fi
    if [[ -z $best_export ]] || python3 -c "import sys; sys.exit(0 if $es < $best_export else 1)"; then
        best_export=$es cpu="$eu $esys" export_server=$eserver
    fi
    best_replay=$(python3 -c "print(min(x for x in [$ps, ${best_replay:-1e9}]))")
    ratios="${ratios:+$ratios,}$(python3 -c "print(round($es / $cs, 3))")"
    rss=$(python3 -c "print(max(x for x in [$er, ${rss:-0}]))")
done
parquet_bytes=$(du -sb "$work/out" | cut -f1)
parquet_files=$(find "$work/out" -name '*.parquet' | wc -l)
statements=$(wc -l < "$work/statements.sql")
rm -rf "$work"
# shellcheck disable=SC2086
python3 - "$ti_rows" "$best_copy" "$best_export" "$rss" "$parquet_bytes" "$jobs" \
    "$best_replay" "$statements" "$parquet_files" $cpu "$(nproc)" "$copy_server" "$export_server" \
    "$ratios" "$order" "$runs_indexed" <<'PY'
import json, statistics, sys
(rows, copy_s, export_s, rss, parquet, jobs, replay_s, statements, files, user, system, cpus,
 copy_server, export_server, ratios, order, runs_indexed) = sys.argv[1:]
ratios = [float(r) for r in ratios.split(",")]
cpu_floor = (float(user) + float(system) + float(export_server)) / int(cpus)
print(json.dumps({
    "task_instance_rows": int(rows),
    "insertion_order": order,
    "jobs": int(jobs),
    "cpus": int(cpus),
    "raw_copy_seconds": float(copy_s),
    "contrail_export_seconds": float(export_s),
    "ratio_export_to_copy": round(float(export_s) / float(copy_s), 3),
    "ratio_per_run": ratios,
    "ratio_per_run_median": statistics.median(ratios),
    "contrail_cpu_user_seconds": float(user),
    "contrail_cpu_system_seconds": float(system),
    "raw_copy_server_cpu_seconds": float(copy_server),
    "export_server_cpu_seconds": float(export_server),
    "export_cpu_floor_seconds": round(cpu_floor, 2),
    "ratio_cpu_floor_to_copy": round(cpu_floor / float(copy_s), 3),
    "contrail_peak_rss_mib": float(rss),
    "runs_indexed": runs_indexed == "True",
    "contrail_statements": int(statements),
    "contrail_statements_replayed_seconds": float(replay_s),
    "ratio_replayed_to_copy": round(float(replay_s) / float(copy_s), 3),
    "parquet_files": int(files),
    "parquet_bytes": int(parquet),
    "contrail_rows_per_second": round(int(rows) / float(export_s)),
}, indent=2))
PY
