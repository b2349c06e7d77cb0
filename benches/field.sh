#!/usr/bin/env bash
# The "failures from the field" table of docs/usage.md, measured: every
# field preset (`snapstorm scenarios`, its own heading) run with rustic_core
# clients and with restic clients, each row from the run's report. Not part
# of CI (tests/field.rs runs the same presets and checks the same result).
#
#   cargo build --release
#   benches/field.sh
#
# Settings (environment):
#   SNAPSTORM   the binary (default target/release/snapstorm)
#   RESTIC_EXE  the restic program (default: restic on PATH)
#   BACKENDS    backends to run each preset with (default "embedded restic mixed";
#               a preset a backend cannot run, e.g. gc = "restic" on embedded,
#               gets a row saying it was refused and why)
#   CLIENTS     clients per run (default 2)
#   DURATION    length of each run (default 30s: the presets act by 16s)
#   SEED        the seed of every run (default 1)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
BACKENDS="${BACKENDS:-embedded restic mixed}"
CLIENTS="${CLIENTS:-2}"
DURATION="${DURATION:-30s}"
SEED="${SEED:-1}"

[ -x "$SNAPSTORM" ] || { echo "field.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
command -v python3 >/dev/null || { echo "field.sh: python3 is needed" >&2; exit 2; }
work="$(mktemp -d /tmp/snapstorm-field.XXXXXX)"
trap 'rm -rf "$work"' EXIT

presets="$("$SNAPSTORM" scenarios | awk '$1 ~ /^field\// { print $1 }')"
[ -n "$presets" ] || { echo "field.sh: snapstorm scenarios lists no field preset" >&2; exit 1; }
restic_version="$("${RESTIC_EXE:-restic}" version 2>/dev/null | awk '{ print $2 }' || true)"
echo "$(date -u +%F): $CLIENTS clients, $DURATION, seed $SEED; restic ${restic_version:-not found}" >&2

echo "| preset | clients | exit | fault | detected | failures (explained) | errors (explained) | restores verified |"
echo "|---|---|---|---|---|---|---|---|"
for preset in $presets; do
  for backend in $BACKENDS; do
    run="$work/$(echo "$preset-$backend" | tr / -)"
    set +e
    "$SNAPSTORM" run --scenario "$preset" --backend "$backend" --clients "$CLIENTS" \
      --duration "$DURATION" --seed "$SEED" --state-dir "$run" --report "$run.json" \
      >"$run.out" 2>"$run.err"
    code=$?
    set -e
    if [ "$code" = 2 ] && [ ! -f "$run.json" ]; then
      why="$(grep -m1 '^snapstorm: ' "$run.err" | sed 's/^snapstorm: //; s/|/\\|/g')"
      case "$backend" in embedded) who=rustic_core ;; mixed) who="rustic_core + restic" ;; *) who="$backend" ;; esac
      echo "| \`$preset\` | $who | 2 | refused: $why | | | | |"
      continue
    fi
    [ -f "$run.json" ] || { echo "field.sh: $preset on $backend wrote no report (exit $code):" >&2; tail -3 "$run.err" >&2; exit 1; }
    python3 - "$run.json" "$preset" "$backend" "$code" <<'PY'
import json, sys
report, preset, backend, code = json.load(open(sys.argv[1])), *sys.argv[2:]
t = report['totals']
clients = {'embedded': 'rustic_core', 'restic': 'restic', 'mixed': 'rustic_core + restic', 'kopia': 'kopia'}.get(backend, backend)
faults = report['faults']
fault = ', '.join(f['label'] for f in faults) or '-'
detected = ', '.join('yes' if f['detected'] else 'no' for f in faults) or '-'
failures = t['verification_failures']
explained = failures - t['unexpected_failures']
print(f"| `{preset}` | {clients} | {code} | `{fault}` | {detected} | {failures} ({explained}) | {t['errors']} ({t['expected_errors']}) | {t['restores_verified']} |")
PY
  done
done
