#!/usr/bin/env python3
"""Key-to-screen latency of the console while clients run.

Starts `snapstorm --clients N` in a tmux pane, waits until every client is
running, then presses `?` and `esc` in turn and times how long each takes
to show on the screen (polling `tmux capture-pane`). Prints one line:
`keys N median_ms p95_ms max_ms` (the poll itself, a few ms, is included).

    benches/key_latency.py target/release/snapstorm 32 20
"""
import shutil, statistics, subprocess, sys, tempfile, time

binary, clients, presses = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if not shutil.which("tmux"):
    sys.exit("key_latency.py: tmux is needed (apt-get install -y tmux)")
work = tempfile.mkdtemp(prefix="snapstorm-keys.")
session = f"snapstorm-keys-{int(time.time())}"


def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen():
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(test, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if test(screen()):
            return time.monotonic() - start
        time.sleep(0.002)
    raise SystemExit(f"key_latency.py: the screen did not change within {limit} s:\n{screen()}")


tmux("new-session", "-d", "-s", session, "-x", "200", "-y", "60",
     f"{binary} --clients {clients} --seed 1 --state-dir {work}/state --no-bell")
try:
    wait_for(lambda s: f"clients {clients} " in s and "connecting" not in s, 600)
    time.sleep(5)  # let every client get busy
    times = []
    for _ in range(presses):
        start = time.monotonic()
        tmux("send-keys", "-t", session, "?")
        wait_for(lambda s: "help — esc closes" in s, 10)
        times.append(time.monotonic() - start)
        start = time.monotonic()
        tmux("send-keys", "-t", session, "Escape")
        wait_for(lambda s: "help — esc closes" not in s, 10)
        times.append(time.monotonic() - start)
        time.sleep(0.2)
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"keys {len(ms)} {statistics.median(ms):.0f} {p95:.0f} {ms[-1]:.0f}")
finally:
    subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
    time.sleep(1)
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
