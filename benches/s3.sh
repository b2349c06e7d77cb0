#!/usr/bin/env bash
# Actions per second of the same run on the state dir's own repository and
# on S3 (the throw-away Ceph cluster of scripts/ceph, started and stopped
# here), seed by seed, with the ratio S3 / own for each seed and the
# median and worst over the seeds. The figure README and docs/storage.md
# report. Not part of CI.
#
#   cargo build --release
#   benches/s3.sh
#
# Settings (environment):
#   SNAPSTORM   the binary (default target/release/snapstorm)
#   BACKEND     the clients (default embedded; mixed and restic need restic)
#   CLIENTS     clients per run (default 4)
#   DURATION    length of each run (default 30s)
#   SEEDS       seeds, one run per seed and storage (default "1 2 3")
#
# The scenario is tests/scenarios/small-files.toml, the default's mix with
# files of at most 1 MiB and a check now and then: the cluster's memstore
# OSDs hold 2 GiB each, which the default's 64 MiB files fill within minutes.
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
SNAPSTORM="${SNAPSTORM:-$here/target/release/snapstorm}"
BACKEND="${BACKEND:-embedded}"
CLIENTS="${CLIENTS:-4}"
DURATION="${DURATION:-30s}"
SEEDS="${SEEDS:-1 2 3}"

[ -x "$SNAPSTORM" ] || { echo "s3.sh: no binary at $SNAPSTORM: run cargo build --release first" >&2; exit 2; }
command -v python3 >/dev/null || { echo "s3.sh: python3 is needed" >&2; exit 2; }
work="$(mktemp -d /tmp/snapstorm-s3.XXXXXX)"
cluster="$work/ceph"
trap '"$here/scripts/ceph" stop "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT


mkdir -p "$cluster"
"$here/scripts/ceph" start "$cluster" > /dev/null
set -a
# shellcheck disable=SC1091
. "$cluster/s3.env"
set +a
export AWS_ACCESS_KEY_ID="$access_key" AWS_SECRET_ACCESS_KEY="$secret_key"

# Actions per second of one run, from its report.
rate() {
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.2f" % (r["totals"]["actions"] / (r["duration_ms"] / 1000)))' "$1"
}

run() { # NAME SEED [ARGS...]
    local name=$1 seed=$2
    shift 2
    "$SNAPSTORM" run --backend "$BACKEND" --clients "$CLIENTS" --duration "$DURATION" \
        --seed "$seed" --scenario "$here/tests/scenarios/small-files.toml" \
        --state-dir "$work/$name-$seed" --report "$work/$name-$seed.json" "$@" > "$work/$name-$seed.log" 2>&1 \
        || { echo "s3.sh: the $name run of seed $seed exited $? (log: $work/$name-$seed.log)" >&2; trap - EXIT; exit 1; }
    rate "$work/$name-$seed.json"
}

echo "backend $BACKEND, $CLIENTS clients, $DURATION, small files; actions/s"
printf '%-6s %10s %10s %8s\n' seed own s3 ratio
ratios=()
for seed in $SEEDS; do
    own=$(run own "$seed")
    s3=$(run s3 "$seed" --repository "s3:$endpoint/bench-$seed/repo")
    ratio=$(python3 -c "print('%.2f' % ($s3 / $own))")
    ratios+=("$ratio")
    printf '%-6s %10s %10s %8s\n' "$seed" "$own" "$s3" "$ratio"
done
python3 - "${ratios[@]}" <<'EOF'
import statistics, sys
ratios = sorted(float(r) for r in sys.argv[1:])
print("ratio s3/own: median %.2f, worst %.2f, best %.2f" % (statistics.median(ratios), ratios[0], ratios[-1]))
EOF
