#!/usr/bin/env bash
# How often a recorded failure comes back on each replay schedule (free,
# order, recorded = order and gaps), on the whole recording and on the
# scenario a shrink writes from it: the figures behind the defaults of
# `snapstorm replay` and `snapstorm shrink` (docs/findings.md). Not part of
# CI: with the defaults, about an hour on 2 cores (release build).
#
#   cargo build --release
#   benches/schedules.sh
#
# Settings (environment):
#   SNAPSTORM   the binary (default target/release/snapstorm)
#   RECORD      the run to record (default: the aggressive-GC finding of
#               docs/findings.md, 4 clients, 60 s, seed 42, three prunes)
#   TRIES       replays of the whole recording per schedule (default 5)
#   RUNS        runs of the shrunk scenario per schedule (default 10)
#   BUDGET      the shrink's --budget (default 10m)
#   SCHEDULES   the schedules compared (default "order recorded free")
#   SHRINK_ON   the shrink's --schedule (default recorded)
#   SHRINK_ARGS more shrink options, e.g. "--parallel 2" (default none)
#   WORK        where to keep everything, an empty or new directory
#               (default: a fresh temp dir, kept)
#
# The replay rows count tries that found the recording's kind of failure
# (as `snapstorm replay` does); the shrunk scenario's rows count runs that
# failed at all (exit 1 with --strict, as docs/findings.md runs it).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
RECORD="${RECORD:---clients 4 --duration 60s --seed 42 --fault aggressive-gc@20s --fault aggressive-gc@30s --fault aggressive-gc@40s}"
TRIES="${TRIES:-5}"
RUNS="${RUNS:-10}"
BUDGET="${BUDGET:-10m}"
SCHEDULES="${SCHEDULES:-order recorded free}"
SHRINK_ON="${SHRINK_ON:-recorded}"
SHRINK_ARGS="${SHRINK_ARGS:-}"
WORK="${WORK:-$(mktemp -d /tmp/snapstorm-schedules.XXXXXX)}"

[ -x "$SNAPSTORM" ] || { echo "schedules.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
mkdir -p "$WORK"
[ -z "$(ls -A "$WORK")" ] || { echo "schedules.sh: $WORK is not empty: its state dirs would be run on again; give an empty WORK" >&2; exit 2; }
cd "$WORK"
echo "$(date -u +%F): $(nproc) cores; work in $WORK" >&2

# shellcheck disable=SC2086 # RECORD is a list of arguments
"$SNAPSTORM" run $RECORD --state-dir gc-run --report record.json > record.out 2> record.err || true
[ -f record.json ] || { echo "schedules.sh: the recorded run wrote no report:" >&2; tail -3 record.err >&2; exit 1; }
failures=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["totals"]["verification_failures"])' record.json)
[ "$failures" -gt 0 ] || {
  echo "schedules.sh: the recorded run found no failure: nothing to replay; try another RECORD" >&2
  exit 1
}
echo "recorded: $failures failure(s)" >&2

echo "| what | schedule | came back | time |"
echo "|---|---|---|---|"
for schedule in $SCHEDULES; do
  started=$(date +%s)
  set +e
  "$SNAPSTORM" replay gc-run --tries "$TRIES" --schedule "$schedule" --into . > "replay-$schedule.out" 2> "replay-$schedule.err"
  set -e
  back=$(sed -n 's/^reproduced \([0-9]*\) of .*/\1/p' "replay-$schedule.out")
  echo "| the whole recording | $schedule | $back of $TRIES | $(( $(date +%s) - started )) s |"
done

started=$(date +%s)
set +e
# shellcheck disable=SC2086 # SHRINK_ARGS is a list of arguments
"$SNAPSTORM" shrink gc-run --schedule "$SHRINK_ON" --budget "$BUDGET" $SHRINK_ARGS -o minimal.toml --into . > shrink.out 2> shrink.err
code=$?
set -e
[ -f minimal.toml ] || { echo "schedules.sh: the shrink wrote nothing (exit $code):" >&2; tail -3 shrink.err >&2; exit 1; }
actions=$(grep -c '{ action = ' minimal.toml || true)
echo "| shrink on $SHRINK_ON, --budget $BUDGET $SHRINK_ARGS | | $actions actions, exit $code | $(( $(date +%s) - started )) s |"

for schedule in $SCHEDULES; do
  # The schedule line goes first (a free shrink writes none); free has no
  # places, and refuses `after`.
  { [ "$schedule" = free ] || echo "schedule = \"$schedule\""; sed '/^schedule = /d' minimal.toml; } > "minimal-$schedule.toml"
  [ "$schedule" = free ] && sed -i '/^after = /d' "minimal-$schedule.toml"
  failed=0
  started=$(date +%s)
  for run in $(seq 1 "$RUNS"); do
    set +e
    # --strict: a failure a fault explains exits 1 too (the finding is one).
    "$SNAPSTORM" run --scenario "minimal-$schedule.toml" --strict --state-dir "min-$schedule-$run" > /dev/null 2>&1
    code=$?
    set -e
    case "$code" in
      0) ;;
      1) failed=$((failed + 1)) ;;
      *) echo "schedules.sh: minimal-$schedule.toml run $run exited $code (not a verdict): see min-$schedule-$run" >&2; exit 1 ;;
    esac
  done
  echo "| the shrunk scenario | $schedule | $failed of $RUNS | $(( $(date +%s) - started )) s |"
done
