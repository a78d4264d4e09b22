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
fail() { echo "fetch_corpora: $*" >&2; exit 1; }
# Each text is written to a temporary file first: a failure leaves no partial corpus behind.
if [ ! -s "$out/jargon.txt" ]; then
  (cd "$tmp" && apt-get download jargon-text >/dev/null 2>&1 && dpkg-deb -x jargon-text_*.deb x) \
    || fail "could not download and unpack the Debian package jargon-text (apt-get download jargon-text)"
  zcat "$tmp"/x/usr/share/doc/jargon-text/jargon.txt.gz > "$tmp/jargon.txt" || fail "jargon.txt.gz missing from jargon-text"
  mv "$tmp/jargon.txt" "$out/jargon.txt"
fi
if [ ! -s "$out/kjv.txt" ]; then
  command -v bible >/dev/null || apt-get install -y bible-kjv >/dev/null 2>&1 \
    || fail "the King James text needs the program 'bible': apt-get install bible-kjv (as root)"
  bible -f -l80 "Gen1:1-Rev22:21" > "$tmp/kjv.raw" || fail "'bible' could not print Gen1:1-Rev22:21"
  sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' "$tmp/kjv.raw" > "$tmp/kjv.txt"
  mv "$tmp/kjv.txt" "$out/kjv.txt"
fi
wc -c "$out/jargon.txt" "$out/kjv.txt"
