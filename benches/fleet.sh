#!/usr/bin/env bash
# One SFU node against two, behind one signaling node on one Redis, under the same
# chorus-load scenario (default 20 rooms × 1 speaker × 20 listeners): SFU CPU per
# forwarded packet on each node, join → first audio, and how the rooms were placed;
# the median over RUNS runs per layout (layouts alternated, so drift hits both).
# Then (FAILOVER_RUNS > 0) the time from SIGKILL of an SFU node to audio back for its
# room, from the fleet test `a_killed_sfu_node_moves_its_rooms_and_audio_comes_back`
# (`cargo test --release -p chorus-signaling --test fleet`, run FAILOVER_RUNS times;
# the first run compiles the test and its dev-dependencies in release).
#
# Everything runs on loopback, bounded (DURATION seconds per run), and every process
# started here is stopped by its pid.
#
#   bash benches/fleet.sh            # release builds of chorus-sfu, chorus-signaling, chorus-load
#   ROOMS=20 SPEAKERS=1 LISTENERS=20 DURATION=20 RUNS=3 FAILOVER_RUNS=5 bash benches/fleet.sh
#
# The SFU figures cover each node's whole load run (joins included: DTLS set-up costs
# ≈ 2 ms per peer), read from /proc/<pid> and the node's own /metrics. chorus-load's
# peers run on the same machine and compete for its cores.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOMS=${ROOMS:-20}
SPEAKERS=${SPEAKERS:-1}
LISTENERS=${LISTENERS:-20}
DURATION=${DURATION:-20}
RUNS=${RUNS:-3}
FAILOVER_RUNS=${FAILOVER_RUNS:-5}
BIN=${BIN:-target/release}
OUT=${OUT:-benches/results/fleet-$(date -u +%Y-%m-%d)}

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)"; exit 2; }
command -v redis-cli >/dev/null || { echo "needs redis-cli (apt-get install redis-tools)"; exit 2; }
if [ ! -x "$BIN/chorus-load" ] || [ ! -x "$BIN/chorus-sfu" ] || [ ! -x "$BIN/chorus-signaling" ]; then
  cargo build --release --locked -p chorus-signaling --bin chorus-signaling \
    -p chorus-sfu --bin chorus-sfu -p chorus-bench --bin chorus-load
