#!/usr/bin/env bash
# What keeping the window's KV and features saves in `sail-edge watch`: steady-state seconds per update with
# reuse against --no-reuse (every frame of the window encoded, everything prefilled), for --window 1 and 4,
# in one run on the test pattern with every frame answered (--gate 0). Prints a Markdown table with the CPU.
#
#   bench/watch-reuse.sh MODEL.gguf MMPROJ.gguf [THREADS] [N_PREDICT]
#
# Steady state: updates after the window has filled and slid at least once (update > window), so both arms
# hold a full window; the first updates (system prefix, a growing window) are left out.
set -euo pipefail
model=${1:?MODEL.gguf}
mmproj=${2:?MMPROJ.gguf}
threads=${3:-2}
n_predict=${4:-16}
bin=${SAIL_EDGE:-target/release/sail-edge}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run() { # name window updates [flags...]
    local name=$1 window=$2 updates=$3
    shift 3
    echo "running $name ($updates updates)…" >&2
    "$bin" watch -m "$model" --mmproj "$mmproj" -t "$threads" --test-pattern --gate 0 -n "$n_predict" \
        --window "$window" --max-updates "$updates" --json "$@" > "$out/$name.jsonl" 2> "$out/$name.err" \
        || { cat "$out/$name.err" >&2; exit 1; }
}

run w1 1 4
run w1-no-reuse 1 4 --no-reuse
run w4 4 7
run w4-no-reuse 4 6 --no-reuse

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
python3 - "$out" "$cpu" "$threads" "$n_predict" <<'PY'
import json, statistics, sys
out, cpu, threads, n = sys.argv[1:5]
def steady(name, window):
    rows = [json.loads(l) for l in open(f"{out}/{name}.jsonl")]
    return [r for r in rows if r["update"] > window]
print(f"CPU: {cpu}; {threads} threads; -n {n}; test pattern 640x480, --gate 0\n")
print("| loop | updates | s per update | capture | preprocess | vit | prefill (positions) | decode | vs --no-reuse |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for window in (1, 4):
    base = None
    for name in (f"w{window}-no-reuse", f"w{window}"):
        rows = steady(name, window)
        mean = lambda k: statistics.mean(r["ms"][k] for r in rows) / 1e3
        total = mean("total")
        pos = statistics.mean(r["prefilled_tokens"] for r in rows)
        if base is None:
            base = total
        label = f"`--window {window}`" + (" `--no-reuse`" if "no-reuse" in name else "")
        ratio = "1" if name.endswith("no-reuse") else f"**{base / total:.2f}× faster**"
        print(f"| {label} | {len(rows)} | {total:.2f} | {mean('capture'):.3f} | {mean('preprocess'):.2f} | "
              f"{mean('vit'):.2f} | {mean('prefill'):.2f} ({pos:.0f}) | {mean('decode'):.2f} | {ratio} |")
PY
