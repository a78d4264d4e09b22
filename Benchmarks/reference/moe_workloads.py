#!/usr/bin/env python3
"""PyTorch eager reference for `moe bench`: the same four MoE workloads, Hugging Face
Mixtral-style sparse MoE block (router -> softmax top-k -> loop over experts with
torch.where + index_add_), fp32, SwiGLU experts.

Requirements:  pip install torch
Run:           python Benchmarks/reference/moe_workloads.py [--threads 2] [--runs 5] [--workload NAME]

Prints one JSON object per workload per line (keys as `moe bench --json` where they apply):
  forward_ms / forward_backward_ms   the whole block (router included), median of --runs after
                                     one warm-up; forward runs with autograd recording, like the
                                     first half of a training step (forward_nograd_ms: inference)
  forward_gflops ...                 useful FLOPs 6*C*F*K*T (fwd), 18*C*F*K*T (fwd+bwd) per second
Gradients are zeroed in place between runs (buffers kept), untimed; forward_backward_fresh_grad_ms
sets them to None before every run instead (what optimizer.zero_grad() does by default).

If OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set in your environment, unset them for this
command (they can slow torch's CPU kernels): `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

WORKLOADS = [
    # name, T, C, F, E, K, capacity factor
    ("mixtral-like", 2048, 512, 1024, 8, 2, None),
    ("fine-grained", 2048, 512, 256, 64, 8, None),
    ("switch-top1", 2048, 512, 1024, 32, 1, None),
    ("switch-top1-cf1.25", 2048, 512, 1024, 32, 1, 1.25),
    ("wide", 1024, 1024, 2816, 8, 2, None),
]


class Expert(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), HF MixtralBlockSparseTop2MLP."""

    def __init__(self, c, f):
        super().__init__()
        self.w1 = nn.Linear(c, f, bias=False)
        self.w3 = nn.Linear(c, f, bias=False)
        self.w2 = nn.Linear(f, c, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoEBlock(nn.Module):
    """HF MixtralSparseMoeBlock (top-k renormalised), optional capacity (drop lowest probability)."""

    def __init__(self, c, f, e, k, capacity_factor=None):
        super().__init__()
        self.e, self.k, self.capacity_factor = e, k, capacity_factor
        self.gate = nn.Linear(c, e, bias=False)
        self.experts = nn.ModuleList([Expert(c, f) for _ in range(e)])

    def forward(self, x):  # x [T, C]
        t, c = x.shape
        logits = self.gate(x)
        probs = F.softmax(logits, dim=1, dtype=torch.float)
        weights, selected = torch.topk(probs, self.k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(selected, num_classes=self.e).permute(2, 1, 0)  # [E, K, T]
        cap = None
        if self.capacity_factor is not None:
            cap = int(-(-self.capacity_factor * t * self.k // self.e))
        for e, expert in enumerate(self.experts):
            slot, tok = torch.where(mask[e])
            if tok.numel() == 0:
                continue
            if cap is not None and tok.numel() > cap:
                keep = torch.topk(weights[tok, slot], cap).indices
                slot, tok = slot[keep], tok[keep]
            h = expert(x[tok]) * weights[tok, slot, None]
            out.index_add_(0, tok, h.to(x.dtype))
        return out


def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def timed(fn, runs, warmup, setup=lambda: None):
    for _ in range(warmup):
        setup()
        fn()
    times = []
    for _ in range(runs):
        setup()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return median(times), times


def run(name, t, c, f, e, k, cf, runs, warmup):
    torch.manual_seed(0)
    block = SparseMoEBlock(c, f, e, k, cf)
    x = torch.randn(t, c, requires_grad=True)
    dy = torch.randn(t, c) * 0.01
    useful = 6.0 * c * f * k * t
    params = list(block.parameters()) + [x]

    def zero():
        for p in params:
            if p.grad is not None:
                p.grad.zero_()

    fwd, fwd_runs = timed(lambda: block(x), runs, warmup)
    with torch.no_grad():
        fwd_ng, _ = timed(lambda: block(x), runs, warmup)
    fb, fb_runs = timed(lambda: block(x).backward(dy), runs, warmup, zero)

    def drop():
        for p in params:
            p.grad = None

    fb_fresh, _ = timed(lambda: block(x).backward(dy), runs, warmup, drop)
    return {
        "workload": name, "implementation": "pytorch-eager-mixtral-loop", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "tokens": t, "hidden_size": c, "intermediate_size": f, "num_experts": e, "top_k": k,
        "capacity_factor": cf, "runs": runs,
        "forward_ms": fwd, "forward_nograd_ms": fwd_ng, "forward_backward_ms": fb,
        "forward_backward_fresh_grad_ms": fb_fresh,
        "forward_gflops": useful / fwd / 1e6, "forward_nograd_gflops": useful / fwd_ng / 1e6,
        "forward_backward_gflops": 3 * useful / fb / 1e6,
        "forward_spread": (max(fwd_runs) - min(fwd_runs)) / fwd,
        "forward_backward_spread": (max(fb_runs) - min(fb_runs)) / fb,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--workload", default="all")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for w in WORKLOADS:
        if a.workload != "all" and w[0] != a.workload:
            continue
        print(json.dumps(run(*w, a.runs, a.warmup)), flush=True)


if __name__ == "__main__":
    main()
