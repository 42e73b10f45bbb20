#!/usr/bin/env python3
"""A flame graph (SVG) from `perf script` output, with no dependency beyond Python 3.

    perf record -F 499 -g -p PID -- sleep 10
    perf script | python3 benches/tools/flamegraph.py --title "..." > flame.svg

Stacks are folded (root first) and drawn bottom-up; width = share of samples. Frames
under 0.1 % are left out. Hover a frame for its name and share.
"""
import argparse
import html
import re
import sys
from collections import defaultdict


def fold(lines):
    stacks = defaultdict(int)
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                stacks[tuple(reversed(frames))] += 1
            frames = []
            continue
        if not line.startswith((" ", "\t")):
            frames = []  # header line of a sample: "comm pid ... cycles:"
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)(?:\s+\(.*\))?$", line)
        if m:
            name = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
            # Shorten Rust generics: they make frames unreadable.
            name = re.sub(r"<[^<>]*>", "", re.sub(r"<[^<>]*>", "", name))
            frames.append(name)
    if frames:
        stacks[tuple(reversed(frames))] += 1
    return stacks


def build_tree(stacks):
    tree = {"n": 0, "c": {}}
    for stack, count in stacks.items():
        node = tree
        node["n"] += count
        for f in stack:
            node = node["c"].setdefault(f, {"n": 0, "c": {}})
            node["n"] += count
    return tree


def colour(name):
    h = sum(map(ord, name)) % 60
    if "str0m" in name or "dimpl" in name:
        return f"rgb(230,{120 + h},60)"
    if "aws_lc" in name or "aes" in name.lower() or "gcm" in name.lower():
        return f"rgb(200,{80 + h},200)"
    if "chorus" in name:
        return f"rgb(90,{150 + h},90)"
    if name.startswith(("__", "entry_", "do_syscall", "sys_", "ip_", "udp", "net_", "__x64")) or "[kernel" in name:
        return f"rgb(110,{140 + h},220)"
    return f"rgb(220,{90 + h},70)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--title", default="flame graph")
    ap.add_argument("--width", type=int, default=1600)
    a = ap.parse_args()
    tree = build_tree(fold(sys.stdin))
    total = max(tree["n"], 1)
    row, width = 16, a.width
    rects = []
    depth_max = 0

    def walk(node, name, x, depth):
        nonlocal depth_max
        w = node["n"] / total * width
        if w < width * 0.001:
            return
        depth_max = max(depth_max, depth)
        rects.append((x, depth, w, name, node["n"]))
        cx = x
        for child_name, child in sorted(node["c"].items()):
            walk(child, child_name, cx, depth + 1)
            cx += child["n"] / total * width

    walk(tree, "all", 0.0, 0)
    height = (depth_max + 3) * row
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<text x="4" y="12">{html.escape(a.title)} — {total} samples</text>',
    ]
    for x, depth, w, name, n in rects:
        y = height - (depth + 1) * row
        label = html.escape(name)
        pct = 100.0 * n / total
        out.append(
            f'<g><title>{label} ({pct:.2f} %)</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
            f'height="{row - 1}" fill="{colour(name)}"/>'
        )
        chars = int(w / 6.6)
        if chars > 3:
            text = name if len(name) <= chars else name[: chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + 11}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    print("\n".join(out))


if __name__ == "__main__":
    main()
