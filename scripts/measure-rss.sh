#!/usr/bin/env bash
# The service's memory, idle and under a burst, for deploy/deployment.yaml's requests and limits: runs
# `node dist/src/cli.js run` (what the image runs, NODE_ENV=production) against a fresh database on a real
# PostgreSQL and the fake API server (so client-node, the Job watch and the reconciler are loaded and busy),
# then reads VmRSS and VmHWM from /proc/<pid>/status:
#   idle    after IDLE_SECONDS with nothing to do (the poll, the reconcile, the listener ping keep running)
#   burst   BURST_ROWS verified in BURST_BATCHES statements (each a notification), a dispatch claiming them all
#           in one run, more verifications while it trains, and /metrics scraped every 100 ms throughout
# Prints one line per phase. Needs a built tree (npx tsc -p tsconfig.json), psql and a PostgreSQL that this
# user may CREATE DATABASE on.
#   scripts/measure-rss.sh                                   # postgres://postgres@127.0.0.1:5432/postgres
#   MEASURE_DATABASE_URL=postgres://… BURST_ROWS=20000 scripts/measure-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${MEASURE_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
IDLE_SECONDS=${IDLE_SECONDS:-60}
BURST_ROWS=${BURST_ROWS:-5000}
BURST_BATCHES=${BURST_BATCHES:-50}
db=training_controller_rss_$$
url=${BASE%/*}/$db
tmp=$(mktemp -d)
pid=""
fake=""

cleanup() {
  set +e
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  [ -n "$fake" ] && kill "$fake" 2>/dev/null && wait "$fake" 2>/dev/null
  psql -q "$BASE" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT

# Memory, and CPU seconds used so far (utime + stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks).
mem() {
  awk '/^VmRSS|^VmHWM/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$pid/status"
  awk -v hz="$(getconf CLK_TCK)" '{ printf "cpu %.2f s  ", ($14 + $15) / hz }' "/proc/$pid/stat"
}

psql -q "$BASE" -c "CREATE DATABASE $db" >/dev/null
NODE_ENV=production DATABASE_URL=$url node dist/src/cli.js migrate >"$tmp/migrate.log" 2>&1
node dist/test/support/fakeKubeServer.js --kubeconfig "$tmp/kubeconfig" >"$tmp/fake.log" 2>&1 &
fake=$!
until grep -q '"event":"listening"' "$tmp/fake.log"; do sleep 0.2; done

port=$(node -e "const s = require('net').createServer().listen(0, () => { console.log(s.address().port); s.close(); })")
NODE_ENV=production DATABASE_URL=$url KUBECONFIG=$tmp/kubeconfig TRAINING_NAMESPACE=default HTTP_PORT=$port \
  RECONCILE_INTERVAL_SECONDS=5 node dist/src/cli.js run >"$tmp/service.log" 2>&1 &
pid=$!
until grep -q 'Listening for verified annotations' "$tmp/service.log"; do
  kill -0 "$pid" 2>/dev/null || { tail -5 "$tmp/service.log" >&2; exit 1; }
  sleep 0.2
done
echo "started   $(mem)"
sleep "$IDLE_SECONDS"
echo "idle ${IDLE_SECONDS}s  $(mem)"

scrape() { while kill -0 "$pid" 2>/dev/null; do curl -s "http://127.0.0.1:$port/metrics" >/dev/null; sleep 0.1; done; }
scrape &
scraper=$!
per=$((BURST_ROWS / BURST_BATCHES))
for _ in $(seq "$BURST_BATCHES"); do
  psql -q "$url" -c "INSERT INTO annotations (verified) SELECT true FROM generate_series(1, $per)"
done
until grep -q '"event":"create"' "$tmp/fake.log"; do sleep 0.2; done
# More verifications while the run trains (recounts, skips), then a while for the reconcile and the scrapes.
for _ in $(seq 10); do psql -q "$url" -c "INSERT INTO annotations (verified) SELECT true FROM generate_series(1, $per)"; done
sleep 15
echo "burst     $(mem)(${BURST_ROWS} rows in ${BURST_BATCHES} statements, one run created, /metrics every 100 ms)"
kill "$scraper" 2>/dev/null || true
sleep 30
echo "after 30s $(mem)"
