#!/usr/bin/env python3
"""Tiny random Hugging Face MoE checkpoints with reference logits, for SparseMoE's tests.

Writes Tests/Fixtures/hf/<name>/{config.json, model.safetensors (or shards + index),
tokens.json, expected.json}. Each variant covers something the shared hf-tiny set does not:
other expert counts and k, tied embeddings, sparse steps and mlp_only_layers, bf16 storage,
sharded checkpoints, transformers 5's fused expert tensors, DeepSeek-V3 without q compression,
half-split RoPE and a negative e_score_correction_bias with group-limited routing.

Seeds are searched until every router decision has a margin (gap between the k-th and the
(k+1)-th choice score, and between kept and dropped expert groups) of at least MIN_MARGIN,
so float32 rounding differences between implementations cannot flip a routing decision.

Second use, checking the library's writer (CI does not run Python):
    python scripts/make_hf_fixtures.py --check-saved DIR
loads every sub-folder of DIR (written by `HuggingFaceModel.save`, see the test
`HuggingFaceExportTests.testWriteFoldersForTransformers`) with AutoModelForCausalLM and
prints the max |diff| between transformers' logits and the library's expected.json there.

Needs: pip install torch transformers safetensors   (CPU is enough)
"""
import argparse
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

MIN_MARGIN = 2e-3
VOCAB = 64
SEQ = 24


def variants():
    """name -> (config class name, config kwargs, save options)."""
    common = dict(vocab_size=VOCAB, hidden_size=16, num_attention_heads=2, num_key_value_heads=1,
                  max_position_embeddings=64, rms_norm_eps=1e-5)
    return {
        # Mixtral, 3 experts, top-1, tied embeddings, sharded checkpoint with index.
        "mixtral-e3-top1-tied-sharded": ("MixtralConfig", dict(
            common, intermediate_size=24, num_hidden_layers=2, num_local_experts=3, num_experts_per_tok=1,
            tie_word_embeddings=True, rope_theta=10000.0), dict(max_shard_size="20KB")),
        # Qwen2-MoE: sparse step 2 and mlp_only_layers (layers 1 sparse; 0, 2, 3 dense), norm_topk_prob true.
        "qwen2-moe-step2-mlponly": ("Qwen2MoeConfig", dict(
            common, intermediate_size=20, moe_intermediate_size=12, shared_expert_intermediate_size=28,
            num_hidden_layers=4, num_experts=5, num_experts_per_tok=2, decoder_sparse_step=2, mlp_only_layers=[3],
            norm_topk_prob=True, rms_norm_eps=1e-6), {}),
        # Qwen3-MoE: 5 experts top-3, explicit head_dim ≠ hidden/heads, mlp_only_layers, no renormalisation, bf16 file.
        "qwen3-moe-e5-k3-bf16": ("Qwen3MoeConfig", dict(
            common, head_dim=12, intermediate_size=20, moe_intermediate_size=10, num_hidden_layers=3, num_experts=5,
            num_experts_per_tok=3, mlp_only_layers=[0], norm_topk_prob=False, rms_norm_eps=1e-6), dict(dtype="bf16")),
        # OLMoE: 6 experts top-1 (renormalised), stored with transformers 5's fused expert tensors.
        "olmoe-e6-k1-fused": ("OlmoeConfig", dict(
            common, num_attention_heads=4, num_key_value_heads=2, intermediate_size=12, num_hidden_layers=2,
            num_experts=6, num_experts_per_tok=1, norm_topk_prob=True), dict(fused=True)),
        # DeepSeek-V3: no q compression, half-split RoPE, 4 groups keep 2, two shared experts, no dense layer,
        # negative correction biases (group masking with -inf matters), norm_topk_prob false.
        "deepseek-v3-noqlora-groups": ("DeepseekV3Config", dict(
            common, num_attention_heads=2, num_key_value_heads=2, intermediate_size=20, moe_intermediate_size=8,
            num_hidden_layers=2, n_routed_experts=8, num_experts_per_tok=3, n_group=4, topk_group=2,
            n_shared_experts=2, first_k_dense_replace=0, q_lora_rank=None, kv_lora_rank=12, qk_nope_head_dim=4,
            qk_rope_head_dim=4, v_head_dim=6, routed_scaling_factor=1.5, norm_topk_prob=False, rope_interleave=False,
            num_nextn_predict_layers=0, rms_norm_eps=1e-6), dict(bias=True)),
    }


