"""The rows of benches/compare.sh's sweep: min / median / max per scenario and
client count, so that a figure describes the program over many runs rather
than one run.

    python3 benches/sweep_table.py SWEEP FIRST_SCENARIO FIRST_COUNT

SWEEP has one line per headless run: variant scenario clients duration seed
actions seconds peak_mib rss_first_half_mib rss_second_half_mib failures
ready_seconds worked (the actions that were not no-ops). Rates are compared
with FIRST_SCENARIO at FIRST_COUNT clients, median against median: the
actions that did work, which is what a client count changes the mix of
(many clients means many first restores with nothing to restore yet), and
all actions beside them.
"""

import statistics
import sys
from collections import defaultdict


def spread(values, fmt):
    values = sorted(values)
    return f"{fmt(values[0])} / {fmt(statistics.median(values))} / {fmt(values[-1])}"


def row(*cells):
    print("| " + " | ".join(cells) + " |")


def main(path, base_scenario, base_count):
    runs = defaultdict(list)
    for line in open(path):
        v, sc, n, dur, seed, actions, secs, peak, first, second, fail, ready, worked = line.split()
        runs[(v, sc, int(n))].append(
            dict(dur=dur, seed=seed, rate=int(actions) / float(secs),
                 worked=int(worked) / float(secs), peak=int(peak),
                 first=int(first), second=int(second), fail=int(fail), ready=float(ready),
                 past=float(secs) - float(dur.rstrip("s"))))
    order = sorted(runs, key=lambda k: (k[0], k[1] != base_scenario, k[1], k[2]))
    for v, sc, n in order:
        rs = runs[(v, sc, n)]
        seeds = " ".join(sorted({r["seed"] for r in rs}, key=int))
        durations = " ".join(sorted({r["dur"] for r in rs}, key=lambda d: float(d.rstrip("s"))))
        what = f"{v}: {sc}, {n} clients, {len(rs)} runs (seeds {seeds}; {durations})"
        worst = max(rs, key=lambda r: r["peak"])
        row(what, "peak RSS, min / median / max",
            spread([r["peak"] for r in rs], lambda x: f"{x:.0f} MiB")
            + f" (worst: seed {worst['seed']}, {worst['dur']}; its RSS max"
            f" 1st half {worst['first']}, 2nd half {worst['second']})",
            "< 300 MiB at 4 clients, < 1 GiB at 64")
        base, against = runs.get((v, base_scenario, base_count)), f"{base_count} clients"
        if base is None and v != "current":
            # A baseline run only at some counts: set against the current binary's same runs.
            base, against = runs.get(("current", sc, n)), "current"
        if sc == base_scenario and base:
            def ratio(key):
                return statistics.median(r[key] for r in rs) / statistics.median(r[key] for r in base)
            row(what, f"actions that did work /s, min / median / max (median vs {against}); all actions",
                spread([r["worked"] for r in rs], lambda x: f"{x:.2f}") + f" ({ratio('worked'):.2f}x); "
                + spread([r["rate"] for r in rs], lambda x: f"{x:.2f}") + f" ({ratio('rate'):.2f}x); "
                + f"{sum(r['fail'] for r in rs)} failures",
                "≥ 0.8x at 32 and 64, 0 failures")
        row(what, "start to run clock; clock past its end, min / median / max",
            spread([r["ready"] for r in rs], lambda x: f"{x:.1f} s") + "; "
            + spread([r["past"] for r in rs], lambda x: f"{x:.1f} s"),
            "ready < 5 s at 64; past ≤ longest action")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
