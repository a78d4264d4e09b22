#!/usr/bin/env python3
"""SVG of serving results: aggregate decode throughput and p99 TTFT against concurrency.

    Benchmarks/serving/plot.py RESULT.json [RESULT.json ...] --out serving.svg [--title T]

Each RESULT.json is written by loadgen.py --json; one line per file, named by its label
(loadgen.py --label), else by the file name. Two panels side by side: completion tokens/s
of all streams together (delivered_tok_s: with unfinished requests, what they received
counts too), and p99 time to first token (ms). The concurrency axis is
logarithmic (base 2). A level with failed, unfinished or unsent requests is drawn as a
hollow marker. Python standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from xml.sax.saxutils import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (lo is usually 0)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t < hi + step * 0.999:
        ticks.append(round(t, 10))
        t += step
    return ticks


def fmt(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.2e}"


def panel(series, key, title: str, ylabel: str, x0: float, y0: float, w: float, h: float) -> list[str]:
    """series: [(label, color, [(concurrency, value or None, clean)])]."""
    pts = [(c, v) for _, _, s in series for c, v, _ in s if v is not None]
    out = [f'<text x="{x0 + w / 2}" y="{y0 - 12}" text-anchor="middle" font-size="14" '
           f'font-weight="bold">{escape(title)}</text>']
    if not pts:
        out.append(f'<text x="{x0 + w / 2}" y="{y0 + h / 2}" text-anchor="middle">no data</text>')
        return out
    cs = sorted({c for c, _ in pts})
    lx_lo, lx_hi = math.log2(cs[0]), math.log2(cs[-1])
    if lx_hi == lx_lo:
        lx_lo, lx_hi = lx_lo - 1, lx_hi + 1
    yticks = nice_ticks(0.0, max(v for _, v in pts) * 1.05)
    y_hi = yticks[-1]

    def X(c):
        return x0 + (math.log2(c) - lx_lo) / (lx_hi - lx_lo) * w

    def Y(v):
        return y0 + h - v / y_hi * h

    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" stroke="#444"/>')
    for t in yticks:
        out.append(f'<line x1="{x0}" y1="{Y(t):.1f}" x2="{x0 + w}" y2="{Y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{x0 - 6}" y="{Y(t) + 4:.1f}" text-anchor="end" font-size="11">{fmt(t)}</text>')
    for c in cs:
        out.append(f'<line x1="{X(c):.1f}" y1="{y0}" x2="{X(c):.1f}" y2="{y0 + h}" stroke="#eee"/>')
        out.append(f'<text x="{X(c):.1f}" y="{y0 + h + 16}" text-anchor="middle" font-size="11">{c}</text>')
    out.append(f'<text x="{x0 + w / 2}" y="{y0 + h + 34}" text-anchor="middle" font-size="12">'
               f'concurrency (requests in flight)</text>')
    out.append(f'<text transform="translate({x0 - 48},{y0 + h / 2}) rotate(-90)" text-anchor="middle" '
               f'font-size="12">{escape(ylabel)}</text>')
    for label, color, s in series:
        line = [(c, v) for c, v, _ in s if v is not None]
        if len(line) > 1:
            d = " ".join(f"{X(c):.1f},{Y(v):.1f}" for c, v in line)
            out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"/>')
        for c, v, clean in s:
            if v is None:
                continue
            fill = color if clean else "white"
            out.append(f'<circle cx="{X(c):.1f}" cy="{Y(v):.1f}" r="4" fill="{fill}" stroke="{color}" '
                       f'stroke-width="2"><title>{escape(label)}: concurrency {c}: {v:.4g}</title></circle>')
    return out


def load(path: str) -> tuple[str, list[dict]]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"plot.py: cannot read {path}: {e}")
    if not isinstance(data, dict) or not isinstance(data.get("levels"), list):
        raise SystemExit(f"plot.py: {path}: expected loadgen.py JSON with a 'levels' list")
    label = (data.get("meta") or {}).get("label") or os.path.splitext(os.path.basename(path))[0]
    return label, data["levels"]


def render(runs: list[tuple[str, list[dict]]], title: str) -> str:
    thr, ttft = [], []
    for i, (label, levels) in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        a, b = [], []
        for s in sorted(levels, key=lambda s: s["concurrency"]):
            clean = s["failed"] == 0 and s["unfinished"] == 0 and s.get("not_started", 0) == 0
            # tokens delivered per second (ok requests plus what unfinished ones received;
            # the same as throughput_tok_s for a level that finished)
            a.append((s["concurrency"], s.get("delivered_tok_s", s.get("throughput_tok_s")), clean))
            b.append((s["concurrency"], (s.get("ttft_ms") or {}).get("p99"), clean))
        thr.append((label, color, a))
        ttft.append((label, color, b))
    W, H = 900, 420
    pw, ph = 340, 260
    body = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'font-family="sans-serif" viewBox="0 0 {W} {H}">',
            f'<rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="16">{escape(title)}</text>']
    body += panel(thr, "throughput", "decode throughput", "completion tokens/s (all streams)",
                  80, 70, pw, ph)
    body += panel(ttft, "ttft", "time to first token, p99", "TTFT p99 (ms)", 80 + pw + 110, 70, pw, ph)
    ly = 70 + ph + 60
    x = 80
    for label, color, _ in thr:
        body.append(f'<line x1="{x}" y1="{ly}" x2="{x + 24}" y2="{ly}" stroke="{color}" stroke-width="3"/>')
        body.append(f'<text x="{x + 30}" y="{ly + 4}" font-size="12">{escape(label)}</text>')
        x += 40 + 7 * len(label)
    body.append(f'<text x="{W - 10}" y="{H - 8}" text-anchor="end" font-size="10" fill="#666">'
                f'hollow marker: a level with failed, unfinished or unsent requests</text>')
    body.append("</svg>")
    return "\n".join(body) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Plot loadgen.py results as an SVG.")
    p.add_argument("results", nargs="+", help="JSON files written by loadgen.py --json")
    p.add_argument("--out", required=True, help="SVG file to write")
    p.add_argument("--title", default="Serving: throughput and TTFT against concurrency")
    a = p.parse_args(argv)
    svg = render([load(f) for f in a.results], a.title)
    with open(a.out, "w") as fh:
        fh.write(svg)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
