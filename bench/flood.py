#!/usr/bin/env python3
"""Restart latency and daemon CPU while one service floods its stdout (`yes`).

Starts `gitproc daemon` on a fresh repository of N `sleep` units (Restart=always,
RestartSec=0) plus, with --flood, one unit running `yes` (a stdout flood the log collector
has to write to `<state>/logs/flood.service.log`). Then K times: SIGKILL a sleep unit's main
pid and poll /proc until its replacement runs (as bench/restart_latency.py does). Reports
restart p50/p95 and the daemon's CPU (utime+stime of all its threads over the kill phase,
in % of one core), and the bytes the collector wrote per second.

Run it twice to compare the quiet and the flooded figure:

    python3 bench/flood.py --kills 40            # quiet
    python3 bench/flood.py --kills 40 --flood    # with the `yes` flooder

With --crash-loop S it instead runs one unit `ExecStart=/bin/false`, Restart=always,
RestartSec=0 for S seconds with `--log-file` and prints the daemon log's total size
(all rotated generations).
"""
import argparse
import glob
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402

YES = shutil.which('yes') or '/usr/bin/yes'
FALSE = shutil.which('false') or '/bin/false'


def cpu_seconds(pid):
    st = gp.read_stat(pid)
    return None if st is None else (st[3] + st[4]) / gp.CLK_TCK


def dir_bytes(pattern):
    total = 0
    for p in glob.glob(pattern):
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total


def restart_phase(b, names, arg_of, kills, settle, timeout, poll):
    daemon_pid = b.daemon.pid
    current = b.main_pids()
    lat = []
    for k in range(kills):
        name = names[k % len(names)]
        arg = arg_of[name]
        old = current.get(name)
        if not old or not gp.is_sleep(old, arg):
            raise RuntimeError('%s: no running main pid before kill %d' % (name, k))
        before = gp.children(daemon_pid)
        t0 = gp.now()
        os.kill(old, signal.SIGKILL)
        new = None
        while new is None and gp.now() < t0 + timeout:
            for p in gp.children(daemon_pid) - before:
                if p != old and gp.is_sleep(p, arg):
                    new = p
                    break
            else:
                time.sleep(poll)
        if new is None:
            b.check_daemon()
            raise RuntimeError('%s: not restarted within %.0f s' % (name, timeout))
        lat.append(gp.now() - t0)
        current[name] = new
        time.sleep(settle)
    return lat


def flood_run(args):
    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-flood-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        names = ['s%04d' % i for i in range(args.units)]
        arg_of = {n: 100000 + i for i, n in enumerate(names)}
        units = {n + '.service': gp.sleep_unit(arg_of[n]) for n in names}
        if args.flood:
            units['flood.service'] = ('[Service]\nExecStart=%s\nRestart=always\n'
                                      'RestartSec=1\n' % YES)
        repo = os.path.join(scratch, 'repo')
        gp.make_repo(repo, units)
        state = os.path.join(scratch, 'state')
        b.start_daemon(repo, state)
        b.wait_running(names, timeout=60)
        logs = os.path.join(state, 'logs', 'flood.service.log*')
        time.sleep(1.0)                 # let the flood reach its steady state
        c0, w0, t0 = cpu_seconds(b.daemon.pid), dir_bytes(logs), gp.now()
        lat = restart_phase(b, names, arg_of, args.kills, args.settle, args.timeout, args.poll)
        c1, w1, t1 = cpu_seconds(b.daemon.pid), dir_bytes(logs), gp.now()
        cpu = 100.0 * (c1 - c0) / (t1 - t0)
        print('\n## Restart latency %s\n' % ('under a `yes` stdout flood' if args.flood
                                             else 'quiet'))
        print('gitproc `%s`, %d sleep units%s, %d kills, settle %.2f s.\n'
              % (b.bin, args.units, ' + 1 `yes` unit' if args.flood else '', args.kills,
                 args.settle))
        print(gp.md_table(['n', 'p50 (ms)', 'p95 (ms)', 'max (ms)', 'daemon CPU (% core)',
                           'flood log growth (MB, net of rotation)'],
                          [[len(lat), gp.ms(gp.pct(lat, .5), '%.2f'),
                            gp.ms(gp.pct(lat, .95), '%.2f'), gp.ms(max(lat), '%.2f'),
                            '%.1f' % cpu, '%.1f' % ((w1 - w0) / 1e6)]]))
        b.ok = True
        return 0
    except RuntimeError as e:
        print('flood: %s' % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()


def crash_loop_run(args):
    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-crash-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        repo = os.path.join(scratch, 'repo')
        gp.make_repo(repo, {'crash.service': '[Unit]\nStartLimitIntervalSec=0\n\n[Service]\n'
                            'ExecStart=%s\nRestart=always\nRestartSec=0\n' % FALSE})
        log = os.path.join(scratch, 'gitproc.log')
        b.start_daemon(repo, os.path.join(scratch, 'state'), extra=['--log-file', log])
        t0 = gp.now()
        c0 = None
        while gp.now() - t0 < args.crash_loop:
            b.check_daemon()
            if c0 is None:
                c0 = cpu_seconds(b.daemon.pid)
            time.sleep(0.5)
        cpu = 100.0 * (cpu_seconds(b.daemon.pid) - c0) / (gp.now() - t0)
        total = dir_bytes(log + '*')
        files = sorted(os.path.basename(p) for p in glob.glob(log + '*'))
        print('\n## Daemon log after a %.0f s crash loop (ExecStart=/bin/false, '
              'Restart=always, RestartSec=0)\n' % args.crash_loop)
        print(gp.md_table(['log bytes (all generations)', 'files', 'daemon CPU (% core)'],
                          [['%d' % total, ' '.join(files), '%.1f' % cpu]]))
        b.ok = True
        return 0
    except RuntimeError as e:
        print('flood: %s' % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--units', type=int, default=10, help='sleep units (default 10)')
    ap.add_argument('--kills', type=int, default=40, help='kills to time (default 40)')
    ap.add_argument('--flood', action='store_true', help='add the `yes` flooder unit')
    ap.add_argument('--settle', type=float, default=0.1, help='pause between kills (s)')
    ap.add_argument('--poll', type=float, default=0.0005, help='/proc poll period (s)')
    ap.add_argument('--timeout', type=float, default=10.0, help='give up on one restart (s)')
    ap.add_argument('--crash-loop', type=float, metavar='S',
                    help='instead: run a /bin/false crash loop for S seconds, report log size')
    ap.add_argument('--scratch', help='work directory (default: a new temporary one)')
    args = ap.parse_args()
    gp.gitproc_bin()
    if args.crash_loop:
        return crash_loop_run(args)
    return flood_run(args)


if __name__ == '__main__':
    sys.exit(main())
