#!/usr/bin/env python3
"""Helpers of compare.sh: turn llama-bench's JSON into one line per dtype, count the bytes a
decode step reads from a GGUF file, and print the SparseMoE / llama.cpp ratio table.

    report.py llama-bench BENCH.json... --dtype D --type T --gguf FILE [--bandwidth GBPS]
    report.py bytes-per-token FILE.gguf
    report.py table RESULTS.jsonl

The table pairs the two engines' lines of the same dtype and round (lines without a round
are round 1). With one round it shows the two speeds and their ratio; with several, each
engine's median over the rounds and the median, lowest and highest of the per-round ratios.

Bytes read per decoded token (the memory-bandwidth limit is bandwidth / this): every
tensor once, except the stacked expert tensors (`*_exps`), of which only the top-k of
E experts are read (k/E of the tensor), and the token embedding, of which one row is read.
"""

import argparse
import json
import os
import sys
from pathlib import Path


def gguf_reader(path):
    src = Path(os.environ.get("LLAMA_CPP_SRC", Path.home() / ".cache" / "sparsemoe-llama.cpp" / "src"))
    sys.path.insert(0, str(src / "gguf-py"))
    from gguf import GGUFReader
    return GGUFReader(path)


def field_value(reader, key):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def bytes_per_token(path):
    """(bytes read per decoded token, total tensor bytes) of a GGUF file."""
    reader = gguf_reader(path)
    arch = field_value(reader, "general.architecture")
    n_experts = field_value(reader, f"{arch}.expert_count") or 1
    n_used = field_value(reader, f"{arch}.expert_used_count") or 1
    per_token, total = 0.0, 0
    for t in reader.tensors:
        nbytes = int(t.n_bytes)
        total += nbytes
        if "_exps" in t.name:
            per_token += nbytes * n_used / n_experts
        elif t.name == "token_embd.weight":
            per_token += nbytes / int(t.shape[-1])  # shape is [n_embd, n_vocab] in ggml order
        else:
            per_token += nbytes
    return per_token, total