fi
mkdir -p "$OUT/raw"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu_of() { awk '{print $14+$15}' "/proc/$1/stat"; }   # clock ticks, all threads (comm has no spaces)
forwarded_of() { curl -sf "$1" | awk '/^chorus_sfu_packets_forwarded_total/ {s+=$2} END {printf "%d\n", s}'; }
wait_for_line() { # file prefix → the rest of the first matching line (30 s at most)
  local line
  for _ in $(seq 300); do
    line=$(grep -m1 "^$2" "$1" 2>/dev/null || true)
    if [ -n "$line" ]; then echo "${line#"$2"}"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
stop() { # pid…: SIGTERM each, wait for it
  for p in "$@"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# One run of one layout. Runs in this shell (not a pipeline's subshell), so every pid
# is in $pids for the trap; appends one JSON line to $OUT/raw/runs.jsonl.
run_layout() { # sfus run
  local n=$1 run=$2 dir="$work/$1-$2"
  mkdir -p "$dir"
  local rport; rport=$(free_port)
  redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
  local redis_pid=$!; pids+=("$redis_pid")
  for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
  local redis="redis://127.0.0.1:$rport/0"
  local key; key=$("$BIN/chorus-signaling" --token-key "$dir/token.pem" public-key)
  local sfu_pids=() sfu_metrics=()
  for i in $(seq "$n"); do
    "$BIN/chorus-sfu" --grpc 127.0.0.1:0 --udp 127.0.0.1:0 --metrics 127.0.0.1:0 \
      --token-public-key "$key" --redis "$redis" --node-id "sfu-$i" >"$dir/sfu-$i.out" 2>"$dir/sfu-$i.log" &
    sfu_pids+=($!); pids+=($!)
    wait_for_line "$dir/sfu-$i.out" "grpc " >/dev/null
    sfu_metrics+=("$(wait_for_line "$dir/sfu-$i.out" "metrics ")")
  done
  "$BIN/chorus-signaling" --listen 127.0.0.1:0 --data-dir "$dir/sig" --token-key "$dir/token.pem" \
    --redis "$redis" --node-id sig-1 --max-connections-per-ip 100000 >"$dir/sig.out" 2>"$dir/sig.log" &
  # (Every peer comes from 127.0.0.1: the default of 128 connections per IP would
  # refuse most of them with 429.)
  local sig_pid=$!; pids+=("$sig_pid")
  local url; url=$(wait_for_line "$dir/sig.out" "Chorus signaling is running: open ")
  # Placement needs every node's heartbeat: wait until signaling sees all of them.
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$rport" --raw SCARD chorus:sfu-nodes)" -ge "$n" ] && break; sleep 0.1
  done
  local cpu0=() fwd0=()
  for i in "${!sfu_pids[@]}"; do cpu0+=("$(cpu_of "${sfu_pids[$i]}")"); fwd0+=("$(forwarded_of "${sfu_metrics[$i]}")"); done
  "$BIN/chorus-load" --url "$url" --api-key-file "$dir/sig/api-key.json" --rooms "$ROOMS" \
    --speakers "$SPEAKERS" --listeners "$LISTENERS" --duration "$DURATION" --quiet --json \
    >"$dir/load.json" 2>"$dir/load.log" &
  local load_pid=$!; pids+=("$load_pid")
  # Rooms bound to each node (placement), the most seen while the load runs: a room
  # is unbound again once it empties.
  local rooms=() i c
  for i in "${!sfu_pids[@]}"; do rooms+=(0); done
  while kill -0 "$load_pid" 2>/dev/null; do
    for i in "${!sfu_pids[@]}"; do
      c=$(redis-cli -p "$rport" --raw SCARD "chorus:sfu-rooms:sfu-$((i + 1))" 2>/dev/null || echo 0)
      [ "${c:-0}" -gt "${rooms[$i]}" ] 2>/dev/null && rooms[i]=$c
    done
    sleep 0.5
  done
  local rc=0
  wait "$load_pid" || rc=$?
  local cpu1=() fwd1=()
  for i in "${!sfu_pids[@]}"; do
    cpu1+=("$(cpu_of "${sfu_pids[$i]}")"); fwd1+=("$(forwarded_of "${sfu_metrics[$i]}")")
  done
  stop "${sfu_pids[@]}" "$sig_pid" "$redis_pid"
  if [ ! -s "$dir/load.json" ]; then
    echo "chorus-load failed (exit $rc):" >&2; tail -20 "$dir/load.log" >&2; return 1
  fi
  N=$n RUN=$run RC=$rc HZ=$(getconf CLK_TCK) CPU0="${cpu0[*]}" CPU1="${cpu1[*]}" FWD0="${fwd0[*]}" \
    FWD1="${fwd1[*]}" ROOMS_ON="${rooms[*]}" LOAD="$dir/load.json" python3 - <<'EOF' >>"$OUT/raw/runs.jsonl"
import json, os
e = os.environ
ints = lambda k: [int(x) for x in e[k].split()]
hz = int(e["HZ"])
r = json.load(open(e["LOAD"]))
nodes = []
for i, (c0, c1, f0, f1, rooms) in enumerate(zip(ints("CPU0"), ints("CPU1"), ints("FWD0"), ints("FWD1"), ints("ROOMS_ON"))):
    cpu, pkts = (c1 - c0) / hz, f1 - f0
    nodes.append({"node": f"sfu-{i + 1}", "rooms": rooms, "cpu_s": cpu, "packets": pkts,
                  "us_per_pkt": cpu * 1e6 / pkts if pkts else None})
cpu = sum(x["cpu_s"] for x in nodes); pkts = sum(x["packets"] for x in nodes)
j = r["join_to_first_audio_ms"]
print(json.dumps({
    "sfus": int(e["N"]), "run": int(e["RUN"]), "load_exit": int(e["RC"]), "nodes": nodes,
    "fleet_us_per_pkt": cpu * 1e6 / pkts if pkts else None,
    "join_p50_ms": j["p50"], "join_p99_ms": j["p99"], "join_max_ms": j["max"],
    "joined": r["joined"], "peers": r["peers"], "join_failures": r["join_failures"],
    "listeners_hearing": r["listeners_hearing_audio"], "listeners": r["listeners"],
    "lost": r["loss"]["lost"], "loss_ratio": r["loss"]["loss_ratio"],
    "heard_right": r["hearing"]["heard_right"], "decoding": r["hearing"]["decoding_listeners"],
    "load_tool_us_per_pkt": (r.get("sfu") or {}).get("cpu_us_per_forwarded_packet"),
}))
EOF
  # The run's report without the per-peer samples, for the record.
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); [d.pop('samples',None) for d in r.values() if isinstance(d,dict)]; json.dump(r,open(sys.argv[2],'w'),indent=1)" \
    "$dir/load.json" "$OUT/raw/load-sfus$n-run$run.json"
  tail -1 "$OUT/raw/runs.jsonl"
}

