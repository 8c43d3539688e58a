#!/usr/bin/env python3
"""Health probes at scale: daemon CPU for probing and connections per unit.

Starts a local HTTP/1.1 keep-alive server (a separate asyncio process, so its CPU is not
the daemon's) on a few ports, then `gitproc daemon` on N `sleep` units, each with an
`[X-Health]` `HTTP=` probe of its own path on one of those ports every `--interval`. Once
every unit is healthy it measures, over `--seconds`:

- the daemon's CPU (utime+stime of all its threads, in % of one core), and the prober
  thread's share (`gitproc-prober`);
- probes answered (the server counts requests) and connections per unit: the server counts
  the connections each unit's path arrived on, over the whole run (keep-alive: 1 each);
- the daemon's own probe latency (`perf export`: per-unit histograms, p50/p99 over units).

Example (the issue's figure: 1,000 units, 1 s interval, one minute):
    GITPROC_BIN=target/debug/gitproc python3 bench/health.py --units 1000 --seconds 60
Quick form:
    GITPROC_BIN=target/debug/gitproc python3 bench/health.py --units 200 --seconds 20
"""
import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench as gp  # noqa: E402


# ----------------------------------------------------------------------------- the server

def serve(ports, stats_path):
    """Answers `GET /uN` with 200 and a short body (503 for the paths listed in
    stats_path + '.fail'), keeps connections open, and writes
    {"requests": n, "conns": {path: connections}} to stats_path every 0.5 s."""
    requests = [0]
    conns = {}
    failing = set()

    async def handle(reader, writer):
        first = True
        try:
            while True:
                head = await reader.readuntil(b'\r\n\r\n')
                line = head.split(b'\r\n', 1)[0].split()
                path = line[1].decode() if len(line) > 1 else '?'
                if first:
                    conns[path] = conns.get(path, 0) + 1
                    first = False
                requests[0] += 1
                body = b'ok\n'
                status = b'503 Unavailable' if path in failing else b'200 OK'
                writer.write(b'HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s'
                             % (status, len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def dump():
        while True:
            await asyncio.sleep(0.5)
            tmp = stats_path + '.tmp'
            with open(tmp, 'w') as fh:
                json.dump({'requests': requests[0], 'conns': conns}, fh)
            os.replace(tmp, stats_path)
            try:
                with open(stats_path + '.fail') as fh:
                    failing.clear()
                    failing.update(fh.read().split())
            except OSError:
                failing.clear()

    async def main():
        servers = [await asyncio.start_server(handle, '127.0.0.1', p, backlog=2048)
                   for p in ports]
        await asyncio.gather(dump(), *(s.serve_forever() for s in servers))

    asyncio.run(main())


def read_stats(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def thread_ticks(pid, comm, which=(11, 12)):
    """utime+stime ticks (or the fields `which`) of the threads of pid named comm."""
    total = 0
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return 0
    for tid in tids:
        try:
            with open('/proc/%d/task/%s/stat' % (pid, tid)) as fh:
                text = fh.read()
        except OSError:
            continue
        name = text[text.index('(') + 1:text.rindex(')')]
        if name == comm:
            fields = text[text.rindex(')') + 2:].split()
            total += sum(int(fields[i]) for i in which)
    return total


def free_ports(n):
    import socket
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--units', type=int, default=1000)
    ap.add_argument('--seconds', type=float, default=60.0, help='measured window')
    ap.add_argument('--interval', default='1s', help='IntervalSec= of every probe')
    ap.add_argument('--ports', type=int, default=4, help='server ports (units spread over)')
    ap.add_argument('--fail', type=int, default=20,
                    help='after the window, make this many units answer 503 and time the '
                         'probe-to-restart decision (perf probe_to_restart)')
    ap.add_argument('--no-health', action='store_true',
                    help='the same units without [X-Health]: the baseline CPU of the daemon')
    ap.add_argument('--scratch', help='work directory (default: a new temporary one)')
    ap.add_argument('--serve', nargs='*', type=int, help=argparse.SUPPRESS)
    ap.add_argument('--stats', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.stats)
    gp.gitproc_bin()
    scratch = args.scratch or tempfile.mkdtemp(prefix='gitproc-health-')
    b = gp.Bench(scratch, remove=not args.scratch)
    server = None
    try:
        ports = free_ports(args.ports)
        stats_path = os.path.join(scratch, 'server.json')
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), '--serve']
                                  + [str(p) for p in ports] + ['--stats', stats_path],
                                  start_new_session=True)
        deadline = time.time() + 20
        while read_stats(stats_path) is None:
            if time.time() > deadline or server.poll() is not None:
                raise RuntimeError('the probe server did not start')
            time.sleep(0.05)

        names = ['h%04d' % i for i in range(args.units)]
        units = {}
        for i, name in enumerate(names):
            health = ('\n[X-Health]\nHTTP=http://127.0.0.1:%d/u%d\nIntervalSec=%s\n'
                      % (ports[i % len(ports)], i, args.interval))
            if args.no_health:
                health = ''
            units[name + '.service'] = gp.sleep_unit(100000 + i) + health
        repo = os.path.join(scratch, 'repo')
        gp.make_repo(repo, units)
        t0 = time.time()
        b.start_daemon(repo, os.path.join(scratch, 'state'))
        b.wait_running(names, timeout=600)
        print('%d units running after %.1f s' % (args.units, time.time() - t0),
              file=sys.stderr)
        deadline = time.time() + 300
        while True:
            st = b.status() or {}
            healthy = sum(1 for u in st.get('units', []) if u.get('health') == 'healthy')
            if healthy == args.units or args.no_health:
                break
            if time.time() > deadline:
                raise RuntimeError('only %d of %d units healthy' % (healthy, args.units))
            time.sleep(0.5)
        print('all healthy after %.1f s' % (time.time() - t0), file=sys.stderr)

        pid = b.daemon.pid
        time.sleep(1.0)             # the server's stats file lags by up to 0.5 s
        s0 = read_stats(stats_path)
        c0 = gp.cpu_sample(pid)['ticks']
        p0 = thread_ticks(pid, 'gitproc-prober')
        k0 = thread_ticks(pid, 'gitproc-prober', (12,))
        w0 = time.time()
        time.sleep(args.seconds)
        wall = time.time() - w0
        c1 = gp.cpu_sample(pid)['ticks']
        p1 = thread_ticks(pid, 'gitproc-prober')
        k1 = thread_ticks(pid, 'gitproc-prober', (12,))
        time.sleep(0.6)
        s1 = read_stats(stats_path)
        b.check_daemon()

        cpu = (c1 - c0) / gp.CLK_TCK / wall * 100
        prober = (p1 - p0) / gp.CLK_TCK / wall * 100
        conns = [s1['conns'].get('/u%d' % i, 0) for i in range(args.units)]
        if args.no_health:
            conns = [0]
        restart = {}
        if args.fail and not args.no_health:
            with open(stats_path + '.fail', 'w') as fh:
                fh.write('\n'.join('/u%d' % i for i in range(args.fail)))
            deadline = time.time() + 120
            while time.time() < deadline:
                st = b.status() or {}
                done = sum(1 for u in st.get('units', [])
                           if u['name'] < 'h%04d' % args.fail and u.get('n_restarts', 0) >= 1)
                if done >= args.fail:
                    break
                time.sleep(0.5)
            os.unlink(stats_path + '.fail')
        rc, out, _ = b.cli('perf', 'export', '--format', 'json')
        perf = json.loads(out) if rc == 0 else {}
        probes = perf.get('probes', {})
        p50 = sorted(p['p50_us'] for p in probes.values())
        p99 = sorted(p['p99_us'] for p in probes.values())
        failures = sum(p['failures'] for p in probes.values())
        ptr = perf.get('operations', {}).get('probe_to_restart', {})
        result = {
            'units': args.units,
            'health_checks': not args.no_health,
            'interval': args.interval,
            'window_s': round(wall, 1),
            'daemon_cpu_pct_of_one_core': round(cpu, 2),
            'prober_thread_cpu_pct': round(prober, 2),
            'prober_thread_kernel_pct': round((k1 - k0) / gp.CLK_TCK / wall * 100, 2),
            'probes_per_s': round((s1['requests'] - s0['requests']) / wall, 1),
            'connections_per_unit_min': min(conns),
            'connections_per_unit_max': max(conns),
            'new_connections_in_window': sum(s1['conns'].values()) - sum(s0['conns'].values()),
            'probe_latency_p50_us_median_unit': p50[len(p50) // 2] if p50 else None,
            'probe_latency_p99_us_worst_unit': p99[-1] if p99 else None,
            'failed_probes': failures,
            'probe_to_restart_count': ptr.get('count'),
            'probe_to_restart_p50_us': ptr.get('p50_us'),
            'probe_to_restart_p99_us': ptr.get('p99_us'),
            'probe_to_restart_max_us': ptr.get('max_us'),
            'binary': b.bin,
        }
        print(json.dumps(result, indent=2))
        b.ok = True
    finally:
        if server is not None and server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        b.cleanup()


if __name__ == '__main__':
    main()
