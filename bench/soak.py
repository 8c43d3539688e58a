#!/usr/bin/env python3
"""Soak with churn: the daemon's memory must not grow while units crash, commits land and
operators ask for status, for many minutes.

Starts `gitproc daemon` on a fresh repository of --sleepers `sleep` units and --crashers
crash-looping units (`/bin/false`, Restart=always, RestartSec=0, StartLimitIntervalSec=0),
with small unit-log rotation ([logs] max_bytes = 64 KiB, keep = 2) so that disk stays
bounded too. Then, for --minutes:

- every --commit-every seconds a commit changes the unit set: it edits a sleeper (the
  daemon restarts it), adds a unit, or removes a unit added earlier, in turn;
- every --status-every seconds `gitproc status --json` runs (its latency is reported);
- every --sample seconds the daemon's RSS (VmRSS, and its anonymous and file-backed parts),
  its live heap (the allocator's bytes in use, from `gitproc perf`) and open fd count are
  sampled.

At the end it fits a least-squares line to the samples taken after --warmup minutes and
prints RSS start/end and the slopes (KiB per minute), fds start/end, commits, status calls
and status latency, as Markdown. The bound applies to anonymous RSS (what a leak grows):
file-backed RSS is the binary's pages, faulted in as code paths first run and bounded by
the binary's size. The live-heap slope beside it tells a leak (live bytes grow) from memory
the allocator keeps after churn (anonymous RSS grows, live bytes flat). It exits 1 when
the anonymous slope exceeds --max-slope (default 64 KiB/min), when the open fd count grew (its floor in the last quarter of the run
above its peak in the first), when a status call failed, or when the daemon died.

The warm-up is left out because memory grows at first without leaking: malloc's arena
reaches its working size, each unit's log and histogram first fill, code paths first run.
A 10-minute run cannot tell that growth from a slow leak (the quick form's slope is mostly
warm-up); the hour decides.

Example (as root, after `cargo build --release`):
    python3 bench/soak.py                  # 1 hour, slope fitted after the first 10 minutes
    python3 bench/soak.py --minutes 10     # the quick form (fit after 100 s)
    python3 bench/soak.py --minutes 2 --warmup 0.5
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402

CRASHER = ('[Unit]\nDescription=soak crash loop\nStartLimitIntervalSec=0\n\n'
           '[Service]\nExecStart=/bin/false\nRestart=always\nRestartSec=0\n')


def rss_kib(pid):
    """(VmRSS, RssAnon, RssFile) in KiB. A leak grows RssAnon (heap, stacks); RssFile is
    the pages of the binary and its libraries (and nothing else: the daemon maps no other
    file), which grows as new code paths first run and is bounded by their size."""
    got = {}
    with open('/proc/%d/status' % pid) as fh:
        for line in fh:
            key = line.split(':', 1)[0]
            if key in ('VmRSS', 'RssAnon', 'RssFile'):
                got[key] = int(line.split()[1])
    if 'VmRSS' not in got:
        raise RuntimeError('no VmRSS for pid %d' % pid)
    return got['VmRSS'], got.get('RssAnon', got['VmRSS']), got.get('RssFile', 0)


def heap_kib(b):
    """The daemon's live heap (`perf`'s allocator totals, glibc) in KiB, or None. A leak
    grows it; memory the allocator keeps free does not count."""
    try:
        rc, out, _ = b.cli('perf', 'export', '--format', 'json', timeout=10)
        used = json.loads(out)['allocator']['in_use_bytes'] if rc == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError, TypeError):
        return None
    return used / 1024 if used is not None else None


def fd_count(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


def slope_per_minute(samples):
    """Least-squares slope of [(seconds, kib)] in KiB per minute (0 for < 2 samples)."""
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    sxx = sum((t - mx) ** 2 for t, _ in samples)
    if sxx == 0:
        return 0.0
    sxy = sum((t - mx) * (v - my) for t, v in samples)
    return sxy / sxx * 60.0


class Churn:
    """The commits of the soak: edit a sleeper, add a unit, remove an added one, in turn."""

    def __init__(self, repo, sleepers):
        self.repo = repo
        self.sleepers = sleepers
        self.n = 0
        self.added = []

    def step(self):
        kind = self.n % 3
        self.n += 1
        if kind == 0:
            name = self.sleepers[self.n % len(self.sleepers)]
            gp.write_units(self.repo, {name: gp.sleep_unit(
                100000 + self.sleepers.index(name), 'Environment=SOAK_GEN=%d\n' % self.n)})
            msg = 'soak: edit %s' % name
        elif kind == 1:
            name = 'churn%05d.service' % self.n
            gp.write_units(self.repo, {name: gp.sleep_unit(200000 + self.n)})
            self.added.append(name)
            msg = 'soak: add %s' % name
        else:
            if not self.added:
                return
            name = self.added.pop(0)
            os.remove(os.path.join(self.repo, name))
            msg = 'soak: remove %s' % name
        gp.git(self.repo, 'add', '-A')
        gp.git(self.repo, 'commit', '-q', '-m', msg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--minutes', type=float, default=60.0, help='soak length (default 60)')
    ap.add_argument('--warmup', type=float,
                    help='minutes left out of the slope fit (default: a sixth of the run)')
    ap.add_argument('--sleepers', type=int, default=20, help='sleep units (default 20)')
    ap.add_argument('--crashers', type=int, default=3,
                    help='crash-looping units (default 3)')
    ap.add_argument('--commit-every', type=float, default=3.0,
                    help='seconds between commits (default 3)')
    ap.add_argument('--status-every', type=float, default=1.0,
                    help='seconds between `gitproc status` calls (default 1)')
    ap.add_argument('--sample', type=float, default=5.0,
                    help='seconds between RSS samples (default 5)')
    ap.add_argument('--max-slope', type=float, default=64.0,
                    help='fail above this RSS slope, KiB per minute (default 64)')
    ap.add_argument('--scratch', help='work directory (default: a new temporary directory, '
                                      'removed after a successful run)')
    args = ap.parse_args()
    gp.gitproc_bin()
    if args.warmup is None:
        args.warmup = args.minutes / 6
    if args.minutes <= args.warmup:
        ap.error('--minutes must exceed --warmup')

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-soak-')
    b = gp.Bench(scratch, remove=not args.scratch)
    try:
        sleepers = ['s%04d.service' % i for i in range(args.sleepers)]
        units = {n: gp.sleep_unit(100000 + i) for i, n in enumerate(sleepers)}
        units.update({'crash%02d.service' % i: CRASHER for i in range(args.crashers)})
        repo = os.path.join(scratch, 'repo')
        gp.make_repo(repo, units)
        config = os.path.join(scratch, 'gitproc.toml')
        with open(config, 'w') as fh:
            fh.write('[logs]\nmax_bytes = 65536\nkeep = 2\n')
        b.start_daemon(repo, os.path.join(scratch, 'state'), ['--config', config])
        b.wait_running([n[:-len('.service')] for n in sleepers], timeout=120)
        pid = b.daemon.pid
        print('daemon %d: %d sleepers, %d crash loops, %.1f min soak (scratch %s)'
              % (pid, args.sleepers, args.crashers, args.minutes, scratch), file=sys.stderr)

        churn = Churn(repo, sleepers)
        t0 = gp.now()
        end = t0 + args.minutes * 60
        next_commit = next_status = next_sample = t0
        samples, fds, heap, status_lat, status_fail = [], [], [], [], 0
        while True:
            t = gp.now()
            if t >= end:
                break
            b.check_daemon()
            if t >= next_sample:
                samples.append((t - t0, rss_kib(pid)))
                fds.append(fd_count(pid))
                heap.append((t - t0, heap_kib(b)))
                next_sample += args.sample
                if len(samples) % 12 == 1:
                    print('  %5.1f min: RSS %d KiB (anon %d, file %d), %d fds, %d commits'
                          % ((t - t0) / 60, *samples[-1][1], fds[-1], churn.n),
                          file=sys.stderr)
            if t >= next_commit:
                churn.step()
                next_commit += args.commit_every
            if t >= next_status:
                s0 = gp.now()
                try:
                    rc, _, _ = b.cli('status', '--json', timeout=10)
                except subprocess.TimeoutExpired:
                    rc = -1
                status_lat.append(gp.now() - s0)
                status_fail += rc != 0
                next_status += args.status_every
            time.sleep(max(0.0, min(next_sample, next_commit, next_status, end) - gp.now()))
        b.check_daemon()
        samples.append((gp.now() - t0, rss_kib(pid)))
        fds.append(fd_count(pid))

        fit = [(t, v) for t, v in samples if t >= args.warmup * 60]
        slope_rss = slope_per_minute([(t, v[0]) for t, v in fit])
        slope = slope_per_minute([(t, v[1]) for t, v in fit])
        slope_file = slope_per_minute([(t, v[2]) for t, v in fit])
        heap_fit = [(t, v) for t, v in heap if v is not None and t >= args.warmup * 60]
        heap_all = [v for _, v in heap if v is not None]
        slope_heap = slope_per_minute(heap_fit) if len(heap_fit) > 1 else None
        restarts = sum(u.get('n_restarts') or 0 for u in (b.status() or {}).get('units', []))
        status_lat.sort()
        rows = [
            ('minutes', '%.1f (fit after %.1f)' % (args.minutes, args.warmup)),
            ('RSS start / after warm-up / end (KiB)', '%d / %d / %d'
             % (samples[0][1][0], fit[0][1][0], samples[-1][1][0])),
            ('anonymous RSS start / after warm-up / end (KiB)', '%d / %d / %d'
             % (samples[0][1][1], fit[0][1][1], samples[-1][1][1])),
            ('anonymous RSS slope after warm-up (KiB/min)', '%.1f (bound %.0f)'
             % (slope, args.max_slope)),
            ('RSS / file-backed RSS slope (KiB/min)', '%.1f / %.1f' % (slope_rss, slope_file)),
            ('live heap start / after warm-up / end (KiB; allocator in use)',
             '%.0f / %.0f / %.0f' % (heap_all[0], heap_fit[0][1], heap_all[-1])
             if heap_all and heap_fit else '-'),
            ('live heap slope after warm-up (KiB/min)',
             '-' if slope_heap is None else '%.1f' % slope_heap),
            ('open fds start / max / end', '%d / %d / %d' % (fds[0], max(fds), fds[-1])),
            ('commits', str(churn.n)),
            ('restarts (crash loops and edits)', str(restarts)),
            ('status calls (failed)', '%d (%d)' % (len(status_lat), status_fail)),
            ('status p50 / p95 / max (ms)', '%s / %s / %s'
             % (gp.ms(gp.pct(status_lat, 0.5)), gp.ms(gp.pct(status_lat, 0.95)),
                gp.ms(status_lat[-1] if status_lat else None))),
        ]
        print(gp.md_table(['soak', 'value'], rows))
        failures = []
        if slope > args.max_slope:
            failures.append('anonymous RSS grows %.1f KiB/min (> %.0f)'
                            % (slope, args.max_slope))
        # Transient fds (a status connection, a spawn's pipes) come and go; a leak raises
        # the floor: the fewest open in the last quarter above the most in the first.
        q = max(1, len(fds) // 4)
        if min(fds[-q:]) > max(fds[:q]):
            failures.append('open fds grew: at most %d in the first quarter, at least %d in '
                            'the last' % (max(fds[:q]), min(fds[-q:])))
        if status_fail:
            failures.append('%d status calls failed' % status_fail)
        for f in failures:
            print('FAIL: ' + f, file=sys.stderr)
        b.ok = not failures
        return 0 if b.ok else 1
    finally:
        b.cleanup()


if __name__ == '__main__':
    sys.exit(main())
