#!/usr/bin/env bash
# Runs a libFuzzer target for SECONDS with a corpus seeded from the fixtures.
# Exits non-zero on a crash, a leak or a sanitizer report.
set -euo pipefail
bin=$1
seconds=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
corpus=$(mktemp -d /tmp/cg-fuzz-corpus.XXXXXX)
trap 'rm -rf "$corpus"' EXIT
find "$here/../fixtures/contacts" -type f \( -name '*.json' -o -name '*.txt' \) \
    ! -name cases.txt -size -64k -exec cp {} "$corpus/" \;
echo "fuzz: $(ls "$corpus" | wc -l) seeds, ${seconds}s"
"$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 "$corpus" 2>&1 | tail -n 25
