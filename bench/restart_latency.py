#!/usr/bin/env python3
"""Exit-to-restarted latency: kill -9 a service's main pid, time until its replacement runs.

Starts `gitproc daemon` on a fresh repository of N `sleep` units (Restart=always,
RestartSec=0, StartLimitIntervalSec=0), then, K times, picks a unit, SIGKILLs its main pid
and polls /proc (every --poll seconds) for a new child of the daemon that has exec'd that
unit's command. Each unit runs `sleep <100000 + i>`, so the replacement is unambiguous.
`gitproc status --json` is checked afterwards to report the same new pid (a mismatch is
printed as an anomaly, it does not stop the run).

With --immediate, the replacement is killed again as soon as it is seen (no settle time):
a supervisor with a hidden restart floor (runit and s6 wait 1 s) shows it there.

Example (as root, after `cargo build --release`):
    python3 bench/restart_latency.py --units 10 --kills 30
"""
import argparse
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--units', type=int, default=10, help='sleep units (default 10)')
    ap.add_argument('--kills', type=int, default=30, help='kills to time (default 30)')
    ap.add_argument('--poll', type=float, default=0.0005,
                    help='/proc poll period, seconds (default 0.0005)')
    ap.add_argument('--timeout', type=float, default=10.0,
                    help='give up on one restart after this many seconds (default 10)')
    ap.add_argument('--settle', type=float, default=0.25,
                    help='pause between kills, seconds (default 0.25)')
    ap.add_argument('--immediate', action='store_true',
                    help='re-kill each replacement as soon as it runs (no settle)')
    ap.add_argument('--scratch', help='work directory (default: a new temporary directory, '
                                      'removed after a successful run)')
    args = ap.parse_args()
    gp.gitproc_bin()            # exits with a clear message before anything is created
    if args.units < 1 or args.kills < 1:
        ap.error('--units and --kills must be >= 1')

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-restart-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        names, arg_of = b.run_sleep_units(args.units)
        daemon_pid = b.daemon.pid
        print('daemon %d runs %d units; %d kills (scratch %s)'
              % (daemon_pid, args.units, args.kills, scratch), file=sys.stderr)

        lat, anomalies = [], []
        current = b.main_pids()
        for k in range(args.kills):
            # --immediate: the same unit over and over, each kill hitting a fresh child.
            name = names[0] if args.immediate else names[k % len(names)]
            arg = arg_of[name]
            old = current.get(name)
            if not old or not gp.is_sleep(old, arg):
                raise RuntimeError('%s: no running main pid before kill %d (status says %r)'
                                   % (name, k, old))
            before = gp.children(daemon_pid)
            t0 = gp.now()
            os.kill(old, signal.SIGKILL)
            new = None
            deadline = t0 + args.timeout
            while new is None and gp.now() < deadline:
                for p in gp.children(daemon_pid) - before:
                    if p != old and gp.is_sleep(p, arg):
                        new = p
                        break
                else:
                    time.sleep(args.poll)
            if new is None:
                b.check_daemon()
                raise RuntimeError('%s: not restarted within %.0f s of kill %d'
                                   % (name, args.timeout, k))
            lat.append(gp.now() - t0)
            current[name] = new
            if not args.immediate:
                time.sleep(args.settle)
                reported = b.main_pids().get(name)
                if reported != new:
                    anomalies.append('%s: new pid %d but status --json says %r'
                                     % (name, new, reported))

        print('\n## Restart latency: kill -9 of the main pid until the replacement runs\n')
        print('gitproc `%s`, %d sleep units, RestartSec=0, %d kills%s, /proc poll %.1f ms.\n'
              % (b.bin, args.units, args.kills,
                 ' (immediate re-kill)' if args.immediate else '', args.poll * 1e3))
        print(gp.md_table(['n', 'min (ms)', 'p50 (ms)', 'p95 (ms)', 'max (ms)', 'mean (ms)'],
                          [[len(lat), gp.ms(min(lat), '%.2f'), gp.ms(gp.pct(lat, .5), '%.2f'),
                            gp.ms(gp.pct(lat, .95), '%.2f'), gp.ms(max(lat), '%.2f'),
                            gp.ms(sum(lat) / len(lat), '%.2f')]]))
        for a in anomalies:
            print('- anomaly: ' + a)
        # The daemon's own view (reap-to-restart, spawn histograms): where the time goes.
        rc, out, err = b.cli('perf', 'stats')
        print('\n`gitproc perf stats` after the run:\n\n```\n%s```' % (out or err))
        b.ok = True
        return 0
    except RuntimeError as e:
        print('restart_latency: %s' % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == '__main__':
    sys.exit(main())
