#!/usr/bin/env bash
# How often a recorded pack fault's failure comes back in a replay when
# the fault damages the same role (the recording's victim=client-N/K) and
# when it draws its pack at random again (victim= taken out of a copy of
# the trace), seed by seed: the figure behind naming a pack fault's victim
# by its role (docs/faults.md). Not part of CI: a few minutes per seed.
#
#   cargo build
#   benches/victim_roles.sh
#
# Settings (environment):
#   SNAPSTORM   the binary (default target/debug/snapstorm, or
#               $CARGO_TARGET_DIR/debug/snapstorm where that is set)
#   SEEDS       the recordings' seeds (default "1 2 3")
#   RECORD      the run recorded with each seed (default: 2 clients, 20 s,
#               corrupt-pack at 8 s)
#   TRIES       replays per recording and way (default 5)
#   SCHEDULE    the replays' --schedule (default order)
#   WORK        where to keep everything, an empty or new directory
#               (default: a fresh temp dir, kept)
#
# A row counts, for each way, the tries in which the recording's kind of
# failure came back (as `snapstorm replay` says) and the tries whose fault
# damaged the recorded victim's role (read off the trace of each try
# replay kept: it keeps those in which the failure came back); a seed
# whose recording found no failure has nothing to replay and says so.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-${CARGO_TARGET_DIR:-$here/target}/debug/snapstorm}"
SEEDS="${SEEDS:-1 2 3}"
RECORD="${RECORD:---clients 2 --duration 20s --fault corrupt-pack@8s}"
TRIES="${TRIES:-5}"
SCHEDULE="${SCHEDULE:-order}"
WORK="${WORK:-$(mktemp -d /tmp/snapstorm-victims.XXXXXX)}"

[ -x "$SNAPSTORM" ] || { echo "victim_roles.sh: no binary at $SNAPSTORM: run cargo build first" >&2; exit 2; }
mkdir -p "$WORK"
[ -z "$(ls -A "$WORK")" ] || { echo "victim_roles.sh: $WORK is not empty; give an empty WORK" >&2; exit 2; }
cd "$WORK"
echo "$(date -u +%F): $(nproc) cores; work in $WORK" >&2

# How many of the tries in state dir $1 brought the failure back; the
# replays of $1 go under $2.
replay() {
  mkdir -p "$2"
  set +e
  "$SNAPSTORM" replay "$1" --tries "$TRIES" --schedule "$SCHEDULE" --into "$2" > "$2.out" 2> "$2.err"
  local code=$?
  set -e
  case "$code" in
    0|1) sed -n 's/^reproduced \([0-9]*\) of .*/\1/p' "$2.out" ;;
    # A recording that found no failure has nothing to replay: no count.
    2) grep -q 'nothing to reproduce' "$2.err" || { echo "victim_roles.sh: replay of $1 exited 2: see $2.err" >&2; exit 1; } ;;
    *) echo "victim_roles.sh: replay of $1 exited $code (not a verdict): see $2.err" >&2; exit 1 ;;
  esac
}

# How many tries under $1 damaged the role $2.
same_role() {
  local hits=0 trace
  for trace in "$1"/*/trace.jsonl; do
    [ -f "$trace" ] || continue
    if [ "$(grep -o 'victim=client-[0-9]*/[0-9]*' "$trace" | head -1)" = "$2" ]; then
      hits=$((hits + 1))
    fi
  done
  echo "$hits"
}

echo "| seed | recorded victim | named by role: came back | of those, the role damaged | drawn again: came back | of those, the role damaged |"
echo "|---|---|---|---|---|---|"
for seed in $SEEDS; do
  # shellcheck disable=SC2086 # RECORD is a list of arguments
  "$SNAPSTORM" run $RECORD --seed "$seed" --state-dir "rec-$seed" > "rec-$seed.out" 2> "rec-$seed.err" || true
  victim=$(grep -o 'victim=client-[0-9]*/[0-9]*' "rec-$seed/trace.jsonl" | head -1 || true)
  # The same recording, its pack fault without a role: drawn at random.
  cp -r "rec-$seed" "drawn-$seed"
  sed -i 's/,victim=client-[0-9]*\/[0-9]*//' "drawn-$seed/trace.jsonl"
  same=$(replay "rec-$seed" "same-$seed")
  drawn=$(replay "drawn-$seed" "again-$seed")
  if [ -z "$same" ] || [ -z "$drawn" ]; then
    echo "| $seed | ${victim:-none} | no failure recorded, nothing to replay | | | |"
    continue
  fi
  echo "| $seed | ${victim:-none} | $same of $TRIES | $(same_role "same-$seed" "$victim") of $same | $drawn of $TRIES | $(same_role "again-$seed" "$victim") of $drawn |"
done
