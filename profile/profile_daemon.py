#!/usr/bin/env python3
"""Sample a running gitproc daemon's cost from /proc: CPU, memory, threads, fds, wakeups, I/O.

Standard library only. Examples:

    python3 profile/profile_daemon.py                    # find the running `gitproc daemon`
    python3 profile/profile_daemon.py --pid 1234 --duration 30 --interval 0.5
    python3 profile/profile_daemon.py --children --json > profile.json
    python3 profile/profile_daemon.py --plot profile.png # needs matplotlib

Metrics, each sampled every --interval seconds (rates are over the last interval):
  cpu_user_pct / cpu_sys_pct / cpu_total_pct   % of one CPU (utime/stime of /proc/PID/stat)
  rss_kib, pss_kib                             VmRSS (status), Pss (smaps_rollup, if readable)
  threads, fds                                 thread count, open file descriptors
  vol_ctxt_per_s                               voluntary context switches/s = wakeups
  invol_ctxt_per_s                             involuntary context switches/s = preemptions
  read_bytes_per_s, write_bytes_per_s          storage I/O (/proc/PID/io read_bytes/write_bytes)
  rchar_per_s, wchar_per_s                     bytes through read/write syscalls (incl. pipes)
  processes                                    processes sampled (1 unless --children)

With --children, every metric is the sum over the daemon and all its descendants (the
supervised services); a process that exits between two samples drops out of that interval.

Exit status: 0 after a complete run (or Ctrl-C), 1 if the process exited during the run
(the summary of what was sampled is still printed), 2 on a usage error or when no single
daemon can be found.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

CLK_TCK = os.sysconf('SC_CLK_TCK')

# (name, unit, label) in output order.
METRICS = [
    ('cpu_user_pct', '%', 'CPU user'),
    ('cpu_sys_pct', '%', 'CPU system'),
    ('cpu_total_pct', '%', 'CPU total'),
    ('rss_kib', 'KiB', 'RSS'),
    ('pss_kib', 'KiB', 'PSS'),
    ('threads', '', 'threads'),
    ('fds', '', 'open fds'),
    ('vol_ctxt_per_s', '/s', 'voluntary ctx switches (wakeups)'),
    ('invol_ctxt_per_s', '/s', 'involuntary ctx switches'),
    ('read_bytes_per_s', 'B/s', 'storage read'),
    ('write_bytes_per_s', 'B/s', 'storage write'),
    ('rchar_per_s', 'B/s', 'read() bytes'),
    ('wchar_per_s', 'B/s', 'write() bytes'),
    ('processes', '', 'processes'),
]


class Gone(Exception):
    """The sampled process no longer exists (or its pid now belongs to another process)."""


def read_text(path):
    with open(path, 'rb') as fh:
        return fh.read().decode('utf-8', 'replace')


def read_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            data = fh.read()
    except OSError:
        return None
    return [a.decode('utf-8', 'replace') for a in data.split(b'\0')[:-1]]


def read_stat(pid):
    """dict(state, ppid, utime, stime, threads, starttime), or None if the pid is gone."""
    try:
        data = read_text('/proc/%d/stat' % pid)
    except OSError:
        return None
    r = data.rfind(')')
    if r < 0:
        return None
    f = data[r + 2:].split()
    # Fields after "(comm)": f[0] is field 3 (state), so field N is f[N - 3].
    return {'state': f[0], 'ppid': int(f[1]), 'utime': int(f[11]), 'stime': int(f[12]),
            'threads': int(f[17]), 'starttime': int(f[19])}


def is_daemon_cmdline(argv):
    """`gitproc daemon ...`, also with global options before the verb
    (`gitproc --state-dir D daemon`). `gitproc` execs the engine with its own argv kept, so
    that is what a daemon's cmdline reads; `gitprocd daemon ...` run directly counts too."""
    if not argv or os.path.basename(argv[0]) not in ('gitproc', 'gitprocd') or len(argv) < 2:
        return False
    if argv[1] == 'daemon':
        return True
    # Global options first: the first argument that is neither an option nor an option's
    # value must be the verb.
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ('--state-dir', '--config'):
            i += 2
            continue
        if a.startswith('-'):
            i += 1
            continue
        return a == 'daemon'
    return False