def randomise(model, seed, bias):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and "norm" in name:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                scale = 2.0 if name.endswith("gate.weight") else 1.0
                p.copy_(scale * torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("e_score_correction_bias") and bias:
                b.copy_(-0.3 + 0.2 * torch.randn(b.shape, generator=g))


def router_margin(model, tokens):
    """Smallest gap in any routing decision (top-k boundary, group boundary) over all tokens and layers."""
    inputs = []
    hooks = []
    for name, m in model.named_modules():
        if name.endswith("mlp.gate") or name.endswith("block_sparse_moe.gate"):
            hooks.append(m.register_forward_hook(lambda mod, args, out, n=name: inputs.append((mod, args[0]))))
    with torch.no_grad():
        model(torch.tensor([tokens]))
    for h in hooks:
        h.remove()
    cfg = model.config
    k = cfg.num_experts_per_tok
    margin = float("inf")
    for mod, x in inputs:
        logits = x.reshape(-1, x.shape[-1]).float() @ mod.weight.float().t()
        if hasattr(mod, "e_score_correction_bias"):
            s = logits.sigmoid() + mod.e_score_correction_bias
            ng, tg = cfg.n_group, cfg.topk_group
            grouped = s.view(s.shape[0], ng, -1)
            gs = grouped.topk(min(2, grouped.shape[-1]), dim=-1)[0].sum(-1)
            if tg < ng:
                top = gs.sort(dim=-1, descending=True)[0]
                margin = min(margin, (top[:, tg - 1] - top[:, tg]).min().item())
                keep = gs.topk(tg, dim=-1)[1]
                mask = torch.zeros_like(gs).scatter_(1, keep, 1).bool()
                s = s.masked_fill(~mask.unsqueeze(-1).expand_as(grouped).reshape(s.shape), float("-inf"))
            choice = s
        else:
            choice = logits.softmax(-1)
        top = choice.sort(dim=-1, descending=True)[0]
        if k < top.shape[-1]:
            margin = min(margin, (top[:, k - 1] - top[:, k]).min().item())
    return margin


def build(name, cls_name, kwargs, opts, out_root):
    cls = getattr(transformers, cls_name)
    for seed in range(200):
        torch.manual_seed(seed)
        config = cls(**kwargs)
        model = AutoModelForCausalLM.from_config(config, experts_implementation="eager").float().eval()
        randomise(model, seed, opts.get("bias", False))
        if opts.get("dtype") == "bf16":
            with torch.no_grad():  # the weights the bf16 file holds, computed in float32 (buffers such as
                for p in model.parameters():  # the rotary inv_freq stay float32, as transformers reloads them)
                    p.copy_(p.to(torch.bfloat16).float())
        g = torch.Generator().manual_seed(1000 + seed)
        tokens = torch.randint(0, VOCAB, (SEQ,), generator=g).tolist()
        margin = router_margin(model, tokens)
        if margin >= MIN_MARGIN:
            break
    else:
        raise SystemExit(f"{name}: no seed with router margin ≥ {MIN_MARGIN}")
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    out = os.path.join(out_root, name)
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    if opts.get("fused"):
        config.save_pretrained(out)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        assert any("gate_up_proj" in k for k in state), "expected transformers 5 fused expert tensors"
        save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    else:
        save_model = model.to(torch.bfloat16) if opts.get("dtype") == "bf16" else model
        save_model.save_pretrained(out, max_shard_size=opts.get("max_shard_size", "50GB"))
    gen = os.path.join(out, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump({"tokens": tokens}, f)
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"architecture": cls_name, "seed": seed, "router_margin": margin,
                   "transformers": transformers.__version__,
                   "logits": [[round(v, 7) for v in row] for row in logits.tolist()]}, f)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f"{name}: seed {seed}, router margin {margin:.4f}, {size / 1024:.0f} KiB")

    # Reload check: what transformers reads back gives the same logits.
    back = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, experts_implementation="eager").eval()
    with torch.no_grad():
        again = back(torch.tensor([tokens])).logits[0].float()
    diff = (again - logits).abs().max().item()
    assert diff < 1e-5, f"{name}: reloaded model differs by {diff}"


