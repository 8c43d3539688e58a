#!/usr/bin/env python3
"""Regression guard: record gitproc's key figures, re-measure them, fail on a regression.

  baseline  measure every figure --reps times and write them, with their spread, to a JSON
            file (default bench/regress-baseline.json; --quick: bench/regress-quick.json)
  test      measure again and compare with the baseline; exit 1 when a figure is worse than
            allowed (the table says which and by how much)
  report    print the baseline (and the last test, if any) as a Markdown table

Figures: start of N services until all exec'd, first service exec'd, restart after kill -9
(p50, p95), `gitproc status --json` end to end (p50), stop of N services, idle CPU
(schedstat, per 30 s), supervisor PSS; with --criterion also the criterion benches' medians
(`cargo bench`). Every run also measures the machine: fork+exec of /bin/true (median of
300). Time figures are compared as ratios to that probe, so a slower or busier machine
does not fail the test by itself; PSS is compared as is.

Threshold: a figure fails when its ratio exceeds the baseline's by more than
max(--floor, 1 + 3 x the baseline's relative spread (max-min)/median over its reps): a
figure that was noisy when the baseline was taken gets a looser bound. Memory (PSS) is not
a time and hardly moves with the machine's load, so its floor is --memory-floor (1.15;
--quick: --floor's) instead: losing the ordered link (PERFORMANCE.md (k)) costs ~35 %.

Examples (as root):
    cargo build --release
    python3 bench/regress.py baseline                 # ~3 minutes, 3 reps, 100/500 units
    python3 bench/regress.py test
    python3 bench/regress.py report
    python3 bench/regress.py test --quick --bin target/debug/gitproc   # what CI runs (~10 s)
"""
import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# name: (unit, compared as a ratio to the machine probe, description)
FIGURES = {
    'start_all_ms': ('ms', True, 'start N services until all exec\'d'),
    'start_first_ms': ('ms', True, 'first service exec\'d after the daemon\'s launch'),
    'restart_p50_ms': ('ms', True, 'restart after kill -9, p50'),
    'restart_p95_ms': ('ms', True, 'restart after kill -9, p95'),
    'status_p50_ms': ('ms', True, '`gitproc status --json` of N units, p50'),
    'stop_all_ms': ('ms', True, '`gitproc stop` of N services until all exited'),
    'idle_cpu_ms_per_30s': ('ms', True, 'idle CPU with N services (schedstat)'),
    'pss_mib': ('MiB', False, 'supervisor PSS with N services'),
}
MODES = {
    # units for start/status/stop, units while idle, kills, idle window (s), reps
    'full': dict(n=500, idle_n=100, kills=30, idle_s=30.0, reps=3, status_reps=30),
    'quick': dict(n=20, idle_n=20, kills=8, idle_s=2.0, reps=2, status_reps=10),
}


def probe_exec_ms(count=300):
    """Median wall time of fork+exec+wait of /bin/true: the machine's speed right now."""
    times = []
    for _ in range(count):
        t0 = gp.now()
        pid = os.posix_spawn('/bin/true', ['true'], {})
        os.waitpid(pid, 0)
        times.append(gp.now() - t0)
    return gp.pct(times, 0.5) * 1e3


def wait_exec(daemon_pid, n, timeout):
    """Seconds until `n` children of the daemon have exec'd sleep: (first, all)."""
    t0 = gp.now()
    seen, first = set(), None
    while gp.now() < t0 + timeout:
        kids = gp.children(daemon_pid)
        seen &= kids
        for p in kids - seen:
            if gp.is_sleep(p):
                seen.add(p)
                first = first if first is not None else gp.now() - t0
        if len(seen) >= n:
            return first, gp.now() - t0
        time.sleep(0.002)
    raise RuntimeError('only %d of %d services exec\'d after %.0f s' % (len(seen), n, timeout))