def find_daemons():
    me = os.getpid()
    found = []
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        argv = read_cmdline(pid)
        st = read_stat(pid)
        if st and st['state'] not in ('Z', 'X') and is_daemon_cmdline(argv):
            found.append((pid, argv))
    return sorted(found)


def descendants(root):
    """root and all its live descendants, from one scan of /proc."""
    kids = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        st = read_stat(int(name))
        if st and st['state'] not in ('Z', 'X'):
            kids.setdefault(st['ppid'], []).append(int(name))
    out, stack = [], [root]
    seen = set()
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.add(p)
        out.append(p)
        stack.extend(kids.get(p, ()))
    return out


def status_fields(path, keys):
    out = {}
    for line in read_text(path).splitlines():
        k, _, v = line.partition(':')
        if k in keys:
            out[k] = int(v.split()[0])
    return out


def sample_process(pid):
    """Counters and gauges of one process, or None if it is gone. Fields that need more
    privilege than we have (io, smaps_rollup, fd of another user's process) are None."""
    st = read_stat(pid)
    if st is None or st['state'] in ('Z', 'X'):
        return None
    s = {'starttime': st['starttime'], 'utime': st['utime'], 'stime': st['stime'],
         'threads': st['threads'], 'rss_kib': None, 'pss_kib': None, 'fds': None,
         'vcsw': 0, 'nvcsw': 0, 'read_bytes': None, 'write_bytes': None,
         'rchar': None, 'wchar': None}
    try:
        s['rss_kib'] = status_fields('/proc/%d/status' % pid, ('VmRSS',)).get('VmRSS', 0)
    except OSError:
        return None
    try:
        s['pss_kib'] = status_fields('/proc/%d/smaps_rollup' % pid, ('Pss',)).get('Pss')
    except OSError:
        pass
    try:
        s['fds'] = len(os.listdir('/proc/%d/fd' % pid))
    except OSError:
        pass
    # /proc/PID/status counts the context switches of the main thread only: sum the threads.
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return None
    for tid in tids:
        try:
            cs = status_fields('/proc/%d/task/%s/status' % (pid, tid),
                               ('voluntary_ctxt_switches', 'nonvoluntary_ctxt_switches'))
        except OSError:
            continue            # the thread exited meanwhile
        s['vcsw'] += cs.get('voluntary_ctxt_switches', 0)
        s['nvcsw'] += cs.get('nonvoluntary_ctxt_switches', 0)
    try:
        io = status_fields('/proc/%d/io' % pid, ('read_bytes', 'write_bytes', 'rchar', 'wchar'))
        for k in ('read_bytes', 'write_bytes', 'rchar', 'wchar'):
            s[k] = io.get(k)
    except OSError:
        pass
    return s


