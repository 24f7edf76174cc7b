#!/usr/bin/env bash
# Generate a ground-truth Airflow metadata-schema fixture by running real Apache Airflow
# against a throw-away PostgreSQL cluster.
#
# Usage:
#   scripts/airflow-ddl.sh VERSION [--revision REV --via AIRFLOW_VERSION] [--name NAME]
#                                  [--use-migration-files] [--upgrade-from FIXTURE]
#
#   VERSION                 Airflow version the schema belongs to (e.g. 2.10.5).
#   --revision REV          stop the migration chain at alembic revision REV
#                           (`airflow db migrate --to-revision REV`); needs --via unless
#                           VERSION itself installs.
#   --via AIRFLOW_VERSION   Airflow installation that runs the migrations (e.g. 2.11.0).
#   --name NAME             fixture name; default VERSION. Output: tests/fixtures/ddl/airflow-NAME.sql
#   --use-migration-files   pass --use-migration-files to `airflow db migrate` (Airflow >= 3.2):
#                           build an empty database through the alembic chain instead of the ORM.
#   --upgrade-from FIXTURE  re-create the database of an existing fixture FIXTURE
#                           (tests/fixtures/ddl/airflow-FIXTURE.sql) by running the Airflow
#                           recorded in its header the same way, then run VERSION's
#                           `airflow db migrate` on it.
#
# Environment:
#   CONTRAIL_CACHE   cache root (default ~/.cache/contrail); venvs live in $CONTRAIL_CACHE/airflow/venv-<ver>
#   AIRFLOW_PYTHON   interpreter for new venvs (default python3)
#   PG_BINDIR        PostgreSQL server binaries (default /usr/lib/postgresql/15/bin)
#   KEEP_TMP=1       keep the temporary directory (logs, cluster) for debugging
#
# Pins: scripts/airflow-pins/<major.minor>.txt is passed to pip as a constraints file;
# lines starting with "#pip:" in it are extra pip options (e.g. "#pip: --only-binary=:all:").
# (pip's --uploaded-prior-to would be the natural date cutoff, but the PyPI index reachable here
# does not publish upload-time metadata, so the pin files list versions explicitly.)
set -euo pipefail
# The whole script is one compound command, so bash parses it completely before running it
# (editing the file while a run is in progress cannot break that run).
{

die() { echo "airflow-ddl: error: $*" >&2; exit 1; }
log() { echo "airflow-ddl: $*" >&2; }

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit "${1:-2}"; }

[[ $# -ge 1 ]] || usage
case "$1" in -h|--help) usage 0 ;; esac
VERSION=$1; shift
REVISION="" VIA="" NAME="" UPGRADE_FROM="" USE_MF=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --revision) REVISION=${2:?}; shift 2 ;;
        --via) VIA=${2:?}; shift 2 ;;
        --name) NAME=${2:?}; shift 2 ;;
        --upgrade-from) UPGRADE_FROM=${2:?}; shift 2 ;;
        --use-migration-files) USE_MF=1; shift ;;
        -h|--help) usage 0 ;;
        *) die "unknown argument: $1" ;;
    esac
done
[[ -n "$NAME" ]] || NAME=$VERSION
RUNNER=${VIA:-$VERSION}
if [[ -n "$UPGRADE_FROM" && -n "$REVISION" ]]; then
    die "--upgrade-from and --revision cannot be combined"
fi

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
PINS_DIR=$SCRIPT_DIR/airflow-pins
FIXTURE_DIR=$REPO_ROOT/tests/fixtures/ddl
OUT=$FIXTURE_DIR/airflow-$NAME.sql
CACHE_ROOT=${CONTRAIL_CACHE:-$HOME/.cache/contrail}/airflow
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PYTHON=${AIRFLOW_PYTHON:-python3}
FERNET_KEY=VIuEC4IWyRhNcFROzir8-mGzC3aWCzDloPXh9s6Fa3o=   # fixed fixture key

