#!/usr/bin/env bash
# Instructions per forwarded packet of the engine, from callgrind on the in-memory
# scenario of the criterion bench (examples/forward_instructions.rs). Unlike CPU time, the
# count does not move with the machine's load: use it to judge a change to the hot path.
#   bash benches/callgrind.sh [subscribers ...]     (default: 1 10 100)
#   MODE=relay-in bash benches/callgrind.sh         (a room spanning nodes: the speaker's
#                                                    frames arrive relayed; relay-out: this
#                                                    node also relays its speaker on)
# Valgrind reports a CPU without AVX-512: aws-lc then takes its AVX2/AES-NI code paths, so
# crypto counts are close to, not identical with, what the machine runs natively.
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMES=${FRAMES:-200}
MODE=${MODE:-local}
cargo build --quiet --profile release -p chorus-bench --example forward_instructions
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '%-12s %-10s %-14s %s\n' subscribers forwarded instructions 'Ir/packet'
for n in "${@:-1 10 100}"; do
  for s in $n; do
    line=$(valgrind --tool=callgrind --toggle-collect='*counted_engine_step*' \
      --callgrind-out-file="$out/cg.$s" target/release/examples/forward_instructions "$s" "$FRAMES" "$MODE" 2>/dev/null)
    fwd=${line##*forwarded=}
    ir=$(grep -m1 '^summary:' "$out/cg.$s" | awk '{print $2}')
    printf '%-12s %-10s %-14s %s\n' "$s" "$fwd" "$ir" "$(( ir / fwd ))"
    [[ -n "${KEEP:-}" ]] && cp "$out/cg.$s" "${KEEP}.$s"
  done
done
