#!/usr/bin/env bash
# `make test`: install what the tests need, start a throwaway PostgreSQL, run every gate
# (format, lints, the committed query metadata) and every test tier, then tear down.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

dbdir=$(mktemp -d /tmp/harbormaster-test-db.XXXXXX)
cleanup() {
  scripts/test-db.sh stop "$dbdir" || true
  rm -rf "$dbdir"
}
trap cleanup EXIT

step "starting a throwaway PostgreSQL"
DATABASE_URL=$(scripts/test-db.sh start "$dbdir")
export DATABASE_URL
cargo sqlx database create
cargo sqlx migrate run --source migrations

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo sqlx prepare --check"
cargo sqlx prepare --workspace --check -- --all-targets

step "building the local test images"
scripts/test-images.sh build

step "docker-compose config"
docker-compose config -q

step "cargo test"
cargo test --locked --workspace --all-targets
