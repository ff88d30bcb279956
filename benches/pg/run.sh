#!/usr/bin/env bash
# The database's own ceiling for hookflow's hot statements, measured with
# pgbench against a PostgreSQL of your choice:
#
#   benches/pg/run.sh postgres://postgres@127.0.0.1:5432/postgres [SECONDS] [CLIENTS]
#
# Creates a scratch database (hookflow_pgbench), its tables with
# `hookflow migrate`, then runs, each for SECONDS (default 10) with CLIENTS
# connections (default 16):
#   ingest.sql        one event, its run and its queue row per commit
#   claim_finish.sql  claim a free run, then finish it (two commits)
# and drops the scratch database. Compare with `cargo bench --bench load`.
set -euo pipefail
url="${1:?usage: run.sh POSTGRES_URL [SECONDS] [CLIENTS]}"
seconds="${2:-10}"
clients="${3:-16}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HOOKFLOW_BIN:-$here/../../target/debug/hookflow}"
server="${url%/*}"
db=hookflow_pgbench
psql "$url" -qc "DROP DATABASE IF EXISTS $db" -qc "CREATE DATABASE $db"
trap 'psql "$url" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
"$bin" migrate --store "$server/$db"
echo "== ingest: one event + run + queue row per commit, $clients clients, ${seconds}s"
pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$here/ingest.sql" "$server/$db" | grep -E "^(tps|latency average|number of transactions actually)"
# Free runs for the claims: more than the pair can take in the time.
psql "$server/$db" -qc "UPDATE hookflow.queue SET node = NULL, token = NULL, lease_until = NULL"
rows=$(psql "$server/$db" -Atc "SELECT count(*) FROM hookflow.queue")
echo "== claim + finish: $clients clients, ${seconds}s, $rows free runs"
pgbench -n -c "$clients" -j 2 -T "$seconds" -f "$here/claim_finish.sql" "$server/$db" | grep -E "^(tps|latency average|number of transactions actually)"
echo "(each claim_finish transaction is one claim and one finish: tps = runs/s)"
