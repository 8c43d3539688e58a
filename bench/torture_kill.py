#!/usr/bin/env python3
"""Random kill -9 of the daemon during churn: counts duplicates, lost and unsupervised.

Runs `gitproc daemon` on a repository of S steady `sleep` units, one unit that every
commit changes (so each round restarts it) and one crash-looping unit, then N times:
commits a change, runs `gitproc sync` in the background, waits a random 0-500 ms, kills
the daemon with SIGKILL and starts a new one on the same state directory. After each
restart it counts, from the `GITPROC_UNIT=` / `INVOCATION_ID=` marker every service
carries in its environment (/proc/PID/environ):

  duplicates    units with two live invocations at once (checked as soon as the new
                daemon answers, and again 300 ms later);
  lost          long-running units not running again within 15 s;
  unsupervised  once settled, live processes of a unit whose invocation is not the one of
                the main pid `status` reports (a process nobody will ever stop);
  adopted       steady units whose main pid survived the kill (re-adopted, not restarted).

Example (after `cargo build --release`; GITPROC_BIN picks another binary):
    python3 bench/torture_kill.py --kills 100
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


def invocations(unit):
    """{INVOCATION_ID: [pid]} of the live processes carrying GITPROC_UNIT=unit."""
    want = ('GITPROC_UNIT=%s' % unit).encode()
    out = {}
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            with open('/proc/%d/environ' % pid, 'rb') as fh:
                env = fh.read().split(b'\0')
        except OSError:
            continue
        if want not in env:
            continue
        st = gp.read_stat(pid)
        if st is None or st[1] in ('Z', 'X'):
            continue
        inv = next((v[len(b'INVOCATION_ID='):].decode() for v in env
                    if v.startswith(b'INVOCATION_ID=')), '')
        out.setdefault(inv, []).append(pid)
    return out


def reap_orphans(bench):
    """We are a subreaper: collect the zombies of services a new daemon stopped (never
    the daemon itself, whose Popen waits for it)."""
    keep = {bench.daemon.pid} if bench.daemon else set()
    for pid in gp.children(os.getpid()):
        st = gp.read_stat(pid)
        if pid not in keep and st and st[1] == 'Z':
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def environ_of(pid):
    try:
        with open('/proc/%d/environ' % pid, 'rb') as fh:
            env = fh.read().split(b'\0')
    except OSError:
        return None
    return next((v[len(b'INVOCATION_ID='):].decode() for v in env
                 if v.startswith(b'INVOCATION_ID=')), None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--kills', type=int, default=100, help='kill -9 rounds (default 100)')
    ap.add_argument('--steady', type=int, default=5, help='steady sleep units (default 5)')
    ap.add_argument('--max-delay', type=float, default=0.5,
                    help='kill at a random moment up to this many seconds after the commit')
    ap.add_argument('--seed', type=int, default=None)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    rng = random.Random(seed)
    tag = 'tk%d' % os.getpid()
    steady = ['%ss%02d' % (tag, i) for i in range(args.steady)]
    churn, crash = tag + 'churn', tag + 'crash'
    scratch = tempfile.mkdtemp(prefix='gitproc-torture-')
    bench = gp.Bench(scratch, remove=True)
    repo, state = os.path.join(scratch, 'repo'), os.path.join(scratch, 'state')
    churn_unit = lambda n: gp.sleep_unit(200000, 'Environment=GEN=%d\n' % n)  # noqa: E731
    units = {u + '.service': gp.sleep_unit(100000 + i) for i, u in enumerate(steady)}
    units[churn + '.service'] = churn_unit(0)
    units[crash + '.service'] = ('[Unit]\nStartLimitIntervalSec=0\n\n[Service]\n'
                                 "ExecStart=/bin/sh -c 'sleep 0.2; exit 1'\n"
                                 'Restart=always\nRestartSec=50ms\n')
    gp.make_repo(repo, units)
    long_running = steady + [churn]
    every = long_running + [crash]
    dup_rounds, dups, lost, unsupervised, adopted = 0, 0, 0, 0, 0
    try:
        bench.start_daemon(repo, state)
        bench.wait_running(long_running, timeout=60, arg=None)
        t0 = gp.now()
        for k in range(1, args.kills + 1):
            before = bench.main_pids()
            gp.write_units(repo, {churn + '.service': churn_unit(k)})
            gp.git(repo, 'commit', '-qam', 'churn %d' % k)
            sync = subprocess.Popen([bench.bin, 'sync', '--state-dir', state],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0, args.max_delay))
            bench.daemon.send_signal(signal.SIGKILL)
            bench.daemon.wait(10)
            sync.wait(30)
            bench.start_daemon(repo, state)
            deadline = gp.now() + 30
            while bench.status() is None:
                bench.check_daemon()
                if gp.now() > deadline:
                    raise RuntimeError('the new daemon does not answer; see %s/daemon.log'
                                       % scratch)
                time.sleep(0.005)
            round_dups = 0
            for pause in (0, 0.3):
                time.sleep(pause)
                round_dups += sum(1 for u in every if len(invocations(u)) > 1)
            dups += round_dups
            dup_rounds += 1 if round_dups else 0
            try:
                bench.wait_running(long_running, timeout=15)
            except RuntimeError:
                pids = bench.main_pids()
                lost += sum(1 for u in long_running if not (pids.get(u) and gp.alive(pids[u])))
            pids = bench.main_pids()
            for u in long_running:
                main = pids.get(u)
                inv = environ_of(main) if main else None
                unsupervised += sum(len(p) for i, p in invocations(u).items() if i != inv)
            adopted += sum(1 for u in steady if before.get(u) and before.get(u) == pids.get(u))
            reap_orphans(bench)
            print('kill %3d: duplicates %d lost %d unsupervised %d' % (k, dups, lost,
                                                                         unsupervised),
                  file=sys.stderr)
        took = gp.now() - t0
        print('seed %d, %d kills in %.0f s, %d steady + 1 churning + 1 crash-looping unit'
              % (seed, args.kills, took, args.steady))
        print('duplicates: %d (in %d rounds)' % (dups, dup_rounds))
        print('lost: %d' % lost)
        print('unsupervised: %d' % unsupervised)
        print('steady units re-adopted with the same pid: %d of %d'
              % (adopted, args.kills * args.steady))
        bench.ok = dups == 0 and lost == 0 and unsupervised == 0
    finally:
        bench.cleanup()
    return 0 if bench.ok else 1


if __name__ == '__main__':
    sys.exit(main())
