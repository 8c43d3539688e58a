#!/usr/bin/env python3
"""Crash loops: --units units that exit at once and restart at once, forever, for --seconds.

Each unit is `ExecStart=/bin/false`, `Restart=always`, `RestartSec=0`,
`StartLimitIntervalSec=0`; unit logs rotate at [logs] max_bytes = --max-bytes, keep = 1.
The daemon runs with `--log-file` (its own log, RUST_LOG=info). Measured over the window,
after a short warm-up: restarts per second, the daemon's CPU (utime+stime of all its
threads, % of one core), the daemon log's growth, and the largest per-unit log total.
Exits 1 when the daemon's CPU reaches --max-cpu % of a core, when a unit's logs exceed
(keep + 1) x max_bytes, or when the daemon dies. The short version is the test
`daemon_crash_loops` (10 s, 5 units).

Example (as root, after `cargo build --release`):
    python3 bench/torture_crash_loop.py --units 5 --seconds 60
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402

CRASHER = ('[Unit]\nDescription=crash loop\nStartLimitIntervalSec=0\n\n'
           '[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=0\n')


def restarts(b):
    return sum(u.get('n_restarts') or 0 for u in (b.status() or {}).get('units', []))


def unit_log_totals(logs_dir):
    """{unit: total bytes of <unit>.log and its rotations}."""
    out = {}
    for f in os.listdir(logs_dir):
        unit = f.split('.log')[0]
        out[unit] = out.get(unit, 0) + os.path.getsize(os.path.join(logs_dir, f))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--units', type=int, default=5, help='crash-looping units (default 5)')
    ap.add_argument('--seconds', type=float, default=60.0, help='window (default 60)')
    ap.add_argument('--max-bytes', type=int, default=65536,
                    help='[logs] max_bytes (default 65536)')
    ap.add_argument('--max-cpu', type=float, default=90.0,
                    help='fail at this daemon CPU, %% of one core (default 90)')
    ap.add_argument('--scratch', help='work directory (default: a new temporary directory, '
                                      'removed after a successful run)')
    args = ap.parse_args()
    gp.gitproc_bin()

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-crashloop-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        repo = os.path.join(scratch, 'repo')
        gp.make_repo(repo, {'crash%02d.service' % i: CRASHER for i in range(args.units)})
        config = os.path.join(scratch, 'gitproc.toml')
        with open(config, 'w') as fh:
            fh.write('[logs]\nmax_bytes = %d\nkeep = 1\n' % args.max_bytes)
        log_file = os.path.join(scratch, 'daemon-own.log')
        state = os.path.join(scratch, 'state')
        b.start_daemon(repo, state, ['--config', config, '--log-file', log_file])
        pid = b.daemon.pid
        deadline = gp.now() + 30
        while restarts(b) < 10 * args.units:
            b.check_daemon()
            if gp.now() > deadline:
                raise RuntimeError('the units do not crash-loop; see %s' % scratch)
            time.sleep(0.1)
        r0, c0 = restarts(b), gp.cpu_sample(pid)['ticks']
        l0 = os.path.getsize(log_file) if os.path.exists(log_file) else 0
        t0 = gp.now()
        time.sleep(args.seconds)
        b.check_daemon()
        elapsed = gp.now() - t0
        r1, c1 = restarts(b), gp.cpu_sample(pid)['ticks']
        l1 = os.path.getsize(log_file) if os.path.exists(log_file) else 0
        cpu = (c1 - c0) / gp.CLK_TCK / elapsed * 100
        totals = unit_log_totals(os.path.join(state, 'logs'))
        worst = max(totals.values()) if totals else 0
        rows = [
            ('units x window', '%d x %.0f s' % (args.units, elapsed)),
            ('restarts/s', '%.0f' % ((r1 - r0) / elapsed)),
            ('daemon CPU (% of one core)', '%.1f' % cpu),
            ('daemon --log-file growth (bytes)', str(l1 - l0)),
            ('daemon --log-file total (bytes, with rotations)',
             str(sum(os.path.getsize(os.path.join(scratch, f)) for f in os.listdir(scratch)
                     if f.startswith('daemon-own.log')))),
            ('largest unit log total (bytes; bound (1+1) x %d)' % args.max_bytes, str(worst)),
        ]
        print(gp.md_table(['crash loop', 'value'], rows))
        failures = []
        if cpu >= args.max_cpu:
            failures.append('daemon CPU %.1f %% >= %.0f %%' % (cpu, args.max_cpu))
        if worst > 2 * args.max_bytes:
            failures.append('a unit log totals %d bytes > 2 x %d' % (worst, args.max_bytes))
        for f in failures:
            print('FAIL: ' + f, file=sys.stderr)
        b.ok = not failures
        return 0 if b.ok else 1
    finally:
        b.cleanup()


if __name__ == '__main__':
    sys.exit(main())
