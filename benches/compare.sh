#!/usr/bin/env bash
# Chorus vs Janus, one command: the identical chorus-load scenario against both servers,
# alternated and repeated, each run on a freshly started server; prints one table of
# medians (with the Chorus/Janus ratio) and writes an SVG of join-time CDFs and CPU per
# forwarded packet.
#
#   bash benches/compare.sh                      # 1 room × 3 speakers × 200 listeners, 3 reps
#   LISTENERS=1000 SPEAKERS=5 bash benches/compare.sh
#
# Settings (environment): ROOMS SPEAKERS LISTENERS DURATION (s) REPEAT JOIN_RATE THREADS
# DECODE EVENT_LOOPS (Janus: 2 = a pool of 2 event loops, the fair tuned setting;
# 0 = Janus' default thread per connection) OUT (results folder) TARGETS ("chorus janus")
# SKIP_BUILD (set: use the binaries already in target/release).
#
# Needs root (a network namespace: Janus gathers no loopback candidates otherwise, see
# benches/janus/janus.sh) and installs Debian's janus if missing. Everything stays on
# loopback inside the namespace, servers and load peers alike.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOMS="${ROOMS:-1}"
SPEAKERS="${SPEAKERS:-3}"
LISTENERS="${LISTENERS:-200}"
DURATION="${DURATION:-20}"
REPEAT="${REPEAT:-3}"
JOIN_RATE="${JOIN_RATE:-100}"
THREADS="${THREADS:-1}"
DECODE="${DECODE:-10}"
EVENT_LOOPS="${EVENT_LOOPS:-2}"
TARGETS="${TARGETS:-chorus janus}"
OUT="${OUT:-$ROOT/target/compare/$(date +%Y%m%d-%H%M%S)}"
export NETNS="${NETNS:-chorus-bench}"
JANUS="$ROOT/benches/janus/janus.sh"
CHORUS_PORT=7990
CHORUS_UDP=7992

mkdir -p "$OUT"
echo "results in $OUT" >&2

if [ "$(id -u)" != 0 ]; then
    echo "compare.sh needs root (network namespace); run it with sudo" >&2
    exit 1
fi
case " $TARGETS " in *" janus "*) "$JANUS" install >&2 ;; esac
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }

if [ -z "${SKIP_BUILD:-}" ]; then
    echo "building (release)..." >&2
    (cd "$ROOT" && cargo build --release -q -p chorus-bench -p chorus-signaling)
fi
BIN="$ROOT/target/release"

"$JANUS" netns-up
chorus_pid=""
cleanup() {
    [ -n "$chorus_pid" ] && kill "$chorus_pid" 2>/dev/null || true
    "$JANUS" stop || true
    "$JANUS" netns-down || true
}
trap cleanup EXIT

start_chorus() {
    rm -rf "$OUT/chorus-data" && mkdir -p "$OUT/chorus-data"
    local extra=()
    # Rooms hold 100 people by default; lift the cap where the binary lets us.
    if "$BIN/chorus" --help | grep -q -- --max-room-participants; then
        extra+=(--max-room-participants 100000)
    fi
    RUST_LOG=warn ip netns exec "$NETNS" "$BIN/chorus" --listen "127.0.0.1:$CHORUS_PORT" \
        --udp-port "$CHORUS_UDP" --data-dir "$OUT/chorus-data" "${extra[@]}" \
        >"$OUT/chorus.stdout" 2>"$OUT/chorus.stderr" &
    chorus_pid=$!
    for _ in $(seq 1 100); do
        grep -q "Chorus is running" "$OUT/chorus.stdout" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "chorus did not start:" >&2
    tail -20 "$OUT/chorus.stderr" >&2
    return 1
}

stop_chorus() {
    kill "$chorus_pid" 2>/dev/null || true
    wait "$chorus_pid" 2>/dev/null || true
    chorus_pid=""
}

run_load() { # target url pid [metrics]
    local target="$1" url="$2" pid="$3" metrics="${4:-}" rep="$5"
    local args=(--target "$target" --url "$url" --rooms "$ROOMS" --speakers "$SPEAKERS"
        --listeners "$LISTENERS" --duration "$DURATION" --join-rate "$JOIN_RATE"
        --threads "$THREADS" --decode "$DECODE" --sfu-pid "$pid" --json)
    [ -n "$metrics" ] && args+=(--sfu-metrics "$metrics")
    [ "$target" = chorus ] && args+=(--api-key-file "$OUT/chorus-data/api-key.json")
    echo "== $target, run $rep" >&2
    # Exit code 3 = ran but not clean: keep the report, the table says so.
    ip netns exec "$NETNS" "$BIN/chorus-load" "${args[@]}" >"$OUT/$target-$rep.json" || [ $? = 3 ]
}

for rep in $(seq 1 "$REPEAT"); do
    # Alternate which server goes first: the machine drifts during a session.
    order="$TARGETS"
    if [ $((rep % 2)) = 0 ]; then order="$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
    for target in $order; do
        case "$target" in
        chorus)
            start_chorus
            metrics=""
            if ip netns exec "$NETNS" curl -sf "http://127.0.0.1:$CHORUS_PORT/metrics" 2>/dev/null | grep -q chorus_sfu_; then
                metrics="http://127.0.0.1:$CHORUS_PORT/metrics"
            fi
            run_load chorus "http://127.0.0.1:$CHORUS_PORT/" "$chorus_pid" "$metrics" "$rep"
            stop_chorus
            ;;
        janus)
            jpid="$("$JANUS" start "$EVENT_LOOPS")"
            run_load janus "http://127.0.0.1:8088/janus" "$jpid" "" "$rep"
            "$JANUS" stop
            ;;
        esac
        sleep 1
    done
done

if [ "$EVENT_LOOPS" = 0 ]; then threading="Janus: a thread per connection (default)"; else threading="Janus: event_loops = $EVENT_LOOPS"; fi
"$BIN/chorus-load-compare" --note "$threading" --svg "$OUT/compare.svg" "$OUT"/*-[0-9]*.json | tee "$OUT/table.md"
