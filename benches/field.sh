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
#   PRESETS     the presets to run (default: every field preset)
#   STORAGES    where the repository lives (default "own": the state dir's;
#               "s3": a bucket of the throw-away Ceph cluster of scripts/ceph,
#               started and stopped here, a fresh prefix per run; "own s3": both)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
BACKENDS="${BACKENDS:-embedded restic mixed}"
CLIENTS="${CLIENTS:-2}"
DURATION="${DURATION:-30s}"
SEED="${SEED:-1}"
STORAGES="${STORAGES:-own}"

[ -x "$SNAPSTORM" ] || { echo "field.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
command -v python3 >/dev/null || { echo "field.sh: python3 is needed" >&2; exit 2; }
work="$(mktemp -d /tmp/snapstorm-field.XXXXXX)"
cluster="$work/ceph"
trap '"$here/scripts/ceph" stop "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
for storage in $STORAGES; do
  case "$storage" in
    own) ;;
    s3)
      mkdir -p "$cluster"
      "$here/scripts/ceph" start "$cluster" > /dev/null
      endpoint="$(sed -n 's/^endpoint=//p' "$cluster/s3.env")"
      AWS_ACCESS_KEY_ID="$(sed -n 's/^access_key=//p' "$cluster/s3.env")"
      AWS_SECRET_ACCESS_KEY="$(sed -n 's/^secret_key=//p' "$cluster/s3.env")"
      export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
      ;;
    *) echo "field.sh: STORAGES takes own and s3, not $storage" >&2; exit 2 ;;
  esac
done

presets="${PRESETS:-$("$SNAPSTORM" scenarios | awk '$1 ~ /^field\// { print $1 }')}"
[ -n "$presets" ] || { echo "field.sh: snapstorm scenarios lists no field preset" >&2; exit 1; }
restic_version="$("${RESTIC_EXE:-restic}" version 2>/dev/null | awk '{ print $2 }' || true)"
echo "$(date -u +%F): $CLIENTS clients, $DURATION, seed $SEED; restic ${restic_version:-not found}" >&2

echo "| preset | clients | storage | exit | fault | detected | failures (explained) | errors (explained) | restores verified |"
echo "|---|---|---|---|---|---|---|---|---|"
for preset in $presets; do
  for backend in $BACKENDS; do
  for storage in $STORAGES; do
    name="$(echo "$preset-$backend-$storage" | tr / -)"
    run="$work/$name"
    where=()
    [ "$storage" = s3 ] && where=(--repository "s3:$endpoint/field/$name")
    set +e
    "$SNAPSTORM" run --scenario "$preset" --backend "$backend" --clients "$CLIENTS" \
      --duration "$DURATION" --seed "$SEED" --state-dir "$run" --report "$run.json" \
      "${where[@]}" >"$run.out" 2>"$run.err"
    code=$?
    set -e
    if [ "$code" = 2 ] && [ ! -f "$run.json" ]; then
      why="$(grep -m1 '^snapstorm: ' "$run.err" | sed 's/^snapstorm: //; s/|/\\|/g')"
      case "$backend" in embedded) who=rustic_core ;; mixed) who="rustic_core + restic" ;; *) who="$backend" ;; esac
      echo "| \`$preset\` | $who | $storage | 2 | refused: $why | | | | |"
      continue
    fi
    [ -f "$run.json" ] || { echo "field.sh: $preset on $backend wrote no report (exit $code):" >&2; tail -3 "$run.err" >&2; exit 1; }
    python3 - "$run.json" "$preset" "$backend" "$code" "$storage" <<'PY'
import json, sys
report, preset, backend, code, storage = json.load(open(sys.argv[1])), *sys.argv[2:]
t = report['totals']
clients = {'embedded': 'rustic_core', 'restic': 'restic', 'mixed': 'rustic_core + restic', 'kopia': 'kopia'}.get(backend, backend)
faults = report['faults']
fault = ', '.join(f['label'] for f in faults) or '-'
detected = ', '.join('yes' if f['detected'] else 'no' for f in faults) or '-'
failures = t['verification_failures']
explained = failures - t['unexpected_failures']
print(f"| `{preset}` | {clients} | {storage} | {code} | `{fault}` | {detected} | {failures} ({explained}) | {t['errors']} ({t['expected_errors']}) | {t['restores_verified']} |")
PY
  done
  done
done