def llama_bench_line(args):
    rows = []
    for path in args.bench:
        with open(path) as f:
            rows += json.load(f)
    prefill = next(r for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
    decode = next(r for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
    per_token, _ = bytes_per_token(args.gguf)
    line = {
        "engine": "llama.cpp",
        "dtype": args.dtype,
        "llama_cpp_type": args.type,
        "threads": prefill["n_threads"],
        "prefill_tokens_per_second": round(prefill["avg_ts"], 2),
        "prefill_stddev": round(prefill["stddev_ts"], 2),
        "decode_tokens_per_second": round(decode["avg_ts"], 2),
        "decode_stddev": round(decode["stddev_ts"], 2),
        "prompt_tokens": prefill["n_prompt"],
        "decode_tokens": decode["n_gen"],
        "decode_context": decode.get("n_depth", 0),
        "repetitions": len(decode.get("samples_ts", [])) or None,
        "weights_bytes": os.path.getsize(args.gguf),
        "bytes_read_per_token": int(per_token),
        "build_commit": prefill.get("build_commit"),
        "round": args.round,
    }
    if args.bandwidth:
        limit = args.bandwidth * 1e9 / per_token
        line["bandwidth_limit_tokens_per_second"] = round(limit, 2)
        line["fraction_of_bandwidth_limit"] = round(decode["avg_ts"] / limit, 3)
    print(json.dumps(line))


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def table(args):
    if not os.path.isfile(args.results):
        sys.exit(f"report.py: {args.results} not found (a results .jsonl written by compare.sh)")
    rows = [json.loads(l) for l in open(args.results) if l.strip().startswith("{")]
    pairs = {}  # dtype -> round -> {engine: row}
    types = {}
    for r in rows:
        if r.get("engine") not in ("llama.cpp", "SparseMoE"):
            continue
        pairs.setdefault(r["dtype"], {}).setdefault(r.get("round", 1), {})[r["engine"]] = r
        if r.get("llama_cpp_type"):
            types[r["dtype"]] = r["llama_cpp_type"]
    keys = [("prefill", "prefill_tokens_per_second"), ("decode", "decode_tokens_per_second")]
    rounds = max((len(v) for v in pairs.values()), default=0)
    if rounds <= 1:
        print("| dtype | llama.cpp prefill tok/s | llama.cpp decode tok/s | SparseMoE prefill tok/s "
              "| SparseMoE decode tok/s | prefill ratio | decode ratio |")
        print("|---|---|---|---|---|---|---|")
    else:
        print(f"Medians over {rounds} rounds; ratio = SparseMoE / llama.cpp of the same round "
              "(median, and lowest…highest).")
        print()
        print("| dtype | prefill tok/s llama.cpp | prefill tok/s SparseMoE | prefill ratio "
              "| decode tok/s llama.cpp | decode tok/s SparseMoE | decode ratio | rounds SparseMoE ahead (decode) "
              "| SparseMoE decode ÷ bandwidth limit |")
        print("|---|---|---|---|---|---|---|---|---|")
    for dtype, by_round in pairs.items():
        cells = []
        if rounds <= 1:
            r = next(iter(by_round.values()))
            l, m = r.get("llama.cpp"), r.get("SparseMoE")
            def cell(side, key):
                return f"{side[key]:.1f}" if side and key in side else "–"
            def ratio(key):
                return f"{m[key] / l[key]:.2f}" if m and l and key in m and l.get(key) else "–"
            print(f"| {dtype} ({types.get(dtype)}) | {cell(l, keys[0][1])} | {cell(l, keys[1][1])} "
                  f"| {cell(m, keys[0][1])} | {cell(m, keys[1][1])} | {ratio(keys[0][1])} | {ratio(keys[1][1])} |")
            continue
        ahead = "–"
        for name, key in keys:
            l = [r["llama.cpp"][key] for r in by_round.values() if key in r.get("llama.cpp", {})]
            m = [r["SparseMoE"][key] for r in by_round.values() if key in r.get("SparseMoE", {})]
            ratios = [r["SparseMoE"][key] / r["llama.cpp"][key] for r in by_round.values()
                      if key in r.get("SparseMoE", {}) and r.get("llama.cpp", {}).get(key)]
            cells.append(f"{median(l):.2f}" if l else "–")
            cells.append(f"{median(m):.2f}" if m else "–")
            cells.append(f"**{median(ratios):.2f}** ({min(ratios):.2f}…{max(ratios):.2f})" if ratios else "–")
            if name == "decode" and ratios:
                ahead = f"{sum(x >= 1 for x in ratios)} of {len(ratios)}"
        fractions = [r["SparseMoE"]["decode_bandwidth_fraction"] for r in by_round.values()
                     if "decode_bandwidth_fraction" in r.get("SparseMoE", {})]
        fraction = f"{median(fractions):.2f} ({min(fractions):.2f}…{max(fractions):.2f})" if fractions else "–"
        print(f"| {dtype} ({types.get(dtype)}) | " + " | ".join(cells) + f" | {ahead} | {fraction} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("llama-bench")
    b.add_argument("bench", nargs="+", help="llama-bench -o json outputs (a prefill and a decode test)")
    b.add_argument("--dtype", required=True)
    b.add_argument("--type", required=True, help="llama.cpp's type name, e.g. BF16, Q8_0")
    b.add_argument("--gguf", required=True)
    b.add_argument("--bandwidth", type=float, default=None, help="measured read bandwidth, GB/s")
    b.add_argument("--round", type=int, default=1, help="round of compare.sh this line belongs to")
    p = sub.add_parser("bytes-per-token")
    p.add_argument("gguf")
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "llama-bench":
        llama_bench_line(args)
    elif args.cmd == "bytes-per-token":
        per_token, total = bytes_per_token(args.gguf)
        print(json.dumps({"gguf": args.gguf, "bytes_read_per_token": int(per_token), "tensor_bytes": total}))
    else:
        table(args)


if __name__ == "__main__":
    main()
