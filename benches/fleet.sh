#!/usr/bin/env bash
# One SFU node against two, behind one signaling node on one Redis, under the same
# chorus-load scenario (default 20 rooms × 1 speaker × 20 listeners): SFU CPU per
# forwarded packet on each node, join → first audio, and how the rooms were placed.
# Then the time from SIGKILL of an SFU node to audio back for its rooms is measured by
# the fleet test (`cargo test -p chorus-signaling --test fleet -- --nocapture`).
#
# Everything runs on loopback, bounded (DURATION seconds per run, RUNS runs per layout,
# alternated), and every process started here is stopped by its pid.
#
#   bash benches/fleet.sh            # release builds of chorus-sfu, chorus-signaling, chorus-load
#   ROOMS=20 SPEAKERS=1 LISTENERS=20 DURATION=20 RUNS=3 bash benches/fleet.sh
#
# The SFU figures cover each node's whole run (joins included: DTLS set-up costs
# ≈ 2 ms per peer), read from /proc/<pid> and the node's own /metrics.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOMS=${ROOMS:-20}
SPEAKERS=${SPEAKERS:-1}
LISTENERS=${LISTENERS:-20}
DURATION=${DURATION:-20}
RUNS=${RUNS:-3}
BIN=${BIN:-target/release}
OUT=${OUT:-benches/results/fleet-$(date -u +%Y-%m-%d)}

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 2; }
if [ ! -x "$BIN/chorus-load" ] || [ ! -x "$BIN/chorus-sfu" ] || [ ! -x "$BIN/chorus-signaling" ]; then
  cargo build --release --locked -p chorus-signaling --bin chorus-signaling \
    -p chorus-sfu --bin chorus-sfu -p chorus-bench --bin chorus-load
fi
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }   # clock ticks, all threads
forwarded_of() { curl -s "http://$1/metrics" | awk '/^chorus_sfu_packets_forwarded_total/ {print $2}'; }
wait_for_line() { # file prefix → the rest of the first matching line
  for _ in $(seq 300); do
    line=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
    [ -n "$line" ] && { echo "${line#"$2"}"; return; }
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

run_layout() { # sfus run → one line of results
  local n=$1 run=$2 dir="$work/$1-$2"
  mkdir -p "$dir"
  local rport; rport=$(free_port)
  redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$dir" >/dev/null &
  pids+=($!); local redis_pid=$!
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  local redis="redis://127.0.0.1:$rport/0"
  local key; key=$("$BIN/chorus-signaling" --token-key "$dir/token.pem" public-key)
  local sfu_pids=() sfu_metrics=()
  for i in $(seq "$n"); do
    local mport; mport=$(free_port)
    "$BIN/chorus-sfu" --grpc 127.0.0.1:0 --udp 127.0.0.1:0 --metrics "127.0.0.1:$mport" \
      --token-public-key "$key" --redis "$redis" --node-id "sfu-$i" >"$dir/sfu-$i.out" 2>"$dir/sfu-$i.log" &
    pids+=($!); sfu_pids+=($!); sfu_metrics+=("127.0.0.1:$mport")
    wait_for_line "$dir/sfu-$i.out" "grpc " >/dev/null
  done
  "$BIN/chorus-signaling" --listen 127.0.0.1:0 --data-dir "$dir/sig" --token-key "$dir/token.pem" \
    --redis "$redis" --node-id sig-1 >"$dir/sig.out" 2>"$dir/sig.log" &
  pids+=($!); local sig_pid=$!
  local url; url=$(wait_for_line "$dir/sig.out" "Chorus signaling is running: open ")
  local cpu0=() fwd0=()
  for i in "${!sfu_pids[@]}"; do cpu0+=("$(cpu_of "${sfu_pids[$i]}")"); fwd0+=("$(forwarded_of "${sfu_metrics[$i]}")"); done
  "$BIN/chorus-load" --url "$url" --api-key-file "$dir/sig/api-key.json" --rooms "$ROOMS" \
    --speakers "$SPEAKERS" --listeners "$LISTENERS" --duration "$DURATION" --quiet --json \
    >"$dir/load.json" 2>"$dir/load.log" || true
  local line="sfus=$n run=$run"
  local hz; hz=$(getconf CLK_TCK)
  for i in "${!sfu_pids[@]}"; do
    local cpu1 fwd1; cpu1=$(cpu_of "${sfu_pids[$i]}"); fwd1=$(forwarded_of "${sfu_metrics[$i]}")
    line+=" $(python3 -c "c=($cpu1-${cpu0[$i]})/$hz; f=$fwd1-${fwd0[$i]}; print(f'sfu-$((i+1)):us_per_pkt={c*1e6/f if f else float(\"nan\"):.2f},pkts={f}')")"
  done
  line+=" $(python3 -c "import json; r=json.load(open('$dir/load.json')); d=r['join_to_first_audio_ms']; print(f\"join_p50_ms={d['p50']:.0f} join_p99_ms={d['p99']:.0f} clean={r['join_failures']==0 and r['loss']['lost']==0} joined={r['joined']}/{r['peers']}\")")"
  echo "$line"
  for p in "${sfu_pids[@]}" "$sig_pid" "$redis_pid"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

echo "fleet benchmark: $ROOMS rooms × $SPEAKERS speaker(s) × $LISTENERS listeners, ${DURATION}s window, $RUNS runs per layout" | tee "$OUT/fleet.txt"
for run in $(seq "$RUNS"); do
  for n in 1 2; do
    run_layout "$n" "$run" | tee -a "$OUT/fleet.txt"
  done
done
