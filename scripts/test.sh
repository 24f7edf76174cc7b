#!/usr/bin/env bash
# Runs every contrail test: unit tests and the integration tests against a real PostgreSQL
# server and a moto server (S3 emulator), both started by the test harness itself. Installs the
# PostgreSQL server packages, moto and pyarrow (in cached virtualenvs) first when they are missing.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

CONTRAIL_PG_BIN=$(contrail_pg_bindir)
export CONTRAIL_PG_BIN
CONTRAIL_MOTO_SERVER=$(contrail_moto_server)
export CONTRAIL_MOTO_SERVER
CONTRAIL_PYTHON=$(contrail_pyarrow_python)
export CONTRAIL_PYTHON

# AWS configuration for the tests, read by the library the standard way. Nothing of the
# developer's own AWS setup may leak in: the tests reach moto on 127.0.0.1 only.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
cargo test --all-targets "$@"
if [[ $# -eq 0 ]]; then
    # --all-targets leaves out documentation examples; they are tests too.
    cargo test --doc
fi
