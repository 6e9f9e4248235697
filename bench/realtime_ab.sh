#!/usr/bin/env bash
# Issue 8's realtime figure with the upload route's CPU processes lowered (server.cpu_nice 5)
# and at the front's priority (cpu_nice 0, the default since the quiet-box A/B of 2026-12-06), alternated, in one command:
#
#     bench/realtime_ab.sh [PAIRS]          # PAIRS default 3; ~2 min a run, ~12 min for 3 pairs
#     VALUES="5 10" bench/realtime_ab.sh 2  # other cpu_nice values, in this order in each pair
#
# Each run is issue8_figures.py's first step (`swiftshot bench serve --compare naive --quick
# --load 1.5 --engine studio --executor process`), 0 first in each pair. Prints per run: the goal's
# ratio (realtime p95 at 1.5x ÷ unloaded p95), its two terms, the realtime misses' p50 latency
# and their worker work (infer + variant) loaded ÷ unloaded (what tracked the ratio over ten
# stored quiet runs: docs/PERFORMANCE.md, "seventeenth session"), the uploads' p50/p95 under
# load (what lowering them costs), served ÷ offered. Meant for a QUIET box at nice 0: run beside
# other work (or under nice 19, where +5 is capped and changes nothing) it measures the
# neighbours. JSON: bench/results/serve-rt-ab-{0,5}-N.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=${1:-3}
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH=$PWD/src
mkdir -p bench/results
VALUES=${VALUES:-0 5}
echo "realtime A/B, server.cpu_nice $VALUES; $PAIRS pairs; $(date -u '+%F %T UTC'); load $(cut -d' ' -f1-3 /proc/loadavg); nice $(nice)"
for i in $(seq 1 "$PAIRS"); do
  for n in $VALUES; do
    out=bench/results/serve-rt-ab-$n-$i.json
    load=$(cut -d' ' -f1 /proc/loadavg)
    SWIFTSHOT_SERVER__CPU_NICE=$n "$PY" -m swiftshot bench serve --compare naive --quick --load 1.5 \
      --engine studio --executor process --out "$out" > "${out%.json}.txt" 2>&1
    "$PY" - "$i" "$n" "$load" "$out" <<'EOF'
import json, sys
i, n, load, f = sys.argv[1:]
s = json.load(open(f))["swiftshot"]; dv = s["derived"]
L = s["loaded"]["by_priority"]["realtime"]["breakdown"]["miss_p50_ms"]
U = s["unloaded"]["by_priority"]["realtime"]["breakdown"]["miss_p50_ms"]
up = s["loaded"]["by_kind"]["upload"]
work = lambda m: m["infer"] + m["variant"]
print(f"pair {i} cpu_nice {n} (load {load}): ratio {dv['realtime_p95_load_ratio']:.2f} = "
      f"{dv['realtime_p95_ms']:.1f} / {dv['realtime_p95_unloaded_ms']:.1f} ms; realtime miss p50 "
      f"{L['latency']:.1f} / {U['latency']:.1f} ms ({L['latency'] / U['latency']:.2f}x), worker work "
      f"{work(L):.1f} / {work(U):.1f} ms ({work(L) / work(U):.2f}x); uploads p50/p95 loaded "
      f"{up['p50_ms']:.0f}/{up['p95_ms']:.0f} ms; served/offered "
      f"{dv['throughput_rps'] / dv['offered_rps']:.2f}; capacity {dv['miss_capacity_rps']:.0f}/s")
EOF
  done
done