def measure_once(mode, scratch):
    """One measurement of every daemon figure, each on a fresh repository and daemon."""
    out = {}
    b = gp.Bench(scratch)
    try:
        # start, PSS, status, stop: N units
        names = ['s%04d' % i for i in range(mode['n'])]
        repo = os.path.join(scratch, 'repo-n')
        gp.make_repo(repo, {x + '.service': gp.sleep_unit(100000 + i)
                            for i, x in enumerate(names)})
        b.start_daemon(repo, os.path.join(scratch, 'state-n'))
        first, all_s = wait_exec(b.daemon.pid, mode['n'], 120)
        out['start_first_ms'], out['start_all_ms'] = first * 1e3, all_s * 1e3
        b.wait_running(names, timeout=60)
        time.sleep(1.0)
        pids = {b.daemon.pid} | {p for p in gp.descendants(b.daemon.pid) if not gp.is_sleep(p)}
        out['pss_mib'] = sum(gp.pss_kib(p) or 0 for p in pids) / 1024.0
        lat = []
        for _ in range(mode['status_reps']):
            t0 = gp.now()
            rc, _, err = b.cli('status', '--json')
            if rc != 0:
                raise RuntimeError('status --json exited %d: %s' % (rc, err.strip()))
            lat.append(gp.now() - t0)
        out['status_p50_ms'] = gp.pct(lat, 0.5) * 1e3
        kids = {p for p in gp.children(b.daemon.pid) if gp.is_sleep(p)}
        t0 = gp.now()
        rc, _, err = b.cli('stop', *names, timeout=120)
        if rc != 0:
            raise RuntimeError('stop exited %d: %s' % (rc, err.strip()))
        gone, alive = gp.wait_exited(kids, 60)
        if alive:
            raise RuntimeError('%d services still running after stop' % len(alive))
        out['stop_all_ms'] = max(gone, gp.now() - t0) * 1e3
        b.stop_daemon()

        # idle and restart: idle_n units
        names = ['i%04d' % i for i in range(mode['idle_n'])]
        arg_of = {x: 200000 + i for i, x in enumerate(names)}
        repo = os.path.join(scratch, 'repo-idle')
        gp.make_repo(repo, {x + '.service': gp.sleep_unit(arg_of[x]) for x in names})
        b.start_daemon(repo, os.path.join(scratch, 'state-idle'))
        b.wait_running(names, timeout=60)
        time.sleep(1.0)
        a = gp.cpu_sample(b.daemon.pid)
        t0 = gp.now()
        time.sleep(mode['idle_s'])
        z = gp.cpu_sample(b.daemon.pid)
        out['idle_cpu_ms_per_30s'] = (z['sched_ns'] - a['sched_ns']) / 1e6 * 30.0 / (gp.now() - t0)
        current, lat = b.main_pids(), []
        for k in range(mode['kills']):
            name = names[k % len(names)]
            old = current.get(name)
            if not old or not gp.is_sleep(old, arg_of[name]):
                raise RuntimeError('%s has no running main pid before kill %d' % (name, k))
            before = gp.children(b.daemon.pid)
            t0 = gp.now()
            os.kill(old, signal.SIGKILL)
            new = None
            while new is None and gp.now() < t0 + 10:
                new = next((p for p in gp.children(b.daemon.pid) - before
                            if p != old and gp.is_sleep(p, arg_of[name])), None)
                if new is None:
                    time.sleep(0.0005)
            if new is None:
                raise RuntimeError('%s not restarted within 10 s' % name)
            lat.append(gp.now() - t0)
            current[name] = new
            time.sleep(0.1)
        out['restart_p50_ms'] = gp.pct(lat, 0.5) * 1e3
        out['restart_p95_ms'] = gp.pct(lat, 0.95) * 1e3
        b.ok = True
    finally:
        b.cleanup()
    return out


def criterion_medians():
    """Runs the criterion benches and returns {bench id: median ns}."""
    subprocess.run(['cargo', 'bench', '--locked', '--', '--noplot'], cwd=gp.REPO_ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    out = {}
    for path in glob.glob(os.path.join(gp.REPO_ROOT, 'target', 'criterion', '**', 'new',
                                       'estimates.json'), recursive=True):
        rel = os.path.relpath(os.path.dirname(os.path.dirname(path)),
                              os.path.join(gp.REPO_ROOT, 'target', 'criterion'))
        with open(path) as fh:
            out['criterion:' + rel] = json.load(fh)['median']['point_estimate'] / 1e6
    return out


def measure(mode_name, reps, with_criterion):
    """{'probe_ms': [...], 'figures': {name: [values...]}} over `reps` repetitions."""
    mode = MODES[mode_name]
    runs, probes = [], []
    for r in range(reps):
        print('rep %d/%d: machine probe, then the daemon figures' % (r + 1, reps),
              file=sys.stderr)
        probes.append(probe_exec_ms())
        scratch = tempfile.mkdtemp(prefix='gitproc-regress-')
        runs.append(measure_once(mode, scratch))
        shutil.rmtree(scratch, ignore_errors=True)
        probes.append(probe_exec_ms())
    figures = {k: [run[k] for run in runs] for k in runs[0]}
    if with_criterion:
        for k, v in criterion_medians().items():
            figures[k] = [v]
    return {'mode': mode_name, 'bin': gp.gitproc_bin(), 'probe_ms': probes,
            'figures': figures, 'taken': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()),
            'load': os.getloadavg()[0]}


def median(values):
    return gp.pct(values, 0.5)


