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
# /proc, which leaves out the kopia processes it waits for), the overhead
# snapstorm adds to each kopia call (median and 99th percentile: the wall
# time snapstorm measures around the process, from before it is spawned to
# its output read, minus the process's own wall time, which a wrapper
# around kopia measures from inside: both matched by pid), the peak memory
# of snapstorm alone and of snapstorm with every kopia process it runs
# (sampled every 0.2 s), and the verdict's exit code. The last lines give
# the median and the worst of each column. The wrapper's own start (printed
# first) counts as snapstorm's here.
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

# kopia behind a wrapper that logs "pid start end" of each call, in
# seconds: a small C program, so that its own start adds little to what is
# counted as snapstorm's; the server runs as itself (exec), since snapstorm
# stops it by closing its stdin.
calls="$WORK/calls"
cat >"$WORK/wrapper.c" <<'C'
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    (void)argc;
    argv[0] = KOPIA;
    for (int i = 1; argv[i] && argv[i + 1]; i++)
        if (!strcmp(argv[i], "server") && !strcmp(argv[i + 1], "start")) execv(KOPIA, argv);
    double start = now();
    pid_t child = fork();
    if (child == 0) { execv(KOPIA, argv); _exit(127); }
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {}
    double end = now();
    char line[96];
    int n = snprintf(line, sizeof line, "%d %.6f %.6f\n", (int)getpid(), start, end);
    int fd = open(CALLS, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) { (void)!write(fd, line, n); close(fd); }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
C
command -v gcc >/dev/null || { echo "kopia.sh: gcc is needed (apt-get install -y gcc)" >&2; exit 2; }
gcc -O2 -DKOPIA="\"$kopia\"" -DCALLS="\"$calls\"" -o "$WORK/kopia" "$WORK/wrapper.c"
export KOPIA_EXE="$WORK/kopia"
# The wrapper's own cost: kopia --version through it and alone, in turn,
# the median of 40 paired differences.
wrapper_ms="$(python3 - "$WORK/kopia" "$kopia" <<'PY'
import statistics, subprocess, sys, time
def ms(program):
    t = time.perf_counter()
    subprocess.run([program, '--version'], stdout=subprocess.DEVNULL, check=True)
    return (time.perf_counter() - t) * 1000
print(round(statistics.median(ms(sys.argv[1]) - ms(sys.argv[2]) for _ in range(40)), 1))
PY
)"
: >"$calls"
echo "the wrapper's own cost per call: $wrapper_ms ms (median of 40 paired runs of kopia --version through it and alone)" >&2

rows="$WORK/rows"
: > "$rows"
echo "kopia: $("$kopia" --version 2>/dev/null | head -1); $CLIENTS clients, $DURATION per run, seeds: $SEEDS" >&2
for seed in $SEEDS; do
  state="$WORK/state-$seed" report="$WORK/report-$seed.json"
  args=(run --backend kopia --clients "$CLIENTS" --duration "$DURATION" --seed "$seed" --state-dir "$state" --report "$report")
  [ -n "$SCENARIO" ] && args+=(--scenario "$SCENARIO")
  : >"$calls"
  RUST_LOG="warn,snapstorm::process=trace" "$SNAPSTORM" "${args[@]}" >"$WORK/out-$seed" 2>"$WORK/err-$seed" &
  child=$!
  read -r peak_self peak_tree ticks < <(sample "$child")
  set +e; wait "$child"; code=$?; set -e
  child=""
  [ -f "$report" ] || { echo "kopia.sh: seed $seed wrote no report (exit $code):" >&2; tail -5 "$WORK/err-$seed" >&2; exit 1; }
  python3 - "$report" "$seed" "$code" "$peak_self" "$peak_tree" "$ticks" "$(getconf CLK_TCK)" "$WORK/err-$seed" "$calls" >>"$rows" <<'PY'
import json, re, statistics, sys
report = json.load(open(sys.argv[1]))
seed, code, peak_self, peak_tree, ticks, hz, log, calls = sys.argv[2:]
t = report['totals']
secs = report['duration_ms'] / 1000
cpu_ms = int(ticks) * 1000 / int(hz)
# Each call's own wall time (the wrapper's), then snapstorm's around it, by pid.
own = {}
for line in open(calls):
    pid, start, end = line.split()
    own.setdefault(pid, []).append((float(end) - float(start)) * 1000)
overheads = []
for match in re.finditer(r'process ended pid=(\d+) wall_us=(\d+)', open(log).read()):
    pid, wall_ms = match.group(1), int(match.group(2)) / 1000
    if own.get(pid):
        overheads.append(wall_ms - own[pid].pop(0))
if not overheads:
    sys.exit(f'kopia.sh: seed {seed}: no kopia call was timed from both sides')
overheads.sort()
p99 = overheads[min(len(overheads) - 1, int(len(overheads) * 0.99))]
print(seed, code, t['actions'], round(t['actions'] / secs, 2), round(t['restores_verified'] * 60 / secs, 1),
      round(cpu_ms / max(t['actions'], 1), 1), len(overheads), round(statistics.median(overheads), 1), round(p99, 1),
      int(peak_self) // 1024, int(peak_tree) // 1024, t['errors'])
PY
done

python3 - "$rows" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
head = ['seed', 'exit', 'actions', 'actions/s', 'verified/min', 'snapstorm CPU ms/action', 'kopia calls',
        'overhead ms/call p50', 'overhead ms/call p99', 'peak MiB snapstorm', 'peak MiB with kopia', 'errors']
print('| ' + ' | '.join(head) + ' |')
print('|' + '---|' * len(head))
for r in rows:
    print('| ' + ' | '.join(r) + ' |')
worst_of = {3: min, 4: min, 5: max, 7: max, 8: max, 9: max, 10: max}
med = ['**median**', '', ''] + [str(round(statistics.median(float(r[i]) for r in rows), 1)) if i in worst_of else '' for i in range(3, 11)] + ['']
worst = ['**worst**', '', ''] + [str(worst_of[i](float(r[i]) for r in rows)) if i in worst_of else '' for i in range(3, 11)] + ['']
print('| ' + ' | '.join(med) + ' |')
print('| ' + ' | '.join(worst) + ' |')
PY
