#!/usr/bin/env bash
# Compares two contrail builds on one task_instance table, in alternating rounds: per round the
# raw `COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)`, then each build's export
# (which build goes first alternates too). The machine's speed drifts between minutes, so a
# change is judged by the medians of the same rounds, never against an earlier session's figure.
# Prints per-round lines on stderr and, on stdout, JSON with each build's median wall time, user
# and system CPU and peak RSS, and B's medians as ratios to A's.
#
#   benches/export-ab.sh BIN_A BIN_B [TASK_INSTANCES (default 5000000)] [JOBS (default 2)]
#
# ROUNDS sets the rounds (default 6). DB=postgresql://... uses an existing database holding a
# task_instance table instead of starting PostgreSQL and generating one (minutes at 5M rows);
# TASK_INSTANCES is then ignored. ORDER and EXPORT_ARGS as in export-vs-copy.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

if [[ $# -lt 2 ]]; then
    echo "usage: benches/export-ab.sh BIN_A BIN_B [TASK_INSTANCES] [JOBS]" >&2
    exit 2
fi
bin_a=$(realpath "$1")
bin_b=$(realpath "$2")
rows=${3:-5000000}
jobs=${4:-2}
rounds=${ROUNDS:-6}
work=$(mktemp -d -t contrail-ab-XXXXXX)
cleanup() {
    rm -rf "$work"
    eval "${CONTRAIL_PG_STOP:-}"
}

if [[ -n ${DB:-} ]]; then
    trap cleanup EXIT
    url=$DB
    CONTRAIL_PSQL="$(contrail_pg_bindir)/psql"
else
    pgdir=$(mktemp -d -t contrail-ab-pg-XXXXXX)
    contrail_pg_start "$pgdir"
    trap cleanup EXIT
    contrail_bench_history "$rows" "$bin_a" "${ORDER:-time}"
    url=$CONTRAIL_BENCH_URL
fi

copy() { "$CONTRAIL_PSQL" -X -q -d "$url" -c "COPY (SELECT * FROM task_instance) TO STDOUT (FORMAT binary)"; }
# shellcheck disable=SC2086
export_with() { rm -rf "$work/out"; "$1" --quiet export --db "$url" --to "$work/out" --tables task_instance --jobs "$jobs" ${EXPORT_ARGS:-}; }
export -f copy export_with
export url work jobs CONTRAIL_PSQL EXPORT_ARGS
copy >/dev/null # warm the page cache

: >"$work/results"
for round in $(seq "$rounds"); do
    raw=$(python3 benches/measure.py bash -c copy)
    echo "$round raw $raw" >>"$work/results"
    order=(a b)
    ((round % 2 == 0)) && order=(b a)
    for side in "${order[@]}"; do
        bin=$bin_a
        [[ $side == b ]] && bin=$bin_b
        m=$(python3 benches/measure.py bash -c "export_with '$bin'")
        echo "$round $side $m" >>"$work/results"
    done
    grep "^$round " "$work/results" | sed 's/^/round /' >&2
done

python3 - "$work/results" "$bin_a" "$bin_b" <<'EOF'
import json, statistics, sys
runs = {"raw": [], "a": [], "b": []}
for line in open(sys.argv[1]):
    _, side, measured = line.split(" ", 2)
    runs[side].append(json.loads(measured))
def medians(side):
    return {k: statistics.median(r[k] for r in runs[side])
            for k in ("seconds", "user_seconds", "system_seconds", "rss_mib")}
a, b = medians("a"), medians("b")
print(json.dumps({
    "rounds": len(runs["raw"]),
    "raw_copy_seconds_median": medians("raw")["seconds"],
    "a": {"binary": sys.argv[2], **a},
    "b": {"binary": sys.argv[3], **b},
    "b_to_a": {k: round(b[k] / a[k], 3) if a[k] else None for k in a},
    "rss_mib_max": {"a": max(r["rss_mib"] for r in runs["a"]),
                    "b": max(r["rss_mib"] for r in runs["b"])},
}, indent=2))
EOF