[[ -x $PG_BINDIR/initdb ]] || die "no initdb in $PG_BINDIR"
command -v pg_dump >/dev/null || die "pg_dump not found"
command -v psql >/dev/null || die "psql not found"

# ---------------------------------------------------------------- venv per Airflow version
ensure_venv() {
    local ver=$1 series pins venv stamp want
    series=$(echo "$ver" | cut -d. -f1,2)
    pins=$PINS_DIR/$series.txt
    [[ -f $pins ]] || die "no pin file $pins for Airflow $ver"
    venv=$CACHE_ROOT/venv-$ver
    stamp=$venv/.contrail-installed
    want="apache-airflow[postgres]==$ver $(sha256sum "$pins" | cut -c1-16)"
    if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
        echo "$venv"; return
    fi
    log "installing apache-airflow[postgres]==$ver into $venv (pins: $pins)"
    mkdir -p "$CACHE_ROOT"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" >&2
    "$venv/bin/pip" install -q -U pip >&2
    local -a extra=()
    local opt
    while IFS= read -r opt; do
        # shellcheck disable=SC2206
        extra+=($opt)
    done < <(sed -n 's/^#pip:[[:space:]]*//p' "$pins")
    "$venv/bin/pip" install --progress-bar off "${extra[@]}" \
        "apache-airflow[postgres]==$ver" -c "$pins" >&2 \
        || die "pip install of apache-airflow $ver failed"
    "$venv/bin/airflow" version >/dev/null 2>&1 || {
        AIRFLOW_HOME=$(mktemp -d) "$venv/bin/airflow" version >&2 || true
        die "airflow $ver installed but does not start"
    }
    echo "$want" > "$stamp"
    echo "$venv"
}

# ---------------------------------------------------------------- throw-away PostgreSQL
TMP=$(mktemp -d "${TMPDIR:-/tmp}/airflow-ddl.XXXXXX")
chmod 755 "$TMP"
PGDIR=$TMP/pg
PGDATA=$PGDIR/data
PGPORT=""
AS_PG=()
if [[ $(id -u) -eq 0 ]]; then
    AS_PG=(runuser -u postgres --)
fi

