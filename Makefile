# The two set-up commands of the README:
#   make run   installs what is missing, builds, serves http://127.0.0.1:8080
#   make test  installs what the tests need and runs every gate and test tier
SHELL := /bin/bash

.PHONY: run test build deps test-deps test-images fmt lint sqlx-prepare bench

run: deps
	cargo build --release --locked --bin harbormaster
	./target/release/harbormaster serve

build:
	cargo build --locked

deps:
	@scripts/install-deps.sh run

test-deps:
	@scripts/install-deps.sh test

test:
	@scripts/test.sh

test-images:
	@scripts/test-images.sh

fmt:
	cargo fmt --all

# Regenerate .sqlx/ after changing a query (needs DATABASE_URL pointing at a migrated database).
sqlx-prepare:
	cargo sqlx prepare --workspace -- --all-targets

# Benchmarks against the issues' targets; figures and how to read them in BENCHMARKS.md.
bench:
	cargo bench
