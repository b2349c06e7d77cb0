#!/usr/bin/env bash
# snapstorm's performance figures, measured side by side in one run, printed
# as the tables docs/performance.md shows. Slow (about an hour and a half on
# two cores, the sweep alone about 45 minutes) and not part of CI.
#
#   cargo build --release
#   benches/compare.sh                 # everything
#   ONLY="memory server" benches/compare.sh
#
# Sections (ONLY picks some): memory (the sweep: headless runs over seeds,
# durations, scenarios and client counts — memory, scale and start — its rows
# made by benches/sweep_table.py), server (restic backup and restore through `snapstorm serve`, a
# local repository, restic's rest-server and rustic_server), verify (`cargo bench --bench verify`),
# console (`cargo bench --bench console`), keys (key-to-screen latency of the
# console with 32 clients running, benches/key_latency.py, needs tmux).
#
# Settings (environment):
#   SNAPSTORM      the binary (default target/release/snapstorm)
#   BASELINE       another snapstorm binary to run side by side (rows of its own)
#   BASELINE_COUNTS  client counts the baseline runs at (default: CLIENT_COUNTS)
#   SEEDS          seeds of the sweep's headless runs (default "1 2 3 4 5")
#   DURATIONS      lengths of its runs (default "30s 60s")
#   SCENARIOS      its scenarios (default "randomized-small one-large-file"): the
#                  first runs at every client count, the others at the first count
#   CLIENT_COUNTS  client counts of the sweep (default "4 32 64"; the first is
#                  the one the others' rates are compared with)
#   DATA_MB        size of the server data set in MiB (default 850)
#   ROUNDS         rounds of each server measurement, the targets' order reversed
#                  every other round (default 5)
#   RUSTIC_SERVER  the rustic-server binary (default: on PATH; row skipped if absent)
#   REST_SERVER    restic's rest-server (default: REST_SERVER_EXE, else on PATH; row skipped if absent)
#   WORK           scratch directory (default: a new one under /tmp, removed at the end)
#
# Needs: restic, htpasswd (apache2-utils), /usr/bin/time (time), python3.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
BASELINE="${BASELINE:-}"
CLIENT_COUNTS="${CLIENT_COUNTS:-4 32 64}"
SEEDS="${SEEDS:-1 2 3 4 5}"
DURATIONS="${DURATIONS:-30s 60s}"
SCENARIOS="${SCENARIOS:-randomized-small one-large-file}"
BASELINE_COUNTS="${BASELINE_COUNTS:-$CLIENT_COUNTS}"
DATA_MB="${DATA_MB:-850}"
ROUNDS="${ROUNDS:-5}"
RUSTIC_SERVER="${RUSTIC_SERVER:-$(command -v rustic-server || true)}"
REST_SERVER="${REST_SERVER:-${REST_SERVER_EXE:-$(command -v rest-server || true)}}"
ONLY="${ONLY:-memory server verify console keys}"

