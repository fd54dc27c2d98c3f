#!/usr/bin/env bash
# Runs every benchmark on an otherwise idle machine and keeps their printed tables under
# benchmarks/results/ (the README quotes them). Usage: benchmarks/run_all.sh DATA_ROOT
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:?usage: benchmarks/run_all.sh DATA_ROOT}"
out=benchmarks/results
mkdir -p "$out"
run() { local name=$1; shift; echo "== $name: $*"; "$@" 2>/dev/null | tee "$out/$name.txt"; }
run reid python3 benchmarks/bench_reid.py --data-root "$root" --json "$out/reid.json"
run attributes python3 benchmarks/bench_attributes.py --data-root "$root" --json "$out/attributes.json"
run explain_quality python3 benchmarks/bench_explain_quality.py --data-root "$root" --json "$out/explain_quality.json"
run explain_speed python3 benchmarks/bench_explain_speed.py
run maps python3 benchmarks/bench_maps.py --data-root "$root" --pairs 40 --json "$out/maps.json"
run large_gallery python3 benchmarks/bench_large_gallery.py
run train_step python3 benchmarks/bench_train_step.py
