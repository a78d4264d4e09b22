#!/usr/bin/env bash
# Proves that SparseMoE can be consumed as a dependency pinned by version: tags a copy of
# the committed HEAD as 0.1.0, points Tests/Consumer/Package.swift at it with
# `from: "0.1.0"`, builds the consumer and runs it. (SwiftPM refuses unsafe build flags
# such as -fopenmp in version-pinned dependencies unless they declare tools version 6.2
# or later.) Uncommitted changes are not part of the check.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git clone --quiet --no-local "$root" "$work/SparseMoE"
git -C "$work/SparseMoE" -c user.name=consumer-check -c user.email=consumer-check@localhost \
    tag -a 0.1.0 -m "consumer check" >/dev/null
mkdir -p "$work/Consumer"
cp -R "$root/Tests/Consumer/Sources" "$work/Consumer/"
sed "s|SPARSEMOE_URL|file://$work/SparseMoE|" "$root/Tests/Consumer/Package.swift" > "$work/Consumer/Package.swift"
echo "consumer: building a package that depends on SparseMoE from: \"0.1.0\" ..."
swift build --package-path "$work/Consumer" 2>&1 | tail -n 3
"$work/Consumer/.build/debug/Consumer"
echo "consumer: 1 passed, 0 failed"
