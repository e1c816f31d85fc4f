#!/usr/bin/env bash
# The scale figures of BENCHMARKS.md ("Scale"), with the release binary:
#   1. `harbormaster bench seed` of N workloads into a database of its own (ingest + evaluation);
#   2. `harbormaster serve` on that database, collecting the local Docker engine;
#   3. `harbormaster bench load` on every page and list for DURATION seconds, and meanwhile
#      STARTS containers mounting the Docker socket, each timed from the engine's StartedAt to
#      its open `mount.runtime_socket` finding being visible in the database (event → finding);
#   4. the server's peak resident memory (VmHWM).
# Usage: DATABASE_URL=postgres://USER@HOST:PORT/any scripts/bench-scale.sh [N]
# Needs psql, the docker CLI and the test image (scripts/test-images.sh build).
set -euo pipefail

workloads=${1:-100000}
duration=${DURATION:-60}
concurrency=${CONCURRENCY:-8}
starts=${STARTS:-20}
image=${IMAGE:-harbormaster-test/busybox:1}
bin=${BIN:-target/release/harbormaster}
base=${DATABASE_URL%/*}
db=harbormaster_bench_scale_cli
url=$base/$db
prefix=hm-bench-latency-$$
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
  ids=$(docker ps -aq --filter "name=^/$prefix") && [ -n "$ids" ] && docker rm -f $ids >/dev/null || true
}
trap cleanup EXIT

psql "$base/postgres" -qc "drop database if exists $db with (force)" -c "create database $db"
export DATABASE_URL=$url
"$bin" migrate
"$bin" bench seed --workloads "$workloads"
token=$("$bin" token create --name bench-load --role viewer 2>/dev/null)

HARBORMASTER_BIND=127.0.0.1:$port HARBORMASTER_DOCKER=unix:///var/run/docker.sock RUST_LOG=warn \
  "$bin" serve 2>/dev/null &
server=$!
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
until [ "$(psql "$url" -Atc "select count(*) from sources where kind = 'docker' and last_resync_at is not null")" = 1 ]; do
  sleep 0.2
done

"$bin" bench load --url "http://127.0.0.1:$port" --token "$token" --concurrency "$concurrency" \
  --duration "$duration" --server-pid "$server" > /tmp/bench-scale-load.$$ &
loader=$!

sleep 2
latencies=()
for i in $(seq 1 "$starts"); do
  name=$prefix-$i
  docker run -d -v /var/run/docker.sock:/var/run/docker.sock:ro --name "$name" "$image" sleep 3600 >/dev/null
  started=$(docker inspect -f '{{.State.StartedAt}}' "$name")
  until [ "$(psql "$url" -Atc "select count(*) from findings f join workloads w on w.id = f.workload_id where w.name = '$name' and f.check_id = 'mount.runtime_socket' and f.status = 'open'")" = 1 ]; do
    :
  done
  seen=$(date -u +%s.%N)
  latencies+=("$(python3 -c "import datetime,sys; s=sys.argv[1]; s=s[:26]+'Z' if len(s)>27 else s; t=datetime.datetime.strptime(s.replace('Z',''),'%Y-%m-%dT%H:%M:%S.%f').replace(tzinfo=datetime.timezone.utc).timestamp(); print(round((float(sys.argv[2])-t)*1000))" "$started" "$seen")")
done
wait "$loader"
cat /tmp/bench-scale-load.$$
rm -f /tmp/bench-scale-load.$$
printf '%s\n' "${latencies[@]}" | sort -n | python3 -c "
import math,sys
v=[int(x) for x in sys.stdin.read().split()]
p=lambda q: v[max(1,math.ceil(len(v)*q))-1]
print(f'event -> finding under load ({len(v)} containers, psql polling): p50 {p(.5)} ms, p95 {p(.95)} ms, p99 {p(.99)} ms, max {v[-1]} ms')"