: >"$OUT/raw/runs.jsonl"
echo "fleet benchmark: $ROOMS rooms × $SPEAKERS speaker(s) × $LISTENERS listeners, ${DURATION}s window, $RUNS runs per layout" | tee "$OUT/fleet.txt"
for run in $(seq "$RUNS"); do
  for n in 1 2; do
    run_layout "$n" "$run"
  done
done

# Medians per layout (per node: nodes sorted by packets, so "busier"/"other" line up).
python3 - "$OUT/raw/runs.jsonl" <<'EOF' | tee -a "$OUT/fleet.txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("| SFU nodes | rooms per node | µs/pkt per node (median) | µs/pkt fleet | packets per node | join→audio p50 ms | p99 ms | clean runs |")
print("|---|---|---|---|---|---|---|---|")
for n in sorted({r["sfus"] for r in runs}):
    rs = [r for r in runs if r["sfus"] == n]
    per = [sorted(r["nodes"], key=lambda x: -x["packets"]) for r in rs]
    us = " / ".join(f"{med([p[i]['us_per_pkt'] for p in per if p[i]['us_per_pkt']]):.2f}" for i in range(n))
    rooms = " / ".join(f"{med([p[i]['rooms'] for p in per]):.0f}" for i in range(n))
    pk = " / ".join(f"{med([p[i]['packets'] for p in per]):.0f}" for i in range(n))
    clean = sum(1 for r in rs if r["join_failures"] == 0 and r["lost"] == 0 and r["joined"] == r["peers"])
    print(f"| {n} | {rooms} | {us} | {med([r['fleet_us_per_pkt'] for r in rs]):.2f} | {pk} | "
          f"{med([r['join_p50_ms'] for r in rs]):.0f} | {med([r['join_p99_ms'] for r in rs]):.0f} | {clean}/{len(rs)} |")
bad = [r for r in runs if not (r["join_failures"] == 0 and r["lost"] == 0 and r["joined"] == r["peers"])]
for r in bad:
    print(f"WARNING: sfus={r['sfus']} run={r['run']} not clean: joined {r['joined']}/{r['peers']}, "
          f"{r['join_failures']} join failures, {r['lost']} lost (see raw/load-sfus{r['sfus']}-run{r['run']}.json)")
EOF

if [ "$FAILOVER_RUNS" -gt 0 ]; then
  echo "SFU SIGKILL → audio back (fleet test, release), $FAILOVER_RUNS runs:" | tee -a "$OUT/fleet.txt"
  : >"$OUT/raw/failover.txt"
  for i in $(seq "$FAILOVER_RUNS"); do
    start=$(date +%s)
    cargo test --release --locked -p chorus-signaling --test fleet \
      a_killed_sfu_node_moves_its_rooms_and_audio_comes_back -- --exact --nocapture \
      >"$work/failover-$i.log" 2>&1 || { cat "$work/failover-$i.log" >&2; exit 1; }
    line=$(grep -m1 "killed: sessions told after" "$work/failover-$i.log")
    echo "run $i ($(( $(date +%s) - start )) s with cargo): $line" | tee -a "$OUT/raw/failover.txt" "$OUT/fleet.txt"
  done
fi
echo "results in $OUT"
