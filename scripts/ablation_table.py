#!/usr/bin/env python3
"""Markdown table of an ablation folder (scripts/ablation.sh): for every corpus and recipe,
the mean validation loss over seeds (with its spread), the paired difference from the dense
twin (same seed; negative = the recipe is better) and the median step time against dense.

Usage: scripts/ablation_table.py OUT_DIR
       scripts/ablation_table.py --result RUN_DIR   (writes RUN_DIR/result.json: its summary.json
                                                     without the per-step history and expert loads)
On the synthetic corpus a second table gives the mean validation loss per task (val_loss_by_task)."""
import json, os, statistics, sys

if len(sys.argv) == 3 and sys.argv[1] == "--result":
    summary = json.load(open(os.path.join(sys.argv[2], "summary.json")))
    with open(os.path.join(sys.argv[2], "result.json"), "w") as f:
        json.dump({k: v for k, v in summary.items() if not isinstance(v, (list, dict)) or k == "val_loss_by_task"}, f, indent=1)
    sys.exit(0)
if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
    sys.exit("usage: scripts/ablation_table.py OUT_DIR (a folder written by scripts/ablation.sh)\n"
             "       scripts/ablation_table.py --result RUN_DIR")
out = sys.argv[1]
for corpus in sorted(d for d in os.listdir(out) if os.path.isdir(os.path.join(out, d))):
    runs = {}
    for entry in os.listdir(os.path.join(out, corpus)):
        path = os.path.join(out, corpus, entry, "result.json")
        if not os.path.isfile(path):
            continue
        recipe, seed = entry.rsplit("-s", 1)
        runs.setdefault(recipe, {})[int(seed)] = json.load(open(path))
    if not runs:
        continue
    dense = runs.get("dense", {})
    print(f"\n**{corpus}**\n")
    print("| recipe | seeds | total params | val loss (mean) | min–max | − dense (paired mean) | paired min–max | step ms p50 | × dense |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for recipe in sorted(runs, key=lambda r: (r != "dense", r)):
        by_seed = runs[recipe]
        losses = [s["val_loss"] for s in by_seed.values()]
        steps = [s["step_ms_p50"] for s in by_seed.values()]
        paired = [by_seed[k]["val_loss"] - dense[k]["val_loss"] for k in by_seed if k in dense]
        d_steps = [dense[k]["step_ms_p50"] for k in by_seed if k in dense]
        delta = f"{statistics.mean(paired):+.4f}" if paired and recipe != "dense" else ""
        spread = f"{min(paired):+.4f} … {max(paired):+.4f}" if len(paired) > 1 and recipe != "dense" else ""
        ratio = f"{statistics.median(steps) / statistics.median(d_steps):.2f}" if d_steps else ""
        total = next(iter(by_seed.values()))["total_params"]
        print(f"| {recipe} | {len(losses)} | {total:,} | {statistics.mean(losses):.4f} | "
              f"{min(losses):.4f}–{max(losses):.4f} | {delta} | {spread} | {statistics.median(steps):.0f} | {ratio} |")
    by_task = {r: [s["val_loss_by_task"] for s in runs[r].values() if "val_loss_by_task" in s] for r in runs}
    tasks = sorted({t for lists in by_task.values() for d in lists for t in d})
    if tasks:
        print(f"\nloss by task (mean over the seeds that report it):\n")
        print("| recipe | seeds | " + " | ".join(tasks) + " |")
        print("|---|---:|" + "---:|" * len(tasks))
        for recipe in sorted(by_task, key=lambda r: (r != "dense", r)):
            if by_task[recipe]:
                means = [statistics.mean(d[t] for d in by_task[recipe] if t in d) for t in tasks]
                print(f"| {recipe} | {len(by_task[recipe])} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