def spread(values):
    m = median(values)
    return (max(values) - min(values)) / m if m else 0.0


def is_ratio(name):
    return FIGURES.get(name, ('', True, ''))[1]


def normalised(run, name):
    v = median(run['figures'][name])
    return v / median(run['probe_ms']) if is_ratio(name) else v


def compare(base, now, floor, memory_floor):
    """Rows (name, base, now, change, allowed, ok) and whether all passed."""
    rows, ok = [], True
    for name in base['figures']:
        if name not in now['figures']:
            continue
        b, n = normalised(base, name), normalised(now, name)
        noise = spread(base['figures'][name])
        if is_ratio(name):
            noise = max(noise, spread(base['probe_ms']))
        allowed = max(floor if is_ratio(name) else memory_floor, 1.0 + 3.0 * noise)
        change = n / b if b > 0 else 1.0
        passed = change <= allowed
        ok &= passed
        rows.append((name, median(base['figures'][name]), median(now['figures'][name]),
                     change, allowed, passed))
    return rows, ok


def print_report(base, now=None, rows=None):
    print('## gitproc regression figures (%s mode)\n' % base['mode'])
    print('Baseline taken %s at load %.1f, machine probe (fork+exec of /bin/true) %.3f ms; '
          '`%s`.' % (base['taken'], base['load'], median(base['probe_ms']), base['bin']))
    if now:
        print('Test taken %s at load %.1f, machine probe %.3f ms.'
              % (now['taken'], now['load'], median(now['probe_ms'])))
    print()
    if rows is None:
        table = [[name, FIGURES.get(name, ('ms', True, name))[2],
                  '%.3f' % median(v), '%.0f %%' % (100 * spread(v)), len(v)]
                 for name, v in base['figures'].items()]
        print(gp.md_table(['figure', 'what', 'median', 'spread', 'reps'], table))
    else:
        table = [[name, '%.3f' % b, '%.3f' % n, '%.2fx' % c, '%.2fx' % a,
                  'ok' if p else '**REGRESSION**'] for name, b, n, c, a, p in rows]
        print(gp.md_table(['figure', 'baseline', 'now', 'change (machine-normalised)',
                           'allowed', 'verdict'], table))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('action', choices=['baseline', 'test', 'report'])
    ap.add_argument('--quick', action='store_true',
                    help='small sizes and windows (20 units, 2 s idle, 2 reps): seconds, for CI')
    ap.add_argument('--baseline', help='the baseline JSON (default bench/regress-baseline.json, '
                                       'with --quick bench/regress-quick.json)')
    ap.add_argument('--bin', help='the gitproc binary (default GITPROC_BIN, else '
                                  'target/release/gitproc)')
    ap.add_argument('--reps', type=int, help='repetitions (default 3, --quick 2)')
    ap.add_argument('--floor', type=float, default=1.5,
                    help='smallest allowed ratio to the baseline (default 1.5)')
    ap.add_argument('--memory-floor', type=float,
                    help='smallest allowed ratio for memory figures (default 1.15; with '
                         '--quick the same as --floor)')
    ap.add_argument('--criterion', action='store_true',
                    help='also run `cargo bench` and guard the criterion medians')
    args = ap.parse_args()
    if args.bin:
        os.environ['GITPROC_BIN'] = os.path.abspath(args.bin)
    mode = 'quick' if args.quick else 'full'
    memory_floor = args.memory_floor or (args.floor if args.quick else 1.15)
    path = args.baseline or os.path.join(
        HERE, 'regress-quick.json' if args.quick else 'regress-baseline.json')
    last = path.replace('.json', '.last.json')
    if args.action == 'report':
        with open(path) as fh:
            base = json.load(fh)
        now = json.load(open(last)) if os.path.exists(last) else None
        print_report(base, now, compare(base, now, args.floor, memory_floor)[0] if now else None)
        return 0
    gp.gitproc_bin()
    reps = args.reps or MODES[mode]['reps']
    try:
        run = measure(mode, reps, args.criterion)
    except (RuntimeError, subprocess.SubprocessError) as e:
        print('regress: %s' % e, file=sys.stderr)
        return 2
    if args.action == 'baseline':
        with open(path, 'w') as fh:
            json.dump(run, fh, indent=1, sort_keys=True)
        print_report(run)
        print('\nwritten to %s' % path)
        return 0
    with open(path) as fh:
        base = json.load(fh)
    with open(last, 'w') as fh:
        json.dump(run, fh, indent=1, sort_keys=True)
    rows, ok = compare(base, run, args.floor, memory_floor)
    print_report(base, run, rows)
    if not ok:
        print('\nregress: a figure is worse than the baseline allows', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
