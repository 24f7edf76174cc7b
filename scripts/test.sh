#!/usr/bin/env bash
# Runs every contrail test: unit tests and the integration tests against a real PostgreSQL
# server (started by the test harness itself). Installs the PostgreSQL server packages first
# when they are missing. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

CONTRAIL_PG_BIN=$(contrail_pg_bindir)
export CONTRAIL_PG_BIN
cargo test --all-targets "$@"
