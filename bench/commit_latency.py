#!/usr/bin/env python3
"""Commit-to-restarted latency: commit a change to one unit, time until it runs again.

Starts `gitproc daemon --repo <local repo>` on N `sleep` units, then K times: edits one
unit (a new `Environment=BENCH_GENERATION=k` line, so its effective content changes),
commits, and polls /proc until a new child of the daemon runs that unit's command (each
unit runs `sleep <100000 + i>`). The clock starts when `git commit` returns.

Modes:
  (default)  the daemon notices the commit by itself (inotify on a local repository, or
             its poll timer: then the figure is dominated by [poll] min_interval_s);
  --nudge    `gitproc sync` is run right after the commit: the figure is fetch + parse +
             diff + restart, without the wait for the next check.

Example (as root, after `cargo build --release`):
    python3 bench/commit_latency.py --commits 20 --nudge
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--units', type=int, default=5, help='sleep units (default 5)')
    ap.add_argument('--commits', type=int, default=20, help='commits to time (default 20)')
    ap.add_argument('--nudge', action='store_true', help='run `gitproc sync` after each commit')
    ap.add_argument('--timeout', type=float, default=90.0,
                    help='give up on one commit after this many seconds (default 90: '
                         'longer than the default poll interval)')
    ap.add_argument('--poll', type=float, default=0.001,
                    help='/proc poll period, seconds (default 0.001)')
    ap.add_argument('--settle', type=float, default=0.3,
                    help='pause between commits, seconds (default 0.3)')
    ap.add_argument('--scratch', help='work directory (default: a new temporary directory, '
                                      'removed after a successful run)')
    args = ap.parse_args()
    gp.gitproc_bin()            # exits with a clear message before anything is created
    if args.units < 1 or args.commits < 1:
        ap.error('--units and --commits must be >= 1')

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-commit-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        names, arg_of = b.run_sleep_units(args.units)
        repo = os.path.join(scratch, 'repo')
        daemon_pid = b.daemon.pid
        print('daemon %d runs %d units; %d commits%s (scratch %s)'
              % (daemon_pid, args.units, args.commits, ' with sync' if args.nudge else '',
                 scratch), file=sys.stderr)

        lat, commit_s, anomalies = [], [], []
        for k in range(args.commits):
            name = names[k % len(names)]
            arg = arg_of[name]
            old = b.main_pids().get(name)
            if not old or not gp.is_sleep(old, arg):
                raise RuntimeError('%s: no running main pid before commit %d (status says %r)'
                                   % (name, k, old))
            gp.write_units(repo, {name + '.service': gp.sleep_unit(
                arg, 'Environment=BENCH_GENERATION=%d\n' % k)})
            before = gp.children(daemon_pid)
            tc = gp.now()
            gp.git(repo, 'commit', '-q', '-a', '-m', 'bench: change %s (%d)' % (name, k))
            t0 = gp.now()
            commit_s.append(t0 - tc)
            if args.nudge:
                subprocess.Popen([b.bin, 'sync', '--state-dir', b.state],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL).wait(args.timeout)
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
                raise RuntimeError('%s: not restarted within %.0f s of commit %d'
                                   % (name, args.timeout, k))
            lat.append(gp.now() - t0)
            if gp.alive(old):
                anomalies.append('%s: old pid %d still alive next to the new %d'
                                 % (name, old, new))
            time.sleep(args.settle)

        print('\n## Commit latency: `git commit` of a unit change until the unit runs again\n')
        print('gitproc `%s`, %d units, local repository, %d commits, %s.\n'
              % (b.bin, args.units, args.commits,
                 '`gitproc sync` after each commit' if args.nudge
                 else 'no nudge (the daemon notices the commit itself)'))
        print(gp.md_table(['n', 'min (ms)', 'p50 (ms)', 'p95 (ms)', 'max (ms)',
                           'git commit itself, p50 (ms)'],
                          [[len(lat), gp.ms(min(lat)), gp.ms(gp.pct(lat, .5)),
                            gp.ms(gp.pct(lat, .95)), gp.ms(max(lat)),
                            gp.ms(gp.pct(commit_s, .5))]]))
        for a in anomalies:
            print('- anomaly: ' + a)
        b.ok = True
        return 0
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print('commit_latency: %s' % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == '__main__':
    sys.exit(main())
