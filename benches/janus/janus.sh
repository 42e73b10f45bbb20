#!/usr/bin/env bash
# Janus on loopback for the Chorus comparison.
#
#   janus.sh install            apt-get install janus (idempotent)
#   janus.sh netns-up           network namespace "$NETNS" with lo + a veth holding 127.0.0.1/32
#   janus.sh start [LOOPS]      start Janus in it (LOOPS event loops; 0 = a thread per
#                               connection, Janus' default); prints its pid
#   janus.sh stop               stop the Janus this script started
#   janus.sh netns-down         remove the namespace
#
# Why a namespace: Janus' ICE gathering skips every loopback interface, so with only `lo`
# it offers no usable candidate. In a namespace of our own, a veth carrying 127.0.0.1/32
# is not a loopback interface to Janus, while packets to 127.0.0.1 still take the
# loopback path. The load peers run in the same namespace (`ip netns exec`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NETNS="${NETNS:-chorus-bench}"
RUN_DIR="${RUN_DIR:-/tmp/chorus-bench-janus}"
IFACE=veth0

ns() { ip netns exec "$NETNS" "$@"; }

case "${1:-}" in
install)
    if ! command -v janus >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq janus
    fi
    # The package starts a system Janus on its default ports: not ours, stop it.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl stop janus >/dev/null 2>&1 || true
    fi
    janus --version 2>/dev/null | head -1 || true
    ;;
netns-up)
    if ! ip netns list | grep -qw "$NETNS"; then
        ip netns add "$NETNS"
    fi
    ns ip link set lo up
    if ! ns ip link show "$IFACE" >/dev/null 2>&1; then
        ns ip link add "$IFACE" type veth peer name veth1
    fi
    ns ip link set "$IFACE" up
    ns ip link set veth1 up
    ns ip addr replace 127.0.0.1/32 dev "$IFACE"
    ;;
start)
    loops="${2:-2}"
    mkdir -p "$RUN_DIR"
    cp "$HERE/janus.transport.http.jcfg" "$HERE/janus.plugin.videoroom.jcfg" "$RUN_DIR/"
    sed -e "s#@CONFIGS@#$RUN_DIR#" -e "s#@IFACE@#$IFACE#" -e "s#@EVENT_LOOPS@#$loops#" \
        "$HERE/janus.jcfg.in" > "$RUN_DIR/janus.jcfg"
    if [ "$loops" = 0 ]; then
        sed -i 's/^\(\s*event_loops\)/#\1/' "$RUN_DIR/janus.jcfg"
    fi
    # Not through the ns() function: `$!` must be Janus' own pid (ip netns exec execs it).
    ip netns exec "$NETNS" janus --config="$RUN_DIR/janus.jcfg" --configs-folder="$RUN_DIR" \
        --log-file="$RUN_DIR/janus.log" --disable-colors >/dev/null 2>&1 &
    echo $! > "$RUN_DIR/janus.pid"
    for _ in $(seq 1 100); do
        if ns curl -sf -o /dev/null -d '{"janus":"ping","transaction":"p"}' http://127.0.0.1:8088/janus 2>/dev/null; then
            cat "$RUN_DIR/janus.pid"
            exit 0
        fi
        sleep 0.1
    done
    echo "janus did not answer on 127.0.0.1:8088; its log:" >&2
    tail -30 "$RUN_DIR/janus.log" >&2 || true
    exit 1
    ;;
stop)
    if [ -f "$RUN_DIR/janus.pid" ]; then
        pid="$(cat "$RUN_DIR/janus.pid")"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$RUN_DIR/janus.pid"
    fi
    ;;
netns-down)
    ip netns del "$NETNS" 2>/dev/null || true
    ;;
*)
    sed -n '2,14p' "$0"
    exit 2
    ;;
esac