class Sampler:
    def __init__(self, pid, children):
        self.pid, self.children = pid, children
        st = read_stat(pid)
        if st is None or st['state'] in ('Z', 'X'):
            raise Gone('process %d does not exist' % pid)
        self.starttime = st['starttime']
        self.prev = None
        self.prev_t = None

    def snapshot(self):
        """{(pid, starttime): sample} for the process (and its tree). Raises Gone."""
        main = sample_process(self.pid)
        if main is None or main['starttime'] != self.starttime:
            raise Gone('process %d exited' % self.pid)
        snap = {(self.pid, self.starttime): main}
        if self.children:
            for p in descendants(self.pid):
                if p == self.pid:
                    continue
                s = sample_process(p)
                if s is not None:
                    snap[(p, s['starttime'])] = s
        return snap

    def step(self):
        """Take a sample; return the row of metrics for the interval since the previous
        one (None for the first call). Raises Gone."""
        t = time.monotonic()
        snap = self.snapshot()
        row = None
        if self.prev is not None:
            dt = t - self.prev_t
            row = {'t': None}
            common = [k for k in snap if k in self.prev]

            def rate(field):
                vals = [(snap[k][field], self.prev[k][field]) for k in common]
                vals = [(a, b) for a, b in vals if a is not None and b is not None]
                if not vals:
                    return None
                return sum(max(0, a - b) for a, b in vals) / dt

            def gauge(field):
                vals = [s[field] for s in snap.values() if s[field] is not None]
                return sum(vals) if vals else None

            user = rate('utime')
            sys_ = rate('stime')
            row['cpu_user_pct'] = user * 100.0 / CLK_TCK
            row['cpu_sys_pct'] = sys_ * 100.0 / CLK_TCK
            row['cpu_total_pct'] = row['cpu_user_pct'] + row['cpu_sys_pct']
            row['rss_kib'] = gauge('rss_kib')
            row['pss_kib'] = gauge('pss_kib')
            row['threads'] = gauge('threads')
            row['fds'] = gauge('fds')
            row['vol_ctxt_per_s'] = rate('vcsw')
            row['invol_ctxt_per_s'] = rate('nvcsw')
            row['read_bytes_per_s'] = rate('read_bytes')
            row['write_bytes_per_s'] = rate('write_bytes')
            row['rchar_per_s'] = rate('rchar')
            row['wchar_per_s'] = rate('wchar')
            row['processes'] = len(snap)
        self.prev, self.prev_t = snap, t
        return row


