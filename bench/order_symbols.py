#!/usr/bin/env python3
"""Record which functions gitproc's binaries run, and write the link order from it.

The release binaries are large (gix, clap, serde, tracing: 12.9 MB of text in `gitprocd`)
and the functions a running daemon uses are spread over all of it, so the kernel's
fault-around maps a 64 KiB block for each of them and the daemon keeps most of its image
resident. Linking the functions that run next to each other (lld's
`--symbol-ordering-file`, passed by build.rs for release builds) packs them into a few
hundred pages. This script produces `packaging/symbol-order.txt`:

1. builds bench/fncov.c (a ptrace tool: an int3 on the first byte of every function,
   each recorded at its first hit);
2. runs `gitprocd daemon` under it with N units committed in a temporary repository and
   drives what the daemon does in service: start-up, `status` (text and JSON), kill -9 of
   children (restart), `stop`/`start`/`restart`, a commit that changes, adds and removes
   units, `sync`, the idle poll and state saves, SIGTERM;
3. runs the CLI (`gitproc`) under it for the same verbs;
4. writes the mangled names that ran, daemon first, in first-hit order, one a line.

Run as root after `cargo build --release`; then `cargo build --release` again links with
the new order. Names that a later build no longer has are ignored by the linker, so a
stale file costs only locality, never correctness.

    python3 bench/order_symbols.py [--units 100] [--idle 35]
    python3 bench/order_symbols.py --check   # how much of the list the built binaries have

Code changes rename some functions (a changed codegen unit renames its `.llvm.N` locals;
a trivial edit kept 3,072 of 3,106 names); regenerate when `--check` falls below ~90 %.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gpbench as gp  # noqa: E402
ROOT = os.path.dirname(HERE)
REL = os.path.join(ROOT, 'target', 'release')


def wait_for(what, cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    sys.exit('timed out waiting for %s' % what)


def text_symbols(exe):
    """{address: mangled name} of the functions in exe."""
    out = subprocess.run(['nm', '--defined-only', exe], capture_output=True, text=True,
                         check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split(' ', 2)
        if len(parts) == 3 and parts[1] in 'tTwW':
            syms.setdefault(int(parts[0], 16), parts[2])
    return syms


def sleeps_under(pid):
    """The `sleep` services below pid (the tracer, whose child is the daemon)."""
    return [p for p in gp.descendants(pid) if gp.is_sleep(p)]


UNIT = gp.sleep_unit()
CHANGED = gp.sleep_unit(100001)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--units', type=int, default=100)
    ap.add_argument('--idle', type=float, default=35.0,
                    help='seconds of idle service (the 30 s poll and state saves run)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'packaging', 'symbol-order.txt'))
    ap.add_argument('--check', action='store_true',
                    help='only report how many listed names target/release has')
    args = ap.parse_args()
    if args.check:
        return check(args.out)

    work = tempfile.mkdtemp(prefix='gitproc-order-')
    fncov = os.path.join(work, 'fncov')
    subprocess.run(['cc', '-O2', '-o', fncov, os.path.join(HERE, 'fncov.c')], check=True)
    engine, front = os.path.join(REL, 'gitprocd'), os.path.join(REL, 'gitproc')
    for exe in (engine, front):
        if not os.access(exe, os.X_OK):
            sys.exit('%s not found: run `cargo build --release` first' % exe)

    def covered(exe, tag, argv, **kw):
        """Runs argv under fncov and returns the Popen; addresses go to work/tag.N.out."""
        syms = text_symbols(exe)
        addrs = os.path.join(work, os.path.basename(exe) + '.addrs')
        if not os.path.exists(addrs):
            with open(addrs, 'w') as f:
                f.write(''.join('%x\n' % a for a in syms))
        covered.n += 1
        outp = os.path.join(work, '%s.%d.out' % (tag, covered.n))
        covered.outs.setdefault(exe, []).append(outp)
        return subprocess.Popen([fncov, addrs, outp, '--', exe] + argv, **kw)
    covered.n = 0
    covered.outs = {}

    repo, state = os.path.join(work, 'repo'), os.path.join(work, 'state')
    gp.make_repo(repo, {'s%04d.service' % i: UNIT for i in range(args.units)})

    log = open(os.path.join(work, 'daemon.log'), 'w')
    daemon = covered(engine, 'daemon', ['daemon', '--repo', repo, '--state-dir', state],
                     stdout=log, stderr=log)
    tracer_pid = daemon.pid
    try:
        wait_for('%d services running' % args.units,
                 lambda: len(sleeps_under(tracer_pid)) >= args.units, 60)

        def cli(*verb):
            p = covered(front, 'cli', list(verb) + ['--state-dir', state],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.wait()

        for _ in range(3):
            cli('status', '--json')
            cli('status')
        cli('status', 's0001')
        cli('logs', 's0001')
        victims = sleeps_under(tracer_pid)[:10]
        for v in victims:
            os.kill(v, signal.SIGKILL)
        wait_for('10 restarts', lambda: len(sleeps_under(tracer_pid)) >= args.units
                 and not set(victims) & set(sleeps_under(tracer_pid)))
        cli('stop', 's0001', 's0002')
        cli('start', 's0001', 's0002')
        cli('restart', 's0003')
        gp.write_units(repo, {'s0004.service': CHANGED, 'extra.service': UNIT})
        os.unlink(os.path.join(repo, 's0005.service'))
        gp.git(repo, 'add', '-A')
        gp.git(repo, 'commit', '-qm', 'change')
        cli('sync')
        wait_for('the commit applied', lambda: any(
            'extra' in l for l in open(os.path.join(work, 'daemon.log'))))
        cli('status', '--json')
        time.sleep(args.idle)  # the idle service itself is what is being recorded
        cli('status', '--json')
        victims = sleeps_under(tracer_pid)[:5]
        for v in victims:
            os.kill(v, signal.SIGKILL)
        wait_for('5 restarts', lambda: not set(victims) & set(sleeps_under(tracer_pid)))
        cli('status')
    finally:
        for p in gp.children(tracer_pid):
            os.kill(p, signal.SIGTERM)
        daemon.wait(30)
        for p in sleeps_under(os.getpid()):
            os.kill(p, signal.SIGKILL)

    names = []
    seen = set()
    for exe in (engine, front):
        syms = text_symbols(exe)
        for outp in covered.outs.get(exe, []):
            with open(outp) as f:
                for line in f:
                    name = syms.get(int(line, 16))
                    if name and name not in seen:
                        seen.add(name)
                        names.append(name)
    with open(args.out, 'w') as f:
        f.write(''.join(n + '\n' for n in names))
    print('%d functions written to %s (work files in %s)' % (len(names), args.out, work))


def check(order):
    with open(order) as f:
        listed = [l.strip() for l in f if l.strip()]
    have = set()
    for exe in ('gitprocd', 'gitproc'):
        have.update(text_symbols(os.path.join(REL, exe)).values())
    found = sum(1 for n in listed if n in have)
    print('%d of %d listed functions (%.1f %%) are in target/release/{gitprocd,gitproc}'
          % (found, len(listed), 100.0 * found / max(1, len(listed))))


if __name__ == '__main__':
    main()