need() { command -v "$1" >/dev/null || { echo "compare.sh: $1 is needed ($2)" >&2; exit 2; }; }
[ -x "$SNAPSTORM" ] || { echo "compare.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
need restic "apt-get install -y restic"
need htpasswd "apt-get install -y apache2-utils"
need python3 "apt-get install -y python3"
[ -x /usr/bin/time ] || { echo "compare.sh: /usr/bin/time is needed (apt-get install -y time)" >&2; exit 2; }

if [ -n "${WORK:-}" ]; then mkdir -p "$WORK"; keep_work=1; else WORK="$(mktemp -d /tmp/snapstorm-compare.XXXXXX)"; keep_work=0; fi
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  [ -z "${restore_to:-}" ] || rm -rf "$restore_to"
  [ "$keep_work" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s |' "$1" "$2" "$3" "$4")"); }
wants() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# Peak resident memory (MiB) of a finished /usr/bin/time -v log.
peak_mib() { awk '/Maximum resident set size/ {printf "%.0f", $6/1024}' "$1"; }

# A headless run: prints "actions seconds peak_mib rss_half_mib rss_end_mib failures ready worked".
# RSS is sampled every 2 s; rss_half is the largest sample of the run's first
# half, rss_end the largest of its second half (growth shows as end > half);
# ready is the wall time before the run's clock started (start-up, clients
# connecting); worked counts the actions that were not no-ops.
headless() {
  local bin="$1" clients="$2" name="$3" seed="$4" duration="$5" scenario="$6"
  local dir="$WORK/run-$name-$clients-$scenario-$duration-$seed"
  rm -rf "$dir"; mkdir -p "$dir"
  /usr/bin/time -v -o "$dir/time.log" "$bin" run --clients "$clients" --duration "$duration" --seed "$seed" \
    --scenario "$scenario" --state-dir "$dir/state" --report "$dir/report.json" >"$dir/out.log" 2>&1 &
  local pid=$!
  local child=""
  : >"$dir/rss"
  while kill -0 "$pid" 2>/dev/null; do
    [ -n "$child" ] || child="$(pgrep -P "$pid" | head -1 || true)"
    if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
      awk -v t="$SECONDS" '/^VmRSS/ {print t, $2}' "/proc/$child/status" >>"$dir/rss" 2>/dev/null || true
    fi
    sleep 2
  done
  wait "$pid" || true
  python3 - "$dir" <<'EOF'
import json, sys
d = sys.argv[1]
r = json.load(open(d + "/report.json"))
samples = [tuple(map(int, l.split())) for l in open(d + "/rss") if l.strip()]
half = len(samples) // 2
first = max((kb for _, kb in samples[:half]), default=0) / 1024
second = max((kb for _, kb in samples[half:]), default=0) / 1024
peak = 0
for line in open(d + "/time.log"):
    if "Maximum resident set size" in line:
        peak = int(line.split()[-1]) / 1024
    if "Elapsed (wall clock)" in line:
        parts = line.split()[-1].split(":")
        wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
t = r["totals"]
secs = r["duration_ms"] / 1000
print(t["actions"], secs, round(peak), round(first), round(second),
      t["verification_failures"], round(wall - secs, 1), t["actions"] - t["no_ops"])
EOF
  rm -rf "$dir/state"
}

# The sweep: every scenario, duration, seed and client count, the counts
# interleaved within each seed so that the machine's load falls on all of
# them alike. One line per run in $WORK/sweep; the rows give min / median /
# max over the runs of each scenario and client count.
if wants memory; then
  sweep="$WORK/sweep"
  : >"$sweep"
  for scenario in $SCENARIOS; do
    for duration in $DURATIONS; do
      for seed in $SEEDS; do
        for clients in $CLIENT_COUNTS; do
          # The other scenarios are memory rows: the first count only.
          [ "$scenario" = "${SCENARIOS%% *}" ] || [ "$clients" = "${CLIENT_COUNTS%% *}" ] || continue
          for variant in current ${BASELINE:+baseline}; do
            bin="$SNAPSTORM"; [ "$variant" = baseline ] && bin="$BASELINE"
            if [ "$variant" = baseline ] && [[ " $BASELINE_COUNTS " != *" $clients "* ]]; then continue; fi
            read -r actions secs peak first second failures ready worked < <(headless "$bin" "$clients" "$variant" "$seed" "$duration" "$scenario")
            echo "[$variant] $scenario, $clients clients, $duration, seed $seed: $actions actions ($worked did work) in ${secs}s, peak ${peak} MiB (1st half ${first}, 2nd half ${second}), failures $failures, ready after ${ready}s" >&2
            echo "$variant $scenario $clients $duration $seed $actions $secs $peak $first $second $failures $ready $worked" >>"$sweep"
          done
        done
      done
    done
  done
  while IFS= read -r line; do rows+=("$line"); done < <(python3 "$here/benches/sweep_table.py" "$sweep" "${SCENARIOS%% *}" "${CLIENT_COUNTS%% *}")
fi

if wants server; then
  data="$WORK/data"
  echo "making a ${DATA_MB} MiB data set of mixed file sizes…" >&2
  python3 - "$data" "$DATA_MB" <<'EOF'
import os, sys
root, total = sys.argv[1], int(sys.argv[2]) << 20
# Mixed sizes: 45% one large file, 34% files of 6 MiB, 12% of 64 KiB, 9% of 4 KiB.
shares = [(total * 45 // 100, total * 45 // 100), (6 << 20, total * 34 // 100),
          (64 << 10, total * 12 // 100), (4 << 10, total * 9 // 100)]
n = 0
for size, budget in shares:
    d = os.path.join(root, f"set-{size}")
    os.makedirs(d, exist_ok=True)
    for i in range(max(1, budget // size)):
        with open(os.path.join(d, f"f{i:05}"), "wb") as f:
            left = size
            while left:
                chunk = min(left, 1 << 20)
                f.write(os.urandom(chunk))
                left -= chunk
        n += 1
print(n, "files", file=sys.stderr)
EOF
  export RESTIC_PASSWORD=bench-password
  htpasswd -B -b -c "$WORK/htpasswd" bench s3cret 2>/dev/null
  chmod 600 "$WORK/htpasswd"
  port_ours=18431; port_base=18432; port_rustic=18433; port_rest=18434
  "$SNAPSTORM" serve --data-dir "$WORK/ours" --htpasswd "$WORK/htpasswd" --listen "127.0.0.1:$port_ours" >"$WORK/serve.log" 2>&1 &
  pid_ours=$!
  if [ -n "$BASELINE" ]; then
    "$BASELINE" serve --data-dir "$WORK/base" --htpasswd "$WORK/htpasswd" --listen "127.0.0.1:$port_base" >"$WORK/serve-base.log" 2>&1 &
    pid_base=$!
  fi
  pid_rustic=""
  if [ -n "$RUSTIC_SERVER" ]; then
    mkdir -p "$WORK/rustic"
    printf "[bench]\nbench = \"Modify\"\n" >"$WORK/acl.toml"
    "$RUSTIC_SERVER" serve --listen "127.0.0.1:$port_rustic" --path "$WORK/rustic" --private-repos \
      --htpasswd-file "$WORK/htpasswd" --acl-path "$WORK/acl.toml" >"$WORK/rustic.log" 2>&1 &
    pid_rustic=$!
  fi
  pid_rest=""
  if [ -n "$REST_SERVER" ]; then
    mkdir -p "$WORK/restsrv"
    "$REST_SERVER" --listen "127.0.0.1:$port_rest" --path "$WORK/restsrv" --private-repos \
      --htpasswd-file "$WORK/htpasswd" >"$WORK/rest-server.log" 2>&1 &
    pid_rest=$!
  fi
  sleep 2
  declare -A repo pid
  repo[local]="$WORK/local"; pid[local]=""
  repo[snapstorm]="rest:http://bench:s3cret@127.0.0.1:$port_ours/bench"; pid[snapstorm]=$pid_ours
  targets="snapstorm local"
  if [ -n "$BASELINE" ]; then
    repo[baseline]="rest:http://bench:s3cret@127.0.0.1:$port_base/bench"; pid[baseline]=$pid_base
    targets="$targets baseline"
  fi
  if [ -n "$pid_rustic" ]; then
    repo[rustic_server]="rest:http://bench:s3cret@127.0.0.1:$port_rustic/bench"; pid[rustic_server]=$pid_rustic
    targets="$targets rustic_server"
  fi
  if [ -n "$pid_rest" ]; then
    repo[rest_server]="rest:http://bench:s3cret@127.0.0.1:$port_rest/bench/"; pid[rest_server]=$pid_rest
    targets="$targets rest_server"
  fi
  declare -A backup restore dir
  dir[local]="$WORK/local"; dir[snapstorm]="$WORK/ours/bench"; dir[baseline]="$WORK/base/bench"; dir[rustic_server]="$WORK/rustic/bench"; dir[rest_server]="$WORK/restsrv/bench"
  for t in $targets; do backup[$t]=""; restore[$t]=""; done
  # Restores go to memory, so that the disk's write-back does not time them.
  restore_to="$(mktemp -d /dev/shm/snapstorm-compare.XXXXXX)"
  # restic's wall time of one command, in seconds.
  timed() { /usr/bin/time -f %e -o "$WORK/t" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; return 1; }; cat "$WORK/t"; }
  # Rounds alternate the order of the targets, so that no server always
  # runs right after the same one (a disk still writing back, a warm cache).
  for round in $(seq "$ROUNDS"); do
    order="$targets"
    [ $((round % 2)) = 1 ] || order="$(echo "$targets" | tr ' ' '\n' | tac | tr '\n' ' ')"
    for t in $order; do
      # A new repository each round, so that every backup uploads it all.
      rm -rf "${dir[$t]}"
      restic -q -r "${repo[$t]}" init >/dev/null
      s=$(timed restic -r "${repo[$t]}" backup --no-cache "$data")
      backup[$t]="${backup[$t]} $s"
      rm -rf "$restore_to/out"
      s=$(timed restic -r "${repo[$t]}" restore latest --no-cache --target "$restore_to/out")
      restore[$t]="${restore[$t]} $s"
      echo "round $round $t: backup $(echo "${backup[$t]}" | awk '{print $NF}') s, restore $s s" >&2
    done
  done
  rm -rf "$restore_to"
  median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
  mb=$(du -sm "$data" | cut -f1)
  for op in backup restore; do
    for t in $targets; do
      declare -n times="$op"
      m=$(echo "${times[$t]}" | median)
      l=$(echo "${times[local]}" | median)
      # Throughput relative to the local repository: local time / this time.
      rel=$(python3 -c "print(f'{$l/$m:.2f}')")
      row "restic $op of ${mb} MB via $t" "median of $ROUNDS, interleaved" "${m} s ($(python3 -c "print(f'{$mb/$m:.0f}')") MB/s, ${rel}x local)" "$( [ "$t" = snapstorm ] && echo '≥ 0.95x local, ahead of rustic_server' || echo reference)"
    done
  done
  # Round by round against each other server: how often snapstorm was
  # faster, and the median of the per-round ratios (their time / ours).
  for op in backup restore; do
    declare -n times="$op"
    for t in $targets; do
      case "$t" in snapstorm|local) continue ;; esac
      read -r wins ratio per_round < <(python3 - "${times[snapstorm]}" "${times[$t]}" <<'EOF'
import statistics, sys
ours, theirs = [list(map(float, a.split())) for a in sys.argv[1:3]]
ratios = [t / o for o, t in zip(ours, theirs)]
print(sum(o < t for o, t in zip(ours, theirs)), f"{statistics.median(ratios):.2f}",
      ",".join(f"{o:g}/{t:g}" for o, t in zip(ours, theirs)))
EOF
)
      row "restic $op via snapstorm against $t, paired" "rounds faster; median of per-round ratios" "$wins of $ROUNDS; ${ratio}x (s per round, ours/theirs: $per_round)" "$( [ "$t" = rustic_server ] && echo 'ahead: > 1x' || echo reference)"
    done
  done
  for t in $targets; do
    [ -n "${pid[$t]}" ] || continue
    hwm=$(awk '/^VmHWM/ {printf "%.0f", $2/1024}' "/proc/${pid[$t]}/status")
    row "$t server process" "peak RSS over all rounds" "${hwm} MiB" "$( [ "$t" = snapstorm ] && echo '< 32 MiB' || echo reference)"
  done
  for p in $pid_ours ${pid_base:-} $pid_rustic $pid_rest; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$data"
fi

if wants verify; then
  out=$(cd "$here" && SNAPSTORM_BENCH_DIR="$WORK" cargo bench --bench verify 2>/dev/null)
  echo "$out" >&2
  while read -r line; do
    label=$(echo "$line" | sed -E 's/ +snapstorm.*//')
    ours=$(echo "$line" | sed -E 's/.*snapstorm +([0-9.]+) ms.*/\1/')
    theirs=$(echo "$line" | sed -E 's/.*diff -r +([0-9.]+) ms.*/\1/')
    ratio=$(echo "$line" | sed -E 's/.*ratio ([0-9.]+)x.*/\1/')
    row "verify a restored tree: $label" "fingerprint vs diff -r" "${ours} ms vs ${theirs} ms (${ratio}x)" "faster than diff -r (> 1x)"
  done < <(echo "$out" | grep ' ratio ')
fi

if wants console; then
  out=$(cd "$here" && cargo bench --bench console 2>/dev/null)
  echo "$out" >&2
  estimates="${CARGO_TARGET_DIR:-$here/target}/criterion/console frame, 64 clients, 200x90/new/estimates.json"
  median=$(python3 -c "import json,sys; e=json.load(open(sys.argv[1])); print(f\"{e['median']['point_estimate']/1000:.0f} µs (mean {e['mean']['point_estimate']/1000:.0f} µs)\")" "$estimates")
  row "console: full frame, 64 clients, TestBackend 200x90" "criterion median" "$median" "< 2 ms"
fi

if wants keys; then
  read -r _ n med p95 max < <(python3 "$here/benches/key_latency.py" "$SNAPSTORM" 32 20)
  row "console: key to screen, 32 clients running" "? and esc, $n presses" "median ${med} ms, p95 ${p95} ms, max ${max} ms" "< 100 ms"
fi

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); $(date -u +%F)"
echo
echo "| what | measure | result | goal |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
