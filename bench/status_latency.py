#!/usr/bin/env python3
"""End-to-end latency of `gitproc status --json` with many units.

Starts `gitproc daemon --dir` on a temporary directory of N `sleep` units (development mode:
no git involved), waits until every unit runs, then times M runs of the real CLI
(`gitproc status --json`: process start, connect, request, reply, JSON printing) and prints
p50/p95/max. Everything it starts is stopped on exit, even on Ctrl-C.

    cargo build --release
    python3 bench/status_latency.py --bin target/release/gitproc --units 1000 --runs 50

Standard library only. Exit status 1 when p95 exceeds --target-ms (default 20).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="target/release/gitproc", help="gitproc binary")
    p.add_argument("--units", type=int, default=1000, help="number of sleep units")
    p.add_argument("--runs", type=int, default=50, help="timed status calls")
    p.add_argument("--target-ms", type=float, default=20.0, help="p95 budget")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args()


def status(binary, state):
    out = subprocess.run(
        [binary, "status", "--json", "--state-dir", state],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"gitproc status failed ({out.returncode}): {out.stderr.decode()}")
    return out.stdout


def wait_all_running(binary, state, units, timeout, pids):
    deadline = time.monotonic() + timeout
    running = 0
    while time.monotonic() < deadline:
        try:
            data = json.loads(status(binary, state))
            pids.update(u["main_pid"] for u in data["units"] if u.get("main_pid"))
            running = sum(1 for u in data["units"] if u.get("sub_state") == "running")
            if running == units:
                return
        except (RuntimeError, ValueError):
            pass  # the daemon is still starting
        time.sleep(0.2)
    raise RuntimeError(f"only {running}/{units} units running after {timeout}s")


def percentile(sorted_values, q):
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def main():
    args = parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no gitproc binary at {binary}: run `cargo build --release` or pass --bin")
    work = tempfile.mkdtemp(prefix="gitproc-bench-")
    units_dir = os.path.join(work, "units")
    state = os.path.join(work, "state")
    os.makedirs(units_dir)
    for i in range(args.units):
        with open(os.path.join(units_dir, f"s{i:04}.service"), "w") as f:
            f.write(f"[Unit]\nDescription=sleeper {i}\n\n[Service]\nExecStart=/bin/sleep 100000\n")
    daemon = subprocess.Popen(
        [binary, "daemon", "--dir", units_dir, "--state-dir", state,
         "--log-file", os.path.join(work, "daemon.log")],
        stdin=subprocess.DEVNULL,
    )
    pids = set()
    try:
        started = time.monotonic()
        wait_all_running(binary, state, args.units, 120, pids)
        startup = time.monotonic() - started
        status(binary, state)  # warm the page cache
        times = []
        size = 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            size = len(status(binary, state))
            times.append((time.perf_counter() - t0) * 1000)
        times.sort()
        perf = subprocess.run(
            [binary, "perf", "export", "--format", "json", "--state-dir", state],
            stdout=subprocess.PIPE, check=True,
        )
        # Daemon side only: the event loop's time building replies (all requests so far).
        control = json.loads(perf.stdout)["operations"]["control"]
        figures = {
            "units": args.units,
            "runs": args.runs,
            "reply_bytes": size,
            "all_running_after_s": round(startup, 2),
            "p50_ms": round(percentile(times, 0.50), 2),
            "p95_ms": round(percentile(times, 0.95), 2),
            "max_ms": round(times[-1], 2),
            "mean_ms": round(statistics.mean(times), 2),
            "daemon_control_p50_ms": control["p50_us"] / 1000,
            "daemon_control_p95_ms": control["p95_us"] / 1000,
        }
        if args.json:
            print(json.dumps(figures))
        else:
            print(f"gitproc status --json, {args.units} units, {args.runs} runs "
                  f"({size} bytes per reply; all running after {startup:.1f}s)")
            print(f"  p50 {figures['p50_ms']} ms   p95 {figures['p95_ms']} ms   "
                  f"max {figures['max_ms']} ms   (target p95 < {args.target_ms} ms)")
            print(f"  daemon side (event loop, perf 'control'): p50 "
                  f"{figures['daemon_control_p50_ms']} ms   p95 {figures['daemon_control_p95_ms']} ms")
        return 0 if figures["p95_ms"] < args.target_ms else 1
    finally:
        # SIGTERM stops every unit; wait for it, then make sure nothing is left.
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        for pid in pids:  # only if the daemon could not stop them
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"sleep" in f.read():
                        os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