TOKENIZER_TEXT = [
    "The quick brown fox jumps over the lazy dog. It's 2024, isn't it?",
    "Mixture-of-experts layers route each token to a few experts; the router learns which.",
    "Zürich, naïve café — 東京 🚀 emoji and ünïcödé text.\n\tIndented line\r\nwindows line",
    "def f(x):\n    return x ** 2  # squares\n",
]
TOKENIZER_TESTS = [
    "Hello world", "The lazy dog's router", "  two  spaces   three", "café 東京 🚀!",
    "line one\nline two\n\n", "<|endoftext|>after special<|endoftext|>", "x**2 + y**2 == 25", "",
    "QWEN-style 12345 digits 6789",
]
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_tokenizers(out_root):
    """Two tiny byte-level BPE tokenizer.json files (GPT-2 split; Qwen-style Split + ByteLevel) with expected ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    for name, qwen in [("tokenizer-gpt2", False), ("tokenizer-qwen-split", True)]:
        tok = Tokenizer(models.BPE())
        if qwen:
            tok.normalizer = normalizers.NFC()
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=256 + 60, special_tokens=["<|endoftext|>"], show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(TOKENIZER_TEXT * 4, trainer)
        out = os.path.join(out_root, name)
        os.makedirs(out, exist_ok=True)
        tok.save(os.path.join(out, "tokenizer.json"))
        cases = [{"text": t, "ids": tok.encode(t).ids, "decoded": tok.decode(tok.encode(t).ids, skip_special_tokens=False)}
                 for t in TOKENIZER_TESTS + TOKENIZER_TEXT]
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump({"vocab_size": tok.get_vocab_size(), "cases": cases}, f, ensure_ascii=False)
        print(f"{name}: vocab {tok.get_vocab_size()}, {os.path.getsize(os.path.join(out, 'tokenizer.json')) / 1024:.0f} KiB")


def check_saved(root):
    """Loads folders written by the library and compares transformers' logits with theirs."""
    worst = 0.0
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not names:
        raise SystemExit(f"no model folders under {root}")
    for name in names:
        d = os.path.join(root, name)
        tokens = json.load(open(os.path.join(d, "tokens.json")))["tokens"]
        expected = torch.tensor(json.load(open(os.path.join(d, "expected.json")))["logits"])
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, experts_implementation="eager").eval()
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0].float()
        diff = (logits - expected).abs().max().item()
        worst = max(worst, diff)
        print(f"{name}: {type(model).__name__}, max |diff| vs library = {diff:.3g}")
    print(f"all {len(names)}: max |diff| = {worst:.3g}")
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "hf"))
    ap.add_argument("--only", nargs="*", help="variant names to (re)build")
    ap.add_argument("--check-saved", metavar="DIR", help="compare library-written folders under DIR with transformers")
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.check_saved:
        worst = check_saved(args.check_saved)
        sys.exit(0 if worst <= 1e-4 else 1)
    for name, (cls_name, kwargs, opts) in variants().items():
        if args.only and name not in args.only:
            continue
        build(name, cls_name, kwargs, opts, os.path.abspath(args.out))
    if not args.only or any(n.startswith("tokenizer") for n in args.only):
        build_tokenizers(os.path.abspath(args.out))


if __name__ == "__main__":
    main()
