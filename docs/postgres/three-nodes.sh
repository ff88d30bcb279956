#!/usr/bin/env bash
# Three hookflow nodes on one PostgreSQL database, with a small load
# balancer in front, all on this machine:
#
#   docs/postgres/three-nodes.sh postgres://user:password@host:5432/db [PORT]
#
# Senders post to http://127.0.0.1:PORT (default 8080); the nodes listen on
# PORT+1..PORT+3 and share the work, the history, the live stream and the
# retries (README: "Many nodes on PostgreSQL"). Ctrl-C stops them all.
# HOOKFLOW_BIN picks the binary (default: target/release/hookflow, built
# with `cargo build --release`); other HOOKFLOW_* settings apply to every
# node.
set -euo pipefail
url="${1:?usage: three-nodes.sh POSTGRES_URL [PORT]}"
port="${2:-8080}"
here="$(cd "$(dirname "$0")" && pwd)"
bin="${HOOKFLOW_BIN:-$here/../../target/release/hookflow}"
"$bin" migrate --store "$url"
pids=()
stop() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM
backends=()
for i in 1 2 3; do
    "$bin" serve --listen "127.0.0.1:$((port + i))" --store "$url" &
    pids+=($!)
    backends+=("127.0.0.1:$((port + i))")
done
python3 "$here/balance.py" "127.0.0.1:$port" "${backends[@]}" &
pids+=($!)
wait
