#!/usr/bin/env python3
"""How cost grows with the audience: a Markdown table and an SVG from chorus-load JSON
reports (one per size; `--json` output, e.g. compare.sh's chorus-1.json files).

    python3 benches/tools/growth.py --svg growth.svg run10/chorus-1.json run100/chorus-1.json ...

Plots CPU µs per forwarded packet and memory per participant against listeners (log scale).
"""
import argparse
import html
import json
import math


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--svg")
    ap.add_argument("--title", default="Chorus: cost against listeners, 1 room")
    ap.add_argument("reports", nargs="+")
    a = ap.parse_args()
    rows = []
    for path in a.reports:
        r = json.load(open(path))
        s, sfu = r["scenario"], r["sfu"]
        rows.append({
            "speakers": s["speakers"], "listeners": s["listeners"],
            "us": sfu.get("cpu_us_per_forwarded_packet"),
            "kib": (sfu.get("rss_per_participant_bytes") or 0) / 1024,
            "pps": sfu.get("forwarded_per_s", 0),
            "cores": sfu.get("cpu_cores"),
            "loss": r["loss"]["loss_ratio"] * 100,
            "p50": r["join_to_first_audio_ms"]["p50"], "p99": r["join_to_first_audio_ms"]["p99"],
            "failed": r["join_failures"], "silent": r["loss"]["silent_listeners"],
        })
    rows.sort(key=lambda x: x["listeners"])
    print("| speakers × listeners | CPU µs / forwarded packet | KiB / participant | forwarded packets/s | SFU cores | loss % | join→audio p50 / p99 ms | failed joins | silent listeners |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in rows:
        us = f'{x["us"]:.2f}' if x["us"] is not None else "–"
        cores = f'{x["cores"]:.2f}' if x["cores"] is not None else "–"
        print(f'| {x["speakers"]} × {x["listeners"]} | {us} | {x["kib"]:.0f} | {x["pps"]:.0f} | {cores} | {x["loss"]:.2f} | {x["p50"]:.0f} / {x["p99"]:.0f} | {x["failed"]} | {x["silent"]} |')
    if not a.svg:
        return
    W, H, L, R, T, B = 720, 360, 60, 60, 40, 50
    xs = [x["listeners"] for x in rows]
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    hi = hi if hi > lo else lo + 1
    px = lambda v: L + (math.log10(v) - lo) / (hi - lo) * (W - L - R)
    us_max = max((x["us"] or 0) for x in rows) * 1.2 or 1
    kib_max = max(x["kib"] for x in rows) * 1.2 or 1
    py_us = lambda v: H - B - v / us_max * (H - T - B)
    py_kib = lambda v: H - B - v / kib_max * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{W/2}" y="20" text-anchor="middle" font-size="14">{html.escape(a.title)}</text>',
           f'<line x1="{L}" y1="{H-B}" x2="{W-R}" y2="{H-B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H-B}" stroke="#c0392b"/>',
           f'<line x1="{W-R}" y1="{T}" x2="{W-R}" y2="{H-B}" stroke="#2471a3"/>',
           f'<text x="{W/2}" y="{H-12}" text-anchor="middle">listeners (log scale; labels: speakers × listeners)</text>',
           f'<text x="14" y="{T-8}" fill="#c0392b">CPU µs / packet</text>',
           f'<text x="{W-R-40}" y="{T-8}" fill="#2471a3">KiB / participant</text>']
    for i in range(5):
        v = us_max * i / 4
        out.append(f'<text x="{L-6}" y="{py_us(v)+4:.0f}" text-anchor="end" fill="#c0392b">{v:.1f}</text>')
        k = kib_max * i / 4
        out.append(f'<text x="{W-R+6}" y="{py_kib(k)+4:.0f}" fill="#2471a3">{k:.0f}</text>')
    for x in rows:
        out.append(f'<text x="{px(x["listeners"]):.0f}" y="{H-B+16}" text-anchor="middle">{x["speakers"]}×{x["listeners"]}</text>')
    us_pts = " ".join(f'{px(x["listeners"]):.1f},{py_us(x["us"] or 0):.1f}' for x in rows)
    kib_pts = " ".join(f'{px(x["listeners"]):.1f},{py_kib(x["kib"]):.1f}' for x in rows)
    out.append(f'<polyline points="{us_pts}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    out.append(f'<polyline points="{kib_pts}" fill="none" stroke="#2471a3" stroke-width="2" stroke-dasharray="6 3"/>')
    for x in rows:
        out.append(f'<circle cx="{px(x["listeners"]):.1f}" cy="{py_us(x["us"] or 0):.1f}" r="3" fill="#c0392b"/>')
        out.append(f'<circle cx="{px(x["listeners"]):.1f}" cy="{py_kib(x["kib"]):.1f}" r="3" fill="#2471a3"/>')
    out.append("</svg>")
    open(a.svg, "w").write("\n".join(out))


if __name__ == "__main__":
    main()
