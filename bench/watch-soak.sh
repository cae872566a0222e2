#!/usr/bin/env bash
# The long soak of `sail-edge watch`: the test pattern answered frame after frame (--gate 0) for N updates
# (default 5,000) or until Ctrl-C; prints the resident memory and open descriptors at update 500 and at the
# end, and the summary line. The issue's bound: RSS after 500 and after 5,000 updates within 5%, the same
# descriptors.
#
#   bench/watch-soak.sh MODEL.gguf [UPDATES] [extra watch flags...]
set -euo pipefail
model=${1:?MODEL.gguf}
updates=${2:-5000}
shift $(( $# > 1 ? 2 : 1 ))
bin=${SAIL_EDGE:-target/release/sail-edge}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Every update's JSON is read as it comes; only update 1, every 500th and the last are kept.
"$bin" watch -m "$model" --test-pattern --gate 0 -n 8 --json --max-updates "$updates" "$@" \
    | awk 'NR == 1 || NR % 500 == 0 { print; fflush() } { last = $0 } END { print last }' > "$log"
python3 - "$log" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows[r["update"]] = r
print("| update | time | RSS (MB) | open fds | ms per update (total) |")
print("| ---: | --- | ---: | ---: | ---: |")
for u in sorted(rows):
    r = rows[u]
    print(f"| {u} | {r['t']} | {r['rss_bytes'] / 1e6:.1f} | {r['open_fds']} | {r['ms']['total']:.0f} |")
if 500 in rows and len(rows) > 1:
    last = rows[max(rows)]
    drift = (last["rss_bytes"] - rows[500]["rss_bytes"]) / rows[500]["rss_bytes"]
    print(f"\nRSS from update 500 to {last['update']}: {drift * 100:+.2f}%; descriptors {rows[500]['open_fds']} → {last['open_fds']}")
PY
