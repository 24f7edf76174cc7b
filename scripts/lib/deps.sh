# Shared by scripts/*.sh: find or install what contrail's jobs and tests need on Debian.
# Source it; it defines functions only.

# Prints the directory holding PostgreSQL server binaries (initdb, pg_ctl, postgres, psql),
# installing Debian's `postgresql` package when none is found.
contrail_pg_bindir() {
    local dir
    for dir in ${CONTRAIL_PG_BIN:-} $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/psql ]]; then
            echo "$dir"
            return 0
        fi
    done
    echo "contrail: PostgreSQL server not found; installing Debian's postgresql package" >&2
    if [[ $(id -u) -ne 0 ]]; then
        echo "contrail: run as root or install postgresql yourself (apt-get install postgresql)" >&2
        return 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -rn); do
        if [[ -x $dir/initdb ]]; then
            echo "$dir"
            return 0
        fi
    done
    echo "contrail: installing postgresql did not provide initdb" >&2
    return 1
}

# Builds the contrail binary a benchmark measures and prints its path: cargo profile $PROFILE
# (default `dist`, the build to deploy), or $CONTRAIL_BIN as it is, to measure a binary built
# elsewhere (comparing two builds on one generated database).
contrail_bench_binary() {
    if [[ -n ${CONTRAIL_BIN:-} ]]; then
        echo "$CONTRAIL_BIN"
        return 0
    fi
    local profile=${PROFILE:-dist}
    echo "contrail: building the $profile profile (a first dist build takes about 15 minutes on 2 cores)" >&2
    cargo build --profile "$profile" --quiet --bin contrail >&2
    echo "${CARGO_TARGET_DIR:-target}/$profile/contrail"
}

# Starts a throwaway cluster in directory $1 on a free 127.0.0.1 port with trust auth; sets
# CONTRAIL_PG_PORT and registers a trap that stops it and removes the directory on exit.
# As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
contrail_pg_start() {
    local base=$1 bindir as=()
    bindir=$(contrail_pg_bindir)
    mkdir -p "$base/sock"
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
        chown -R postgres "$base"
        as=(runuser -u postgres --)
    fi
    CONTRAIL_PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "${as[@]}" "$bindir/initdb" -A trust -U postgres -E UTF8 --locale=C -D "$base/data" >/dev/null
    "${as[@]}" "$bindir/pg_ctl" -w -t 60 -l "$base/server.log" -D "$base/data" \
        -o "-p $CONTRAIL_PG_PORT -c listen_addresses=127.0.0.1 -k $base/sock" start >/dev/null
    CONTRAIL_PG_STOP="${as[*]} $bindir/pg_ctl -D $base/data -m fast stop >/dev/null 2>&1; rm -rf $base"
    # shellcheck disable=SC2064
    trap "$CONTRAIL_PG_STOP" EXIT
    CONTRAIL_PSQL="$bindir/psql"
    export CONTRAIL_PG_PORT CONTRAIL_PSQL
}

# The export benchmarks' table: creates database `airflow` on the cluster contrail_pg_start
# started, with Airflow 2.10's schema and $1 generated task instances (binary $2, seed 7,
# inserted in $3 order), analyzed, and written out to disk; sets CONTRAIL_BENCH_URL to its URL.
contrail_bench_history() {
    local rows=$1 bin=$2 order=$3
    CONTRAIL_BENCH_URL="postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/airflow"
    "$CONTRAIL_PSQL" -X -q -d "postgresql://postgres@127.0.0.1:$CONTRAIL_PG_PORT/postgres" \
        -c "CREATE DATABASE airflow"
    "$CONTRAIL_PSQL" -X -q -v ON_ERROR_STOP=1 -d "$CONTRAIL_BENCH_URL" \
        -f tests/fixtures/ddl/airflow-2.10.5.sql >/dev/null
    echo "Generating $rows task instances (Airflow 2.10, inserted in $order order)..." >&2
    "$bin" --quiet generate --db "$CONTRAIL_BENCH_URL" --task-instances "$rows" --seed 7 \
        --insertion-order "$order" >/dev/null
    "$CONTRAIL_PSQL" -X -q -d "$CONTRAIL_BENCH_URL" -c "VACUUM ANALYZE"
    # Loading left GBs dirty (table, WAL, VACUUM's hint bits): write them out now, so that the
    # checkpointer and the kernel's writeback do not run during measured runs. The first exports
    # after a load still use more system CPU than later ones (seen with and without this), so
    # compare builds in alternating rounds (export-ab.sh), not one run against another.
    "$CONTRAIL_PSQL" -X -q -d "$CONTRAIL_BENCH_URL" -c "CHECKPOINT"
    sync
}

# Pinned moto release used as the local S3 and CloudWatch Logs emulator in tests.
CONTRAIL_MOTO_VERSION=${CONTRAIL_MOTO_VERSION:-5.2.5}

# Prints the path of `moto_server`, creating or reusing a virtualenv at
# ${CONTRAIL_CACHE:-$HOME/.cache/contrail}/venv-moto and installing moto (S3, CloudWatch Logs,
# KMS; not the full `server` extra, which pulls in cfn-lint, docker, sympy…) when it is missing
# or at another version.
contrail_moto_server() {
    local venv=${CONTRAIL_CACHE:-$HOME/.cache/contrail}/venv-moto
    if [[ -x $venv/bin/moto_server ]] &&
        [[ $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null) == "$CONTRAIL_MOTO_VERSION" ]]; then
        echo "$venv/bin/moto_server"
        return 0
    fi
    echo "contrail: installing moto $CONTRAIL_MOTO_VERSION into $venv" >&2
    if ! python3 -m venv "$venv" >&2; then
        echo "contrail: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
        return 1
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check \
        "moto[s3,logs,kms]==$CONTRAIL_MOTO_VERSION" flask flask-cors >&2 || return 1
    echo "$venv/bin/moto_server"
}

# Pinned pyarrow release: the tests read exported datasets with it, as analysts would.
CONTRAIL_PYARROW_VERSION=${CONTRAIL_PYARROW_VERSION:-21.0.0}

# Prints the path of a python that imports pyarrow, creating or reusing a virtualenv at
# ${CONTRAIL_CACHE:-$HOME/.cache/contrail}/venv-pyarrow and installing pyarrow when it is missing
# or at another version.
contrail_pyarrow_python() {
    local venv=${CONTRAIL_CACHE:-$HOME/.cache/contrail}/venv-pyarrow
    if [[ -x $venv/bin/python ]] &&
        [[ $("$venv/bin/python" -c 'import pyarrow; print(pyarrow.__version__)' 2>/dev/null) == "$CONTRAIL_PYARROW_VERSION" ]]; then
        echo "$venv/bin/python"
        return 0
    fi
    echo "contrail: installing pyarrow $CONTRAIL_PYARROW_VERSION into $venv" >&2
    if ! python3 -m venv "$venv" >&2; then
        echo "contrail: python3 -m venv failed; install python3-venv (apt-get install python3-venv)" >&2
        return 1
    fi
    "$venv/bin/pip" install -q --disable-pip-version-check "pyarrow==$CONTRAIL_PYARROW_VERSION" >&2 || return 1
    echo "$venv/bin/python"
}