def percentile(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(math.floor(k)), int(math.ceil(k))
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(rows):
    out = {}
    for name, unit, label in METRICS:
        vals = [r[name] for r in rows if r.get(name) is not None]
        if not vals:
            out[name] = None           # not readable (permissions) or no sample
            continue
        out[name] = {'unit': unit, 'label': label, 'min': min(vals),
                     'avg': sum(vals) / len(vals), 'p95': percentile(vals, 0.95),
                     'max': max(vals), 'n': len(vals)}
    return out


def fmt(v):
    if v is None:
        return '-'
    if abs(v) >= 100 or v == int(v):
        return '%.0f' % v
    return '%.2f' % v


def print_table(report, out):
    out.write('gitproc profile: pid %d%s, %d samples over %.1f s (interval %.2f s)\n\n'
              % (report['pid'], ' + descendants' if report['children'] else '',
                 report['n_samples'], report['elapsed_s'], report['interval_s']))
    out.write('| metric | unit | min | avg | p95 | max |\n|---|---|---|---|---|---|\n')
    for name, unit, label in METRICS:
        m = report['metrics'].get(name)
        if m is None:
            out.write('| %s | %s | n/a | n/a | n/a | n/a |\n' % (label, unit))
            continue
        out.write('| %s | %s | %s | %s | %s | %s |\n' % (
            label, unit, fmt(m['min']), fmt(m['avg']), fmt(m['p95']), fmt(m['max'])))
    out.write('\nCPU time over the run: %.0f ms user + %.0f ms system\n' % (
        report['cpu_ms']['user'], report['cpu_ms']['sys']))
    out.flush()


def plot(report, path):
    """Draw the series into `path`; returns an error text, or None on success."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return ('--plot needs matplotlib, which is not importable by %s: install it with '
                '`pip install matplotlib` (or `apt-get install python3-matplotlib`)'
                % sys.executable)
    series = report['series']
    groups = [('CPU (% of one CPU)', ['cpu_user_pct', 'cpu_sys_pct']),
              ('Memory (KiB)', ['rss_kib', 'pss_kib']),
              ('Context switches / s', ['vol_ctxt_per_s', 'invol_ctxt_per_s']),
              ('I/O (bytes / s)', ['read_bytes_per_s', 'write_bytes_per_s',
                                   'rchar_per_s', 'wchar_per_s']),
              ('Threads, fds', ['threads', 'fds'])]
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.4 * len(groups)), sharex=True)
    for ax, (title, names) in zip(axes, groups):
        for n in names:
            ys = series.get(n, [])
            if any(y is not None for y in ys):
                ax.plot(series['t'], [float('nan') if y is None else y for y in ys], label=n)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, loc='upper right')
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel('seconds')
    fig.suptitle('gitproc pid %d%s' % (report['pid'],
                                       ' + descendants' if report['children'] else ''))
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        return 'cannot write plot %s: %s' % (path, e)
    return None


def positive(text):
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError('must be > 0, got %s' % text)
    return v


def main():
    doc = __doc__.split('\n')
    ap = argparse.ArgumentParser(description=doc[0], epilog='\n'.join(doc[2:]),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--pid', type=int, help='process to sample (default: the one running '
                                            '`gitproc daemon`, found in /proc)')
    ap.add_argument('--duration', type=positive, default=60.0, help='seconds (default 60)')
    ap.add_argument('--interval', type=positive, default=1.0,
                    help='seconds between samples (default 1.0)')
    ap.add_argument('--children', action='store_true',
                    help='sum over the process and all its descendants (its services)')
    ap.add_argument('--json', action='store_true',
                    help='print one JSON object (summary and series) instead of the table')
    ap.add_argument('--plot', metavar='OUT.png', help='draw the series (needs matplotlib)')
    args = ap.parse_args()

    pid = args.pid
    if pid is None:
        found = find_daemons()
        if not found:
            print('profile_daemon: no running `gitproc daemon` found in /proc; start one or '
                  'pass --pid PID', file=sys.stderr)
            return 2
        if len(found) > 1:
            print('profile_daemon: %d `gitproc daemon` processes are running; pick one with '
                  '--pid:' % len(found), file=sys.stderr)
            for p, argv in found:
                print('  %d  %s' % (p, ' '.join(argv)), file=sys.stderr)
            return 2
        pid = found[0][0]
    cmdline = read_cmdline(pid)
    try:
        sampler = Sampler(pid, args.children)
        sampler.step()
    except Gone as e:
        print('profile_daemon: %s (check the pid with `ps -p %d`)' % (e, pid), file=sys.stderr)
        return 2

    interrupted = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(True))

    rows, error = [], None
    t0 = time.monotonic()
    n_steps = max(1, int(round(args.duration / args.interval)))
    for k in range(1, n_steps + 1):
        # Fixed schedule: sampling cost does not stretch the run.
        delay = t0 + k * args.interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if interrupted:
            break
        try:
            row = sampler.step()
        except Gone as e:
            error = '%s after %.1f s of a %.1f s run' % (e, time.monotonic() - t0, args.duration)
            break
        row['t'] = round(time.monotonic() - t0, 3)
        rows.append(row)
        if interrupted:
            break
    elapsed = time.monotonic() - t0

    series = {'t': [r['t'] for r in rows]}
    for name, _, _ in METRICS:
        series[name] = [r.get(name) for r in rows]
    cpu_ms = {'user': 0.0, 'sys': 0.0}
    for i, r in enumerate(rows):
        dt = r['t'] - (rows[i - 1]['t'] if i else 0.0)
        cpu_ms['user'] += r['cpu_user_pct'] * dt * 10.0
        cpu_ms['sys'] += r['cpu_sys_pct'] * dt * 10.0
    report = {'pid': pid, 'cmdline': cmdline, 'children': args.children,
              'interval_s': args.interval, 'duration_s': args.duration,
              'elapsed_s': round(elapsed, 3), 'n_samples': len(rows),
              'complete': error is None and not interrupted, 'interrupted': bool(interrupted),
              'error': error, 'clk_tck': CLK_TCK, 'cpu_ms': cpu_ms,
              'metrics': summarize(rows), 'series': series}

    if args.json:
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write('\n')
        sys.stdout.flush()
    else:
        print_table(report, sys.stdout)
    if args.plot:
        if not rows:
            print('profile_daemon: no samples to plot', file=sys.stderr)
        else:
            why = plot(report, args.plot)
            if why:
                print('profile_daemon: ' + why, file=sys.stderr)
            else:
                print('profile_daemon: wrote %s' % args.plot, file=sys.stderr)
    if error:
        print('profile_daemon: the sampled process is gone: %s; the summary covers the %d '
              'samples taken before' % (error, len(rows)), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
