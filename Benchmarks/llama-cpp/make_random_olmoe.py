#!/usr/bin/env python3
"""Writes a Hugging Face OLMoE folder with random bf16 weights, for the llama.cpp comparison.

    python3 Benchmarks/llama-cpp/make_random_olmoe.py --layers 2 --out /tmp/olmoe-2l

The folder holds what `moe init` writes and what llama.cpp's `convert_hf_to_gguf.py`
accepts (see docs/inference.md, "llama.cpp reference"):

- config.json: OLMoE-1B-7B-0924's configuration (vocab 50304, hidden 2048, 64 experts,
  top-8, expert width 1024, 16 heads, q/k norm over the full projection width),
  with `num_hidden_layers` replaced by --layers; `architectures` names
  `OlmoeForCausalLM`, which is how the converter picks its model class.
- model-0000i-of-0000N.safetensors + model.safetensors.index.json: bf16 tensors in the
  Hub's per-expert naming (`model.layers.{i}.mlp.experts.{e}.gate_proj.weight`, ...);
  matrices normal(0, std), norm weights ones.
- tokenizer.json: a byte-level BPE (GPT-2 pre-tokenizer) with the 256 byte tokens, one
  merge ("Ġ" + "t"; llama.cpp refuses a BPE vocabulary without merges), padding tokens
  `<|extra_N|>` and `<|endoftext|>` as the last id (eos).

Only numpy is needed: safetensors is written by hand (8-byte little-endian header
length, JSON header, raw little-endian data), bf16 by rounding float32 to nearest even.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

OLMOE_1B_7B_CONFIG = {
    "architectures": ["OlmoeForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "clip_qkv": None,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 1024,
    "max_position_embeddings": 4096,
    "model_type": "olmoe",
    "norm_topk_prob": False,
    "num_attention_heads": 16,
    "num_experts": 64,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 16,
    "num_key_value_heads": 16,
    "output_router_logits": False,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "router_aux_loss_coef": 0.01,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 50304,
}


def gpt2_byte_to_unicode():
    """GPT-2's reversible byte -> printable character map (bytes.py of openai/gpt-2)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def byte_level_tokenizer(vocab_size):
    """tokenizer.json: ids 0-255 the bytes 0-255, 256 "Ġt", then <|extra_N|>, last <|endoftext|>."""
    byte_chars = gpt2_byte_to_unicode()
    vocab = {byte_chars[b]: b for b in range(256)}
    merges = [["Ġ", "t"]]
    vocab["Ġt"] = 256
    eos_id = vocab_size - 1
    for i in range(257, eos_id):
        vocab[f"<|extra_{i - 257}|>"] = i
    vocab["<|endoftext|>"] = eos_id
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": eos_id, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }, eos_id


def olmoe_tensor_shapes(cfg):
    """(name, shape, is_norm) in the Hub's order: embeddings, layers, final norm, lm_head."""
    C, F, E, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_experts"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H
    yield "model.embed_tokens.weight", (V, C), False
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (C,), True
        yield f"{p}.self_attn.q_proj.weight", (H * D, C), False
        yield f"{p}.self_attn.k_proj.weight", (KV * D, C), False
        yield f"{p}.self_attn.v_proj.weight", (KV * D, C), False
        yield f"{p}.self_attn.o_proj.weight", (C, H * D), False
        yield f"{p}.self_attn.q_norm.weight", (H * D,), True
        yield f"{p}.self_attn.k_norm.weight", (KV * D,), True
        yield f"{p}.post_attention_layernorm.weight", (C,), True
        yield f"{p}.mlp.gate.weight", (E, C), False
        for e in range(E):
            yield f"{p}.mlp.experts.{e}.gate_proj.weight", (F, C), False
            yield f"{p}.mlp.experts.{e}.up_proj.weight", (F, C), False
            yield f"{p}.mlp.experts.{e}.down_proj.weight", (C, F), False
    yield "model.norm.weight", (C,), True
    if not cfg.get("tie_word_embeddings", False):
        yield "lm_head.weight", (V, C), False


def to_bf16_bytes(x):
    """float32 array -> bf16 little-endian bytes, rounded to nearest even."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2").tobytes()


def random_bf16(rng, shape, is_norm, std):
    if is_norm:
        return to_bf16_bytes(np.ones(shape, dtype=np.float32))
    return to_bf16_bytes(rng.standard_normal(shape, dtype=np.float32) * np.float32(std))


def write_safetensors(path, entries):
    """entries: list of (name, shape, bytes). Header JSON padded with spaces to 8 bytes."""
    header, offset = {}, 0
    for name, shape, data in entries:
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for _, _, data in entries:
            f.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder to write (must not exist, unless --force)")
    ap.add_argument("--layers", type=int, default=None, help="num_hidden_layers (default: the config's, 16)")
    ap.add_argument("--config", default=None, help="an OLMoE config.json to start from (default: OLMoE-1B-7B-0924)")
    ap.add_argument("--std", type=float, default=0.02, help="standard deviation of the random matrices")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-bytes", type=int, default=1024**3, help="maximum bytes of one shard")
    ap.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = ap.parse_args()

    cfg = dict(OLMOE_1B_7B_CONFIG)
    if args.config:
        with open(args.config) as f:
            cfg.update(json.load(f))
        if cfg.get("model_type") != "olmoe":
            sys.exit(f"{args.config}: model_type must be \"olmoe\", got {cfg.get('model_type')!r}")
    if args.layers is not None:
        if args.layers < 1:
            sys.exit(f"--layers must be >= 1, got {args.layers}")
        cfg["num_hidden_layers"] = args.layers
    if os.path.exists(args.out) and not args.force:
        sys.exit(f"{args.out} exists; pass --force to overwrite it")
    os.makedirs(args.out, exist_ok=True)
    for old in os.listdir(args.out):  # stale shards of an earlier run would be read as well
        if old.endswith(".safetensors") or old == "model.safetensors.index.json":
            os.remove(os.path.join(args.out, old))

    tokenizer, eos_id = byte_level_tokenizer(cfg["vocab_size"])
    cfg["eos_token_id"] = eos_id
    cfg["pad_token_id"] = eos_id
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer, f, ensure_ascii=False)

    # Plan the shards by size first, so that file names can carry the shard count.
    shapes = list(olmoe_tensor_shapes(cfg))
    shards, current, size = [], [], 0
    for name, shape, is_norm in shapes:
        nbytes = 2 * int(np.prod(shape))
        if current and size + nbytes > args.shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape, is_norm))
        size += nbytes
    shards.append(current)

    rng = np.random.default_rng(args.seed)
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        fname = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        entries = [(name, shape, random_bf16(rng, shape, is_norm, args.std)) for name, shape, is_norm in shard]
        write_safetensors(os.path.join(args.out, fname), entries)
        for name, _, data in entries:
            weight_map[name] = fname
            total += len(data)
        print(f"wrote {fname} ({sum(len(d) for _, _, d in entries) / 1e9:.2f} GB)", file=sys.stderr)
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    print(f"{args.out}: {cfg['num_hidden_layers']} layers, {total / 2:.0f} parameters, {total / 1e9:.2f} GB bf16")


if __name__ == "__main__":
    main()
