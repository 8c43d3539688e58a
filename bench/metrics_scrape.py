#!/usr/bin/env python3
"""Latency of a Prometheus scrape (`GET /metrics`) with many units.

Starts `gitproc daemon --dir` on a temporary directory of N `sleep` units with the HTTP
listener on (`[http] listen = "127.0.0.1:0"`; the bound port is read from the daemon's
log), waits until every unit runs, then times M scrapes over one kept-alive connection
(as Prometheus scrapes) and M on a fresh connection each, and prints p50/p95/max, the
body size and the number of samples. Everything it starts is stopped on exit.

    cargo build
    python3 bench/metrics_scrape.py --bin target/debug/gitproc --units 1000 --runs 200

Standard library only. Exit status 1 when the kept-alive p95 exceeds --target-ms (5).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default="target/debug/gitproc", help="gitproc binary")
    p.add_argument("--units", type=int, default=1000, help="number of sleep units")
    p.add_argument("--runs", type=int, default=200, help="timed scrapes per mode")
    p.add_argument("--target-ms", type=float, default=5.0, help="p95 budget (kept-alive)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p.parse_args()


def percentile(sorted_values, q):
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def scrape(conn):
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"/metrics answered {resp.status}: {body[:200]!r}")
    return body


def wait_port(log, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(log) as f:
                m = re.search(r"http: listening on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                return int(m.group(1))
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"no 'http: listening on' line in {log} after {timeout}s")


def running_units(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v1/status")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:  # 503 while the loop is busy starting 1000 units
            return {"units": []}, 0
        data = json.loads(body)
    finally:
        conn.close()
    return data, sum(1 for u in data["units"] if u.get("sub_state") == "running")


def main():
    args = parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"no gitproc binary at {binary}: run `cargo build` or pass --bin")
    work = tempfile.mkdtemp(prefix="gitproc-metrics-")
    units_dir = os.path.join(work, "units")
    state = os.path.join(work, "state")
    log = os.path.join(work, "daemon.log")
    config = os.path.join(work, "gitproc.toml")
    os.makedirs(units_dir)
    with open(config, "w") as f:
        f.write('[http]\nlisten = "127.0.0.1:0"\n')
    for i in range(args.units):
        with open(os.path.join(units_dir, f"s{i:04}.service"), "w") as f:
            f.write(f"[Unit]\nDescription=sleeper {i}\n\n[Service]\nExecStart=/bin/sleep 100000\n")
    daemon = subprocess.Popen(
        [binary, "daemon", "--dir", units_dir, "--state-dir", state, "--config", config,
         "--log-file", log],
        stdin=subprocess.DEVNULL,
    )
    pids = set()
    try:
        port = wait_port(log, 30)
        started = time.monotonic()
        deadline = started + 180
        while True:
            data, running = running_units(port)
            pids.update(u["main_pid"] for u in data["units"] if u.get("main_pid"))
            if running == args.units:
                break
            if time.monotonic() > deadline:
                with open(log) as f:
                    tail = f.read()[-3000:]
                raise RuntimeError(f"only {running}/{args.units} units running after 180 s; "
                                   f"daemon log ends:\n{tail}")
            time.sleep(0.2)
        startup = time.monotonic() - started

        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = scrape(kept)  # warm-up
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        times = {"kept_alive": [], "fresh": []}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            scrape(kept)
            times["kept_alive"].append((time.perf_counter() - t0) * 1000)
        kept.close()
        for _ in range(args.runs):
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            scrape(conn)
            conn.close()
            times["fresh"].append((time.perf_counter() - t0) * 1000)
        figures = {"units": args.units, "runs": args.runs, "bytes": len(body),
                   "samples": samples, "all_running_after_s": round(startup, 2)}
        for mode, values in times.items():
            values.sort()
            figures[mode] = {
                "p50_ms": round(percentile(values, 0.50), 2),
                "p95_ms": round(percentile(values, 0.95), 2),
                "max_ms": round(values[-1], 2),
                "mean_ms": round(statistics.mean(values), 2),
            }
        if args.json:
            print(json.dumps(figures))
        else:
            print(f"GET /metrics, {args.units} units, {args.runs} scrapes per mode "
                  f"({len(body)} bytes, {samples} samples per scrape)")
            for mode in ("kept_alive", "fresh"):
                f = figures[mode]
                print(f"  {mode:<10} p50 {f['p50_ms']} ms   p95 {f['p95_ms']} ms   "
                      f"max {f['max_ms']} ms")
            print(f"  target: kept-alive p95 < {args.target_ms} ms")
        return 0 if figures["kept_alive"]["p95_ms"] < args.target_ms else 1
    finally:
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
