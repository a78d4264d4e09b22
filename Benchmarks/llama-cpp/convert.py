#!/usr/bin/env python3
"""Runs llama.cpp's convert_hf_to_gguf.py on a folder written by `moe init`, offline.

    python Benchmarks/llama-cpp/convert.py [--llama-cpp SRC] MODEL_DIR --outtype bf16 --outfile OUT.gguf

Everything after the optional `--llama-cpp SRC` (default: $LLAMA_CPP_SRC, else
$HOME/.cache/sparsemoe-llama.cpp/src, as left by build.sh) goes to the converter unchanged.

The converter identifies a BPE tokenizer's pre-tokenizer by hashing the tokens of a fixed
text and refuses hashes it does not know ("BPE pre-tokenizer was not recognized").
The byte-level tokenizer of `moe init` (GPT-2 pre-tokenizer regex, bytes as tokens) is
not a published one, so this wrapper answers that one check: when the converter does not
recognise the hash and tokenizer.json's pre-tokenizer is ByteLevel with the GPT-2 regex,
the GGUF gets `tokenizer.ggml.pre = "gpt-2"`, llama.cpp's GPT-2 pre-tokenizer. Any other
unknown tokenizer still fails as upstream does. Nothing else is changed.
"""

import json
import os
import sys
from pathlib import Path


def main():
    argv = sys.argv[1:]
    src = os.environ.get("LLAMA_CPP_SRC", str(Path.home() / ".cache" / "sparsemoe-llama.cpp" / "src"))
    if len(argv) >= 2 and argv[0] == "--llama-cpp":
        src, argv = argv[1], argv[2:]
    src = Path(src)
    if not (src / "convert_hf_to_gguf.py").is_file():
        sys.exit(f"{src}/convert_hf_to_gguf.py not found: run Benchmarks/llama-cpp/build.sh or pass --llama-cpp SRC")
    sys.path.insert(0, str(src))
    sys.path.insert(1, str(src / "gguf-py"))

    import convert_hf_to_gguf
    from conversion import base

    upstream = base.TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return upstream(self, tokenizer)
        except NotImplementedError:
            path = Path(self.dir_model) / "tokenizer.json"
            pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
            if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
                base.logger.info(f"{path}: byte-level BPE with the GPT-2 regex, tokenizer.ggml.pre = 'gpt-2'")
                return "gpt-2"
            raise

    base.TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [str(src / "convert_hf_to_gguf.py")] + argv
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main()
