#!/bin/sh
# Writes two public-domain English texts from Debian packages into OUT_DIR (default
# runs/corpora), for the dense-vs-sparse ablation of docs/scaling.md:
#   kjv.txt     the King James Bible (package bible-kjv-text, read with bible-kjv's `bible`),
#               verse references removed: ≈ 4.3 MB
#   jargon.txt  the Jargon File 4.4.7 (package jargon-text, "in the public domain"): ≈ 1.7 MB
# Needs apt (installs bible-kjv, whose `bible` program decodes the compressed text).
set -e
out="${1:-runs/corpora}"
mkdir -p "$out"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ ! -s "$out/jargon.txt" ]; then
  (cd "$tmp" && apt-get download jargon-text >/dev/null 2>&1 && dpkg-deb -x jargon-text_*.deb x)
  zcat "$tmp"/x/usr/share/doc/jargon-text/jargon.txt.gz > "$out/jargon.txt"
fi
if [ ! -s "$out/kjv.txt" ]; then
  command -v bible >/dev/null || apt-get install -y bible-kjv >/dev/null
  bible -f -l80 "Gen1:1-Rev22:21" | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$out/kjv.txt"
fi
wc -c "$out/jargon.txt" "$out/kjv.txt"
