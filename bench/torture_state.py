#!/usr/bin/env python3
"""State directory faults, repeated: full (ENOSPC) and frozen (chattr +i), --cycles times.

The state directory is a subdirectory of a --size tmpfs mounted for the run (root only).
Each cycle: the fault is applied (a filler file takes every free byte, or `chattr +i` on
the state directory; on a file system without the flag, tmpfs included, the frozen half
uses a read-only bind mount instead), then for --fault-seconds every sleeper is SIGKILLed
in turn and must be restarted (count and latency), `state.json` must stay byte for byte
what it was and `gitproc perf` must count failed saves; then the fault is removed and the
time until the next successful save (which records the current pids) is measured.
Exits 1 on any lost restart, changed state file, missing failure or missing recovery.
The short version is the test module `state_faults`.

Example (as root, after `cargo build --release`):
    python3 bench/torture_state.py --cycles 10
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


def sh(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError('%s: %s' % (' '.join(cmd), r.stderr.strip()))


def writer(b):
    rc, out, err = b.cli('perf', 'stats', '--json')
    if rc != 0:
        raise RuntimeError('gitproc perf: %s' % err)
    return json.loads(out)['state_writer']


def read(path):
    try:
        with open(path, 'rb') as fh:
            return fh.read()
    except OSError:
        return b''


def fill(dir_):
    path = os.path.join(dir_, 'filler')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 16, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, b'\x5a' * size)
                except OSError:
                    break
    finally:
        os.close(fd)
    return path


class Frozen:
    def __init__(self, dir_):
        self.dir = dir_
        try:
            sh('chattr', '+i', dir_)
            self.how = 'chattr +i'
        except RuntimeError:
            sh('mount', '--bind', dir_, dir_)
            sh('mount', '-o', 'remount,bind,ro', dir_, dir_)
            self.how = 'ro bind mount'

    def thaw(self):
        if self.how == 'chattr +i':
            sh('chattr', '-i', self.dir)
        else:
            sh('umount', '-l', self.dir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--cycles', type=int, default=10, help='fault cycles (default 10), '
                    'alternating full and frozen')
    ap.add_argument('--units', type=int, default=5, help='sleep units (default 5)')
    ap.add_argument('--fault-seconds', type=float, default=5.0,
                    help='seconds each fault lasts (default 5)')
    ap.add_argument('--size', default='4m', help='tmpfs size (default 4m)')
    ap.add_argument('--scratch', help='work directory for the repository and logs')
    args = ap.parse_args()
    gp.gitproc_bin()
    if os.geteuid() != 0:
        sys.exit('must run as root (mounts a tmpfs)')

    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-state-')
    mnt = tempfile.mkdtemp(prefix='gitproc-state-mnt-')
    sh('mount', '-t', 'tmpfs', '-o', 'size=' + args.size, 'tmpfs', mnt)
    b = gp.Bench(scratch, remove=not args.scratch)
    frozen = None
    try:
        state = os.path.join(mnt, 'state')
        repo = os.path.join(scratch, 'repo')
        names = ['s%04d' % i for i in range(args.units)]
        gp.make_repo(repo, {n + '.service': gp.sleep_unit(100000 + i)
                            for i, n in enumerate(names)})
        config = os.path.join(scratch, 'gitproc.toml')
        with open(config, 'w') as fh:
            fh.write('[state]\nsave_interval_s = 0.2\nsave_min_gap_s = 0.1\n')
        b.start_daemon(repo, state, ['--config', config])
        b.wait_running(names)
        state_json = os.path.join(state, 'state.json')
        rows, failures, kills, recover = [], [], 0, []
        for cycle in range(args.cycles):
            # Settle: the current pids are saved before the fault.
            deadline = gp.now() + 20
            while True:
                pids = b.main_pids()
                saved = json.loads(read(state_json) or b'{}').get('units', {})
                if all(saved.get(n + '.service', {}).get('main_pid') == pids.get(n)
                       for n in names):
                    break
                if gp.now() > deadline:
                    raise RuntimeError('state.json does not catch up before cycle %d' % cycle)
                time.sleep(0.05)
            before, fails0 = read(state_json), writer(b)['failures']
            kind = 'full' if cycle % 2 == 0 else 'frozen'
            filler = fill(mnt) if kind == 'full' else None
            if kind == 'frozen':
                frozen = Frozen(state)
                kind = 'frozen (%s)' % frozen.how
            lat, lost, t_end = [], 0, gp.now() + args.fault_seconds
            while gp.now() < t_end:
                for n in names:
                    pid = b.main_pids().get(n)
                    if not pid:
                        continue
                    os.kill(pid, signal.SIGKILL)
                    kills += 1
                    t0 = gp.now()
                    try:
                        b.wait_running([n], timeout=10)
                        lat.append(gp.now() - t0)
                    except RuntimeError:
                        lost += 1
            fails = writer(b)['failures'] - fails0
            intact = read(state_json) == before
            if filler:
                os.remove(filler)
            else:
                frozen.thaw()
                frozen = None
            t0 = gp.now()
            recovered = None
            while gp.now() - t0 < 20:
                w = writer(b)
                pids = b.main_pids()
                saved = json.loads(read(state_json) or b'{}').get('units', {})
                if w['last_error'] is None and all(
                        saved.get(n + '.service', {}).get('main_pid') == pids.get(n)
                        for n in names):
                    recovered = gp.now() - t0
                    break
                time.sleep(0.02)
            recover.append(recovered)
            rows.append((cycle, kind, len(lat), lost, gp.ms(gp.pct(lat, 0.95)), fails,
                         'yes' if intact else 'NO', gp.ms(recovered)))
            if lost or not intact or fails == 0 or recovered is None:
                failures.append('cycle %d (%s): lost %d, intact %s, failed saves %d, '
                                'recovered %s' % (cycle, kind, lost, intact, fails, recovered))
        print(gp.md_table(['cycle', 'fault', 'restarts', 'lost', 'restart p95 ms',
                           'failed saves', 'state.json intact', 'recovered after ms'], rows))
        for f in failures:
            print('FAIL: ' + f, file=sys.stderr)
        b.ok = not failures
        return 0 if b.ok else 1
    finally:
        if frozen:
            frozen.thaw()
        b.cleanup()
        subprocess.run(['umount', '-l', mnt])
        os.rmdir(mnt)


if __name__ == '__main__':
    sys.exit(main())
