#!/usr/bin/env python3
"""Start, memory, idle cost and stop of `gitproc daemon` with many `sleep` services.

Three phases, each on a fresh repository and daemon:
  1. start:  N (--start-n, default 500) units; time from launching the daemon until N
             children of the daemon have exec'd `sleep` (/proc poll every 5 ms), then the
             time until `status --json` shows all of them with a main pid; after --settle
             seconds, the supervisor's PSS (the daemon and its own helper processes, not the
             services) in total and per service.
  2. idle:   M (--idle-n, default 100) units running; over --idle seconds (default 30), the
             daemon's CPU time (utime+stime ticks, and schedstat ns) and wakeups (voluntary
             context switches of all its threads).
  3. stop:   on the same daemon, `gitproc stop` of all M units in one command; time until
             every service process has exited (pidfd), and until the command returns.

Example (as root, after `cargo build --release`):
    python3 bench/start_stop.py
    python3 bench/start_stop.py --start-n 50 --idle-n 20 --idle 3   # a quick smoke run
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


def service_children(daemon_pid):
    return {p for p in gp.children(daemon_pid) if gp.is_sleep(p)}


def supervisor_pids(daemon_pid):
    """The daemon and any helper process under it that is not a service."""
    return {daemon_pid} | {p for p in gp.descendants(daemon_pid) if not gp.is_sleep(p)}


def phase_start(b, scratch, n, timeout, settle):
    names = ['s%04d' % i for i in range(n)]
    repo = os.path.join(scratch, 'repo-start')
    gp.make_repo(repo, {x + '.service': gp.sleep_unit() for x in names})
    t0 = gp.now()
    b.start_daemon(repo, os.path.join(scratch, 'state-start'), b.extra)
    pid = b.daemon.pid
    seen = set()           # children known to have exec'd sleep
    t_all = t_first = None
    deadline = t0 + timeout
    while gp.now() < deadline:
        b.check_daemon()
        kids = gp.children(pid)
        seen &= kids
        for p in kids - seen:
            if gp.is_sleep(p):     # a child not yet exec'd is read again next scan
                seen.add(p)
                if t_first is None:
                    t_first = gp.now() - t0
        if len(seen) >= n:
            t_all = gp.now() - t0
            break
        time.sleep(0.005)
    if t_all is None:
        raise RuntimeError('start: only %d of %d services running after %.0f s'
                           % (len(seen), n, timeout))
    t_status = b.wait_running(names, timeout=timeout) + t_all
    time.sleep(settle)
    sup = supervisor_pids(pid)
    pss = sum(gp.pss_kib(p) or 0 for p in sup)
    stop_s = b.stop_daemon(timeout=120)
    return {'n': n, 'all_running_s': t_all, 'first_s': t_first, 'status_all_s': t_status,
            'pss_kib': pss, 'sup_procs': len(sup), 'shutdown_s': stop_s}


def phase_idle_stop(b, scratch, n, idle_s, timeout):
    names = ['i%04d' % i for i in range(n)]
    repo = os.path.join(scratch, 'repo-idle')
    gp.make_repo(repo, {x + '.service': gp.sleep_unit() for x in names})
    b.start_daemon(repo, os.path.join(scratch, 'state-idle'), b.extra)
    pid = b.daemon.pid
    b.wait_running(names, timeout=timeout)
    time.sleep(1.0)        # let start-up work (state save, log setup) finish
    sup = supervisor_pids(pid)
    a = {p: gp.cpu_sample(p) for p in sup}
    ta = gp.thread_wakeups(pid)
    t0 = gp.now()
    time.sleep(idle_s)
    el = gp.now() - t0
    z = {p: gp.cpu_sample(p) for p in sup}
    tz = gp.thread_wakeups(pid)
    d = {'ticks': 0, 'sched_ns': 0, 'vcsw': 0, 'nvcsw': 0}
    for p in sup:
        if a.get(p) and z.get(p):
            for k in d:
                d[k] += z[p][k] - a[p][k]
    idle = {'n': n, 'seconds': el, 'cpu_ms': d['ticks'] * 1000.0 / gp.CLK_TCK,
            'sched_ms': d['sched_ns'] / 1e6, 'wakeups_per_s': d['vcsw'] / el,
            'nonvol_per_s': d['nvcsw'] / el,
            'threads': {name: ((tz[name][0] - ta.get(name, (0, 0))[0]) / el,
                               (tz[name][1] - ta.get(name, (0, 0))[1]) / 1e6 * 30.0 / el)
                        for name in tz}}

    kids = service_children(pid)
    if len(kids) != n:
        raise RuntimeError('stop: %d service processes before stop, expected %d'
                           % (len(kids), n))
    t0 = gp.now()
    cmd = subprocess.Popen([b.bin, 'stop'] + names + ['--state-dir', b.state],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    gone_s, alive = gp.wait_exited(kids, timeout)
    try:
        _, err = cmd.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        cmd.kill()
        _, err = cmd.communicate()
    cmd_s = gp.now() - t0
    if cmd.returncode != 0:
        raise RuntimeError('`gitproc stop` exited %s: %s' % (cmd.returncode,
                                                            err.decode(errors='replace')))
    if alive:
        raise RuntimeError('stop: %d of %d services still running after %.0f s'
                           % (len(alive), n, timeout))
    stop = {'n': n, 'all_exited_s': gone_s, 'cmd_s': cmd_s}
    b.stop_daemon(timeout=60)
    return idle, stop


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--start-n', type=int, default=500, help='services to start (default 500)')
    ap.add_argument('--idle-n', type=int, default=100,
                    help='services for the idle and stop phases (default 100)')
    ap.add_argument('--idle', type=float, default=30.0, help='idle window, s (default 30)')
    ap.add_argument('--settle', type=float, default=2.0,
                    help='pause before measuring memory, s (default 2)')
    ap.add_argument('--timeout', type=float, default=120.0,
                    help='bound of every wait, s (default 120)')
    ap.add_argument('--config', help='a gitproc TOML configuration file for the daemons '
                                     '(e.g. `fallback_reap_ms = 0`)')
    ap.add_argument('--skip-start', action='store_true',
                    help='only the idle and stop phases')
    ap.add_argument('--scratch', help='work directory (default: a new temporary directory, '
                                      'removed after a successful run)')
    args = ap.parse_args()
    gp.gitproc_bin()            # exits with a clear message before anything is created
    if args.start_n < 1 or args.idle_n < 1 or args.idle <= 0:
        ap.error('sizes must be >= 1 and --idle > 0')

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-startstop-')
    b = gp.Bench(scratch, remove=not args.scratch)
    b.extra = ['--config', os.path.abspath(args.config)] if args.config else []
    st = None
    try:
        if not args.skip_start:
            print('phase 1: start %d services (scratch %s)' % (args.start_n, scratch),
                  file=sys.stderr)
            st = phase_start(b, scratch, args.start_n, args.timeout, args.settle)
        print('phase 2+3: %d services idle %.0f s, then stop' % (args.idle_n, args.idle),
              file=sys.stderr)
        idle, stop = phase_idle_stop(b, scratch, args.idle_n, args.idle, args.timeout)
        b.ok = True
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        print('start_stop: %s' % e, file=sys.stderr)
        return 1
    finally:
        b.cleanup()

    print('\n## gitproc start / memory / idle / stop (`%s`%s)\n'
          % (b.bin, ', config %s' % args.config if args.config else ''))
    rows = [] if st is None else [
         ['start %d services: all exec\'d (ms)' % st['n'], gp.ms(st['all_running_s'], '%.0f')],
         ['start: first service exec\'d (ms)', gp.ms(st['first_s'], '%.0f')],
         ['start: status --json shows all with a main pid (ms)',
          gp.ms(st['status_all_s'], '%.0f')],
         ['supervisor PSS with %d services (MiB)' % st['n'],
          '%.1f (%d procs)' % (st['pss_kib'] / 1024.0, st['sup_procs'])],
         ['supervisor PSS per service (KiB)', '%.1f' % (st['pss_kib'] / float(st['n']))],
         ['daemon SIGTERM with %d services until exit (ms)' % st['n'],
          gp.ms(st['shutdown_s'], '%.0f')]]
    print(gp.md_table(
        ['measure', 'value'],
        rows + [
         ['idle %d services: CPU ms per 30 s (ticks)' % idle['n'],
          '%.1f' % (idle['cpu_ms'] * 30.0 / idle['seconds'])],
         ['idle: CPU ms per 30 s (schedstat)', '%.2f' % (idle['sched_ms'] * 30.0 / idle['seconds'])],
         ['idle: wakeups/s (voluntary ctx switches)', '%.2f' % idle['wakeups_per_s']],
         ['idle: involuntary ctx switches/s', '%.2f' % idle['nonvol_per_s']],
         ['stop %d services: all exited (ms)' % stop['n'], gp.ms(stop['all_exited_s'], '%.0f')],
         ['stop: `gitproc stop` returned (ms)', gp.ms(stop['cmd_s'], '%.0f')]] + [
         ['idle: thread %s: wakeups/s, CPU ms per 30 s' % name, '%.2f, %.2f' % v]
         for name, v in sorted(idle['threads'].items())]))
    print('\nIdle window %.1f s. Targets (issue 3): start 500 < 600 ms, PSS < 16 MiB, idle '
          '< 5 ms CPU / 30 s, stop 100 < 50 ms.' % idle['seconds'])
    return 0


if __name__ == '__main__':
    sys.exit(main())
