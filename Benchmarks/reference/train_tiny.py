#!/usr/bin/env python3
"""PyTorch eager reference of `moe train`'s default model (preset tiny-moe), for the
training-throughput ratio in docs/benchmarks.md.

Requirements:  pip install torch
Run:           python Benchmarks/reference/train_tiny.py [--threads 2] [--steps 20] [--warmup 3]
                   [--preset tiny-moe|tiny-moe-8x256]

Model (as SparseMoE's tiny-moe): byte vocabulary 260, 4 pre-norm layers, width 128, 4 heads,
RoPE (theta 10000), RMSNorm (eps 1e-6), causal attention, layer 0 a dense SwiGLU FFN of hidden
512, layers 1-3 an MoE FFN = 8 SwiGLU experts of hidden 256, softmax top-2 renormalised (HF
Mixtral block: loop over experts + index_add_), load-balancing aux loss 0.01, untied lm_head
(`--preset tiny-moe-8x256`: the earlier tiny-moe, all four layers MoE). Training: batch 16 x
seq 128, AdamW lr 2e-3 (betas 0.9/0.95,
weight decay 0.1 on matrices), grad-norm clip 1.0, fp32. Data: random bytes (throughput only).
Prints one JSON line: median step ms, tokens/s (tokens per step / median step time).

If OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set in your environment, unset them for this
command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python ...`.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

V, C, LAYERS, HEADS, E, K, FH, T, B = 260, 128, 4, 4, 8, 2, 256, 128, 16
# preset: number of leading dense layers (SwiGLU of hidden K * FH)
PRESETS = {"tiny-moe": 1, "tiny-moe-8x256": 0}
FIRST_DENSE = PRESETS["tiny-moe"]


class RMSNorm(nn.Module):
    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope(x, cos, sin):  # x [B, H, T, D], rotate-half convention (HF Llama)
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(C, C, bias=False)
        self.k_proj = nn.Linear(C, C, bias=False)
        self.v_proj = nn.Linear(C, C, bias=False)
        self.o_proj = nn.Linear(C, C, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        q, k, v = (p(x).view(b, t, HEADS, C // HEADS).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, C))


class Expert(nn.Module):
    def __init__(self, width=FH):
        super().__init__()
        self.w1 = nn.Linear(C, width, bias=False)
        self.w3 = nn.Linear(C, width, bias=False)
        self.w2 = nn.Linear(width, C, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Linear(C, E, bias=False)
        self.experts = nn.ModuleList([Expert() for _ in range(E)])

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, C)
        probs = F.softmax(self.gate(x), dim=-1, dtype=torch.float)
        w, sel = torch.topk(probs, K, dim=-1)
        w = w / w.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        mask = F.one_hot(sel, E).permute(2, 1, 0)
        for e, ex in enumerate(self.experts):
            slot, tok = torch.where(mask[e])
            if tok.numel():
                out.index_add_(0, tok, ex(x[tok]) * w[tok, slot, None])
        # Switch/Mixtral load-balancing loss: E * sum_e f_e * P_e
        f = F.one_hot(sel, E).float().sum((0, 1)) / (x.shape[0] * K)
        aux = E * (f * probs.mean(0)).sum()
        return out.view(shape), aux


class Dense(Expert):
    def __init__(self):
        super().__init__(K * FH)

    def forward(self, x):
        return super().forward(x), 0.0


class Block(nn.Module):
    def __init__(self, dense):
        super().__init__()
        self.input_layernorm = RMSNorm(C)
        self.self_attn = Attention()
        self.post_attention_layernorm = RMSNorm(C)
        self.moe = Dense() if dense else MoE()

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        y, aux = self.moe(self.post_attention_layernorm(x))
        return x + y, aux


class TinyMoE(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        self.layers = nn.ModuleList([Block(i < FIRST_DENSE) for i in range(LAYERS)])
        self.norm = RMSNorm(C)
        self.lm_head = nn.Linear(C, V, bias=False)
        d = C // HEADS
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        ang = torch.outer(torch.arange(T).float(), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos(), persistent=False)
        self.register_buffer("sin", ang.sin(), persistent=False)

    def forward(self, ids):
        x = self.embed(ids)
        aux = 0.0
        for layer in self.layers:
            x, a = layer(x, self.cos, self.sin)
            aux = aux + a
        return self.lm_head(self.norm(x)), aux


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny-moe")
    a = ap.parse_args()
    global FIRST_DENSE
    FIRST_DENSE = PRESETS[a.preset]
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = TinyMoE()
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    other = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=2e-3, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(0)
    times, losses = [], []
    for step in range(a.warmup + a.steps):
        data = torch.randint(0, 256, (B, T + 1), generator=g)
        ids, targets = data[:, :-1], data[:, 1:]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits, aux = model(ids)
        loss = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
        (loss + 0.01 * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= a.warmup:
            times.append(dt * 1e3)
        losses.append(loss.item())
    s = sorted(times)
    med = s[len(s) // 2] if len(s) % 2 else 0.5 * (s[len(s) // 2 - 1] + s[len(s) // 2])
    print(json.dumps({
        "model": a.preset, "implementation": "pytorch-eager", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "steps": a.steps, "tokens_per_step": B * T,
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_ms": med, "tokens_per_second": B * T / (med / 1e3),
        "mean_tokens_per_second": B * T * len(times) / (sum(times) / 1e3),
        "step_spread": (max(times) - min(times)) / med, "last_loss": losses[-1],
    }), flush=True)


if __name__ == "__main__":
    main()
