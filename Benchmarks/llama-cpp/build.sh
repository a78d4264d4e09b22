#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-quantize, llama-simple and llama-server from the source vendored
# in the llama-cpp-python source distribution (the Python package index is the only
# source this needs), into a cache directory outside the repository.
#
#   Benchmarks/llama-cpp/build.sh [DIR]      # default DIR: $HOME/.cache/sparsemoe-llama.cpp
#
# Idempotent: an existing download, unpacked tree, build or environment is reused.
# Afterwards DIR/src is the llama.cpp tree (with convert_hf_to_gguf.py and gguf-py),
# DIR/src/build/bin holds the binaries and DIR/venv is a Python environment with what
# the converter imports (torch, transformers, numpy, sentencepiece; about 0.9 GB).
#
# Environment: LLAMA_CPP_PYTHON_VERSION pins the sdist (e.g. 0.3.36); JOBS (default 2)
# sets the build parallelism; LLAMA_NO_AMX=1 builds without Intel AMX (on a 2-vCPU Xeon
# with AMX, llama.cpp's native build died with SIGILL in its AMX Q8_0 kernel, `tilezero` on a
# worker thread; changing it reconfigures and rebuilds); TORCH_SPEC is the pip requirement for torch (default: the
# CPU-only wheel from https://download.pytorch.org/whl/cpu, falling back to PyPI's
# `torch`, which pulls the CUDA libraries, several GB; with a local wheel directory in
# pip's find-links, e.g. TORCH_SPEC="torch==2.13.0+cpu").
set -euo pipefail

DIR="${1:-${LLAMA_CPP_DIR:-$HOME/.cache/sparsemoe-llama.cpp}}"
JOBS="${JOBS:-2}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

if ! command -v cmake >/dev/null 2>&1; then
    echo "cmake not found: installing it with apt-get" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y cmake
fi

PY="${PYTHON:-python3}"
SDIST_DIR="$DIR/sdist"
mkdir -p "$SDIST_DIR"
SPEC="llama-cpp-python${LLAMA_CPP_PYTHON_VERSION:+==$LLAMA_CPP_PYTHON_VERSION}"
if ! ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    echo "downloading the $SPEC source distribution" >&2
    "$PY" -m pip download --no-deps --no-binary llama-cpp-python --dest "$SDIST_DIR" "$SPEC"
fi
SDIST="$(ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz | sort -V | tail -n 1)"

SRC="$DIR/src"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
    echo "unpacking $(basename "$SDIST")" >&2
    rm -rf "$DIR/unpack" "$SRC"
    mkdir -p "$DIR/unpack"
    tar -xzf "$SDIST" -C "$DIR/unpack"
    mv "$DIR"/unpack/llama_cpp_python-*/vendor/llama.cpp "$SRC"
    basename "$SDIST" .tar.gz > "$SRC/SDIST"
    # The sdist has no git metadata; its changelog names the vendored llama.cpp commit
    # ("update llama.cpp to ggml-org/llama.cpp@<commit>" under the newest version).
    grep -m 1 -o 'llama.cpp@[0-9a-f]*' "$DIR"/unpack/llama_cpp_python-*/CHANGELOG.md | cut -d@ -f2 > "$SRC/COMMIT" || true
    rm -rf "$DIR/unpack"
fi

BUILD="$SRC/build"
COMMIT="$(cat "$SRC/COMMIT" 2>/dev/null || true)"
# llama-server (for Benchmarks/serving) is configured without its web UI: no npm build
# and no download of prebuilt UI assets, so the build needs no network. A build tree
# configured before the server was added is reconfigured once (the other targets stay).
NO_AMX_FLAGS=""
[ "${LLAMA_NO_AMX:-0}" = 1 ] && NO_AMX_FLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
if [ ! -f "$BUILD/CMakeCache.txt" ] || ! grep -q '^LLAMA_BUILD_SERVER:BOOL=ON' "$BUILD/CMakeCache.txt" \
    || ! grep -qx "CMAKE_C_FLAGS:STRING=$NO_AMX_FLAGS" "$BUILD/CMakeCache.txt"; then
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DCMAKE_C_FLAGS="$NO_AMX_FLAGS" -DCMAKE_CXX_FLAGS="$NO_AMX_FLAGS" \
        -DLLAMA_BUILD_COMMIT="${COMMIT:-unknown}" \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
fi
cmake --build "$BUILD" -j"$JOBS" --target llama-bench llama-quantize llama-simple llama-server

VENV="$DIR/venv"
if ! "$VENV/bin/python" -c "import torch, transformers, numpy, sentencepiece, yaml, tqdm" 2>/dev/null; then
    echo "creating the converter's Python environment in $VENV" >&2
    "$PY" -m venv "$VENV"
    if [ -n "${TORCH_SPEC:-}" ]; then
        "$VENV/bin/pip" install "$TORCH_SPEC"
    elif ! "$VENV/bin/pip" install --timeout 20 --retries 1 --index-url https://download.pytorch.org/whl/cpu torch; then
        echo "the PyTorch CPU index is not reachable: installing torch from PyPI" >&2
        "$VENV/bin/pip" install torch
    fi
    # The converter's requirements except torch (gguf is imported from the tree's gguf-py).
    "$VENV/bin/pip" install -r "$SRC/requirements/requirements-convert_legacy_llama.txt" pyyaml tqdm requests
fi

# Version: the sdist's name and the build number / commit that llama.cpp's cmake records.
echo "llama-cpp-python sdist: $(cat "$SRC/SDIST"), vendored llama.cpp commit: ${COMMIT:-unknown}"
VERSION_LINE="$("$BUILD/bin/llama-bench" --version 2>&1 | grep -i version | head -n 1 || true)"
echo "llama.cpp: ${VERSION_LINE:-unknown (llama-bench --version printed nothing)}"
echo "binaries: $BUILD/bin"
