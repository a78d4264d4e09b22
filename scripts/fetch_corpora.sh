#!/bin/sh
# Writes three public-domain English corpora into OUT_DIR (default runs/corpora), for the
# dense-vs-sparse ablation of docs/scaling.md:
#   kjv.txt         the King James Bible (Debian package bible-kjv-text, read with bible-kjv's
#                   `bible`), verse references removed: ≈ 4.3 MB
#   jargon.txt      the Jargon File 4.4.7 (Debian package jargon-text, "in the public domain"): ≈ 1.7 MB
#   canterbury.txt  the public-domain English texts of the Canterbury compression corpus, as
#                   shipped in the test data of the `brotli` 1.2.1 source distribution on the
#                   Python package index: Paradise Lost (plrabn12.txt), Alice's Adventures in
#                   Wonderland (alice29.txt) and the Library of Congress workshop proceedings on
#                   electronic texts (lcet10.txt), in that order, line ends as LF: ≈ 1.04 MB
# Needs apt (installs bible-kjv, whose `bible` program decodes the compressed text) and pip.
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
if [ ! -s "$out/canterbury.txt" ]; then
  (cd "$tmp" && pip download --no-deps --no-binary :all: brotli==1.2.1 -d . >/dev/null 2>&1) \
    || fail "could not download the brotli 1.2.1 source distribution (pip download --no-binary :all: brotli==1.2.1)"
  d=brotli-1.2.1/tests/testdata
  tar xzf "$tmp"/brotli-1.2.1.tar.gz -C "$tmp" "$d/plrabn12.txt" "$d/alice29.txt" "$d/lcet10.txt" \
    || fail "the Canterbury texts are missing from brotli-1.2.1.tar.gz ($d)"
  cat "$tmp/$d/plrabn12.txt" "$tmp/$d/alice29.txt" "$tmp/$d/lcet10.txt" | tr -d '\r' > "$tmp/canterbury.txt"
  mv "$tmp/canterbury.txt" "$out/canterbury.txt"
fi
wc -c "$out/jargon.txt" "$out/kjv.txt" "$out/canterbury.txt"