cleanup() {
    local rc=$?
    if [[ -n "$PGPORT" && -f $PGDATA/postmaster.pid ]]; then
        "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_cluster() {
    mkdir -p "$PGDIR"
    [[ ${#AS_PG[@]} -eq 0 ]] || chown postgres: "$PGDIR"
    "${AS_PG[@]}" "$PG_BINDIR/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$TMP/initdb.log" 2>&1 \
        || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
    PGPORT=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${AS_PG[@]}" "$PG_BINDIR/pg_ctl" -D "$PGDATA" -l "$PGDIR/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDIR -c fsync=off -c full_page_writes=off" \
        start >/dev/null || { cat "$PGDIR/server.log" >&2; die "postgres did not start"; }
    export PGHOST=127.0.0.1 PGPORT PGUSER=postgres
    unset PGDATABASE PGPASSWORD PGSERVICE
}

pg() { psql -X -q -v ON_ERROR_STOP=1 -d "${1}" "${@:2}"; }

# ---------------------------------------------------------------- airflow runner
# run_migrate VER DB [REV [USE_MIGRATION_FILES]] -> log in $TMP/migrate-<VER>-<DB>.log, sets MIGRATE_LOG
run_migrate() {
    local ver=$1 db=$2 rev=${3:-} mf=${4:-} venv home rc=0
    venv=$(ensure_venv "$ver")
    home=$TMP/home-$ver-$db
    mkdir -p "$home"
    MIGRATE_LOG=$TMP/migrate-$ver-$db.log
    local -a cmd=("$venv/bin/airflow" db migrate)
    [[ -z "$rev" ]] || cmd+=(--to-revision "$rev")
    [[ -z "$mf" ]] || cmd+=(--use-migration-files)
    log "airflow $ver: ${cmd[*]:1} (database $db)"
    env -u PYTHONPATH \
        AIRFLOW_HOME="$home" \
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/$db" \
        AIRFLOW__CORE__SQL_ALCHEMY_CONN="postgresql+psycopg2://postgres@127.0.0.1:$PGPORT/$db" \
        AIRFLOW__CORE__LOAD_EXAMPLES=False \
        AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS=False \
        AIRFLOW__CORE__FERNET_KEY="$FERNET_KEY" \
        AIRFLOW__CORE__EXECUTOR=LocalExecutor \
        AIRFLOW__LOGGING__LOGGING_LEVEL=INFO \
        "${cmd[@]}" >"$MIGRATE_LOG" 2>&1 || rc=$?
    local head
    head=$(pg "$db" -At -c "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version" 2>/dev/null || true)
    if [[ $rc -ne 0 ]]; then
        if [[ -n "$rev" && "$head" == "$rev" ]]; then
            log "airflow $ver exited $rc after the alembic part reached $rev (known post-step failure; tolerated):"
            grep -E 'Error|error' "$MIGRATE_LOG" | tail -n 2 | sed 's/^/    /' >&2 || true
        else
            tail -n 40 "$MIGRATE_LOG" >&2
            die "airflow $ver db migrate failed (exit $rc, alembic_version=${head:-none})"
        fi
    fi
    if [[ -n "$rev" && "$head" != "$rev" ]]; then
        die "alembic_version is '${head:-none}', expected $rev"
    fi
    [[ -n "$head" ]] || die "no alembic_version row after migrate"
}

# "create_all" when Airflow built the tables from the ORM, otherwise count alembic steps.
describe_migration() {
    local logf=$1
    if grep -q 'Creating Airflow database tables from the ORM\|Creating tables from the ORM\|stamp_revision' "$logf" \
        && ! grep -q 'Running upgrade ' "$logf"; then
        echo create_all
    else
        echo "migrations:$(grep -c 'Running upgrade ' "$logf" || true)"
    fi
}

header_field() { # header_field FILE KEY
    sed -n '1s/^-- contrail-fixture: //p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

# ---------------------------------------------------------------- main
mkdir -p "$FIXTURE_DIR"
# Install first (slow, no cluster needed yet).
ensure_venv "$RUNNER" >/dev/null
if [[ -n "$UPGRADE_FROM" ]]; then
    SRC=$FIXTURE_DIR/airflow-$UPGRADE_FROM.sql
    [[ -f $SRC ]] || die "no fixture $SRC to upgrade from"
    SRC_VER=$(header_field "$SRC" airflow)
    SRC_REV=$(header_field "$SRC" revision)
    SRC_METHOD=$(header_field "$SRC" method)
    SRC_BY=$(header_field "$SRC" made-by)
    [[ -n "$SRC_BY" && -n "$SRC_REV" ]] || die "cannot read the header of $SRC"
    [[ "$SRC_METHOD" != upgraded ]] || die "chained upgrades are not supported ($SRC is itself upgraded)"
    ensure_venv "$SRC_BY" >/dev/null
fi

start_cluster
DB=airflow
pg postgres -c "CREATE DATABASE $DB"

if [[ -n "$UPGRADE_FROM" ]]; then
    if [[ "$SRC_METHOD" == create_all ]]; then
        run_migrate "$SRC_BY" "$DB"
    else
        run_migrate "$SRC_BY" "$DB" "$SRC_REV"
    fi
    got=$(pg "$DB" -At -c "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version")
    [[ "$got" == "$SRC_REV" ]] || die "re-created source database is at $got, fixture $UPGRADE_FROM says $SRC_REV"
    # The re-created source must match the committed fixture (same schema dump).
    pg_dump --schema-only --no-owner --no-privileges "$DB" | grep -v '^\\' > "$TMP/src-now.sql"
    if ! diff -q <(grep -v '^--' "$TMP/src-now.sql") \
                 <(sed '/^INSERT INTO public.alembic_version/d' "$SRC" | grep -v '^--') >/dev/null; then
        log "warning: re-created $UPGRADE_FROM database differs from $SRC (diff below)"
        diff <(grep -v '^--' "$TMP/src-now.sql") \
             <(sed '/^INSERT INTO public.alembic_version/d' "$SRC" | grep -v '^--') | head -n 20 >&2 || true
    fi
    SRC_DESC=$(describe_migration "$MIGRATE_LOG")
    run_migrate "$VERSION" "$DB"
    DESC=$(describe_migration "$MIGRATE_LOG")
    METHOD=upgraded
    MADE_BY=$VERSION
    if [[ "$SRC_METHOD" == create_all ]]; then
        src_how="airflow $SRC_BY \`airflow db migrate\` on an empty database ($SRC_DESC)"
    else
        src_how="airflow $SRC_BY \`airflow db migrate --to-revision $SRC_REV\` on an empty database ($SRC_DESC)"
    fi
    HOW="made by: $src_how = fixture $UPGRADE_FROM, then airflow $VERSION \`airflow db migrate\` (${DESC/migrations:/} alembic upgrade steps)"
else
    run_migrate "$RUNNER" "$DB" "$REVISION" "$USE_MF"
    DESC=$(describe_migration "$MIGRATE_LOG")
    MADE_BY=$RUNNER
    if [[ "$DESC" == create_all ]]; then
        METHOD=create_all
        if [[ -n "$REVISION" ]]; then
            HOW="made by: airflow $RUNNER \`airflow db migrate --to-revision $REVISION\` on an empty database; Airflow built the tables from its ORM (create_all) and stamped the revision, no migration ran"
        else
            HOW="made by: airflow $RUNNER \`airflow db migrate\` on an empty database; Airflow built the tables from its ORM (create_all) and stamped the head revision"
        fi
    else
        METHOD=migrations
        HOW="made by: airflow $RUNNER \`airflow db migrate${REVISION:+ --to-revision $REVISION}${USE_MF:+ --use-migration-files}\` on an empty database, running ${DESC#migrations:} alembic upgrade steps of the $RUNNER migration chain"
    fi
fi

REV=$(pg "$DB" -At -c "SELECT string_agg(version_num, ',' ORDER BY version_num) FROM alembic_version")
PGVER=$(pg "$DB" -At -c "SHOW server_version" | awk '{print $1}')
NTABLES=$(pg "$DB" -At -c "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE'")

{
    echo "-- contrail-fixture: airflow=$VERSION revision=$REV method=$METHOD made-by=$MADE_BY postgres=$PGVER"
    echo "-- $HOW; schema via pg_dump --schema-only --no-owner --no-privileges (psql meta-commands removed), then the alembic_version rows. Generated by scripts/airflow-ddl.sh."
    pg_dump --schema-only --no-owner --no-privileges "$DB" | grep -v '^\\'
    pg "$DB" -At -c "SELECT format('INSERT INTO public.alembic_version (version_num) VALUES (%L);', version_num) FROM alembic_version ORDER BY version_num"
} > "$TMP/fixture.sql"

# Self-check: the fixture must load into an empty database.
pg postgres -c "CREATE DATABASE fixture_check"
psql -X -q -v ON_ERROR_STOP=1 -d fixture_check -f "$TMP/fixture.sql" >"$TMP/check.log" 2>&1 \
    || { cat "$TMP/check.log" >&2; die "generated fixture does not load cleanly"; }
chk=$(pg fixture_check -At -c "SELECT count(*) FROM information_schema.tables WHERE table_schema='public' AND table_type='BASE TABLE'")
[[ "$chk" == "$NTABLES" ]] || die "reloaded fixture has $chk tables, source has $NTABLES"

cp "$TMP/fixture.sql" "$OUT"
log "airflow=$VERSION revision=$REV method=$METHOD made-by=$MADE_BY tables=$NTABLES ($DESC)"
echo "$OUT"
exit 0
}
