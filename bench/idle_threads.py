#!/usr/bin/env python3
"""Per-thread idle cost of a running process: CPU time (schedstat) and voluntary context
switches (wakeups) of each thread over a window, and the totals.

    python3 bench/idle_threads.py PID [SECONDS]        # default 30 s

With `--floor`, also compiles and runs bench/idle_floor.c (nanosleep 0.2 s + waitid, the
fallback sweep's work with nothing else) for the same window: what one such wakeup costs
on this machine, which bounds the daemon's idle CPU from below.
"""
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def snap(pid):
    out = {}
    for t in os.listdir('/proc/%d/task' % pid):
        try:
            comm = open('/proc/%d/task/%s/comm' % (pid, t)).read().strip()
            ns = int(open('/proc/%d/task/%s/schedstat' % (pid, t)).read().split()[0])
            with open('/proc/%d/task/%s/status' % (pid, t)) as fh:
                vol = next(int(l.split()[1]) for l in fh if l.startswith('voluntary_ctxt_switches'))
            out[t] = (comm, ns, vol)
        except (OSError, StopIteration, ValueError):
            pass  # the thread ended between listing and reading
    return out


def main():
    args = [a for a in sys.argv[1:] if a != '--floor']
    if not args:
        print(__doc__)
        return 2
    pid = int(args[0])
    win = float(args[1]) if len(args) > 1 else 30.0
    floor = None
    if '--floor' in sys.argv:
        exe = os.path.join(tempfile.mkdtemp(), 'idle_floor')
        subprocess.run(['cc', '-O2', '-o', exe, os.path.join(HERE, 'idle_floor.c')], check=True)
        floor = subprocess.Popen([exe, str(int(win / 0.2))])
    a = snap(pid)
    time.sleep(win)
    b = snap(pid)
    tot_ns = tot_w = 0
    print('| thread | CPU ms | wakeups |\n|---|---|---|')
    for t, (comm, ns, vol) in sorted(b.items(), key=lambda kv: -kv[1][1]):
        ns0, v0 = a.get(t, (comm, 0, 0))[1:]
        d, w = ns - ns0, vol - v0
        tot_ns += d
        tot_w += w
        if d > 10000 or w:
            print('| %s (%s) | %.3f | %d |' % (comm, t, d / 1e6, w))
    print('\ntotal: %.2f ms CPU per %.0f s, %.2f wakeups/s' % (tot_ns / 1e6, win, tot_w / win))
    if floor:
        with open('/proc/%d/schedstat' % floor.pid) as fh:
            ns = int(fh.read().split()[0])
        floor.wait()
        print('floor (bench/idle_floor.c, same window): %.2f ms CPU' % (ns / 1e6))
    return 0


if __name__ == '__main__':
    sys.exit(main())
