#!/usr/bin/env bash
# The kopia backend's figures: 4-client headless runs of kopia 0.23.1 over
# several seeds, each row from the run's own report and from /proc. Not part
# of CI (a minute per seed); docs/performance.md shows its output.
#
#   cargo build --release
#   KOPIA_EXE=../shared/bin/kopia benches/kopia.sh
#
# Per run: actions/s and restores verified/min (the report's counts over
# its duration), snapstorm's own CPU time per action (its utime+stime from
# /proc, which leaves out the kopia processes it waits for: the overhead
# snapstorm adds around each kopia call), the peak memory of snapstorm
# alone and of snapstorm with every kopia process it runs (sampled every
# 0.2 s), and the verdict's exit code. The last lines give the median and
# the worst of each column.
#
# Settings (environment):
#   SNAPSTORM   the binary (default target/release/snapstorm)
#   KOPIA_EXE   the kopia program (default: kopia on PATH)
#   SEEDS       seeds to run (default "1 2 3")
#   CLIENTS     clients per run (default 4)
#   DURATION    length of each run (default 60s)
#   SCENARIO    scenario preset or file (default: snapstorm's default)
#   WORK        scratch directory (default: a new one under /tmp, removed at the end)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
SEEDS="${SEEDS:-1 2 3}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-60s}"
SCENARIO="${SCENARIO:-}"

[ -x "$SNAPSTORM" ] || { echo "kopia.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
kopia="${KOPIA_EXE:-$(command -v kopia || true)}"
[ -n "$kopia" ] && [ -x "$kopia" ] || { echo "kopia.sh: kopia is needed: put it on PATH or set KOPIA_EXE (../shared/bin has kopia 0.23.1)" >&2; exit 2; }
export KOPIA_EXE="$kopia"
command -v python3 >/dev/null || { echo "kopia.sh: python3 is needed" >&2; exit 2; }

if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; keep=1; else WORK="$(mktemp -d /tmp/snapstorm-kopia.XXXXXX)"; keep=0; fi
child=""
cleanup() {
  [ -n "$child" ] && kill "$child" 2>/dev/null || true
  [ "$keep" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# Prints "peak_self_kib peak_tree_kib cpu_ticks" for process $1 until it ends.
sample() {
  python3 - "$1" <<'PY'
import os, sys, time
root = int(sys.argv[1])
def children():
    kids = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            kids.setdefault(int(fields[1]), []).append(int(pid))
        except OSError:
            pass
    return kids
def rss(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
def ticks(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, not children's
peak_self = peak_tree = cpu = 0
while os.path.exists(f'/proc/{root}'):
    try:
        cpu = ticks(root)
    except OSError:
        break
    kids, tree, todo = children(), 0, [root]
    while todo:
        pid = todo.pop()
        tree += rss(pid)
        todo.extend(kids.get(pid, []))
    peak_self = max(peak_self, rss(root))
    peak_tree = max(peak_tree, tree)
    time.sleep(0.2)
print(peak_self, peak_tree, cpu)
PY
}

rows="$WORK/rows"
: > "$rows"
echo "kopia: $("$kopia" --version 2>/dev/null | head -1); $CLIENTS clients, $DURATION per run, seeds: $SEEDS" >&2
for seed in $SEEDS; do
  state="$WORK/state-$seed" report="$WORK/report-$seed.json"
  args=(run --backend kopia --clients "$CLIENTS" --duration "$DURATION" --seed "$seed" --state-dir "$state" --report "$report")
  [ -n "$SCENARIO" ] && args+=(--scenario "$SCENARIO")
  "$SNAPSTORM" "${args[@]}" >"$WORK/out-$seed" 2>"$WORK/err-$seed" &
  child=$!
  read -r peak_self peak_tree ticks < <(sample "$child")
  set +e; wait "$child"; code=$?; set -e
  child=""
  [ -f "$report" ] || { echo "kopia.sh: seed $seed wrote no report (exit $code):" >&2; tail -5 "$WORK/err-$seed" >&2; exit 1; }
  python3 - "$report" "$seed" "$code" "$peak_self" "$peak_tree" "$ticks" "$(getconf CLK_TCK)" >>"$rows" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
seed, code, peak_self, peak_tree, ticks, hz = sys.argv[2:]
t = report['totals']
secs = report['duration_ms'] / 1000
cpu_ms = int(ticks) * 1000 / int(hz)
print(seed, code, t['actions'], round(t['actions'] / secs, 2), round(t['restores_verified'] * 60 / secs, 1),
      round(cpu_ms / max(t['actions'], 1), 1), int(peak_self) // 1024, int(peak_tree) // 1024, t['errors'])
PY
done

python3 - "$rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
head = ['seed', 'exit', 'actions', 'actions/s', 'verified/min', 'snapstorm CPU ms/action', 'peak MiB snapstorm', 'peak MiB with kopia', 'errors']
print('| ' + ' | '.join(head) + ' |')
print('|' + '---|' * len(head))
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
cols = {3: min, 4: min, 5: max, 6: max, 7: max}  # the worst of each
med = ['median', '', ''] + [str(statistics.median(float(r[i]) for r in rows)) for i in range(3, 8)] + ['']
worst = ['worst', '', ''] + [str(f(float(r[i]) for r in rows)) for i, f in cols.items()] + ['']
print('| ' + ' | '.join(med) + ' |')
print('| ' + ' | '.join(worst) + ' |')
PY
