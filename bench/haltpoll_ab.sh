#!/usr/bin/env bash
# The guest's halt-polling window and issue 8's lone-miss overhead, alternated, in one command.
#
#     sudo bench/haltpoll_ab.sh [NS] [PAIRS]        # NS default 200000 (0.2 ms), PAIRS default 3
#
# FOR A QUIET BOX ONLY, run as root by whoever owns the machine: it changes a box-wide kernel
# setting (/sys/module/haltpoll/parameters/guest_halt_poll_ns, the cpuidle-haltpoll driver of a
# KVM guest) for the length of the run and puts the value it found back on exit (also on
# Ctrl-C or an error). With guest_halt_poll_ns=0 an idle vCPU halts at once, so each of a lone
# miss's three wake-ups (request in, batch to the worker, "done" back) wakes a halted vCPU
# through the host; with NS > 0 the guest polls that long before halting, and only while the vCPU
# has nothing else to run (so, unlike a spinning front or worker, it takes no CPU from a task
# that wants it). docs/PERFORMANCE.md, "Issue 8, sixteenth session" (front18) and "seventeenth
# session" (front19).
#
# Each pair runs, at the value found (A) and at NS (B), alternated A B:
#   1. bench/process_roundtrip.py --kinds asyncio --work-ms 0,4 --gap-ms 50 (the bare boundary, ~15 s)
#   2. bench/miss_overhead.py --n 150 --gap-ms 50 (sequential 512² misses through swiftshot, ~30 s)
# and prints one line per run: the boundary's p50 µs (echo / 4 ms of work), server overhead,
# hop and client-seen overhead p50 ms, and the server-side ratio. JSON under
# bench/results/haltpoll-*.json. About 4-5 minutes for 3 pairs.
set -euo pipefail
cd "$(dirname "$0")/.."
P=${HALTPOLL_PARAM:-/sys/module/haltpoll/parameters/guest_halt_poll_ns}  # (a file of your own for a dry run)
NS=${1:-200000}
PAIRS=${2:-3}
PY=${PYTHON:-.venv/bin/python}
[ -w "$P" ] || { echo "haltpoll_ab: $P missing or not writable (needs root in a KVM guest with cpuidle-haltpoll)" >&2; exit 2; }
ORIG=$(cat "$P")
trap 'echo "$ORIG" > "$P"; echo "guest_halt_poll_ns restored to $(cat "$P")"' EXIT
export PYTHONPATH=$PWD/src
mkdir -p bench/results
echo "guest_halt_poll_ns found $ORIG, B = $NS; $PAIRS pairs; $(date -u '+%F %T UTC'), load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-5s %-8s %-9s %-12s %-10s %-8s %-12s %-8s %s\n' pair value load floor_us srv_ms hop_ms client_ms ratio infer_ms
for i in $(seq 1 "$PAIRS"); do
  for v in "$ORIG" "$NS"; do
    echo "$v" > "$P"
    tag="haltpoll-$v-$i"
    load=$(cut -d' ' -f1 /proc/loadavg)
    "$PY" bench/process_roundtrip.py --kinds asyncio --work-ms 0,4 --gap-ms 50 \
      --out "bench/results/$tag-floor.json" > /dev/null
    "$PY" bench/miss_overhead.py --n 150 --gap-ms 50 --out "bench/results/$tag-miss.json" > /dev/null
    "$PY" - "$i" "$v" "$load" "bench/results/$tag-floor.json" "bench/results/$tag-miss.json" <<'EOF'
import json, sys
i, v, load, ff, mf = sys.argv[1:]
f, m = json.load(open(ff)), json.load(open(mf))["summary"]
fl = {r.get("work_ms"): r["p50_us"] for k, r in f.items() if isinstance(r, dict) and k.startswith("asyncio+")}
g = lambda k: m.get(k, float("nan"))
print(f"{i:<5} {v:<8} {load:<9} {fl.get(0, float('nan')):.0f}/{fl.get(4, float('nan')):<7.0f} "
      f"{g('server_overhead_p50_ms'):<10.3f} {g('hop_p50_ms'):<8.3f} {g('client_overhead_p50_ms'):<12.3f} "
      f"{g('server_side_overhead_ratio'):<8.3f} {g('infer_p50_ms'):.2f}")
EOF
  done
done
