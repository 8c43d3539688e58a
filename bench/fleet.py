#!/usr/bin/env python3
"""Fleet simulation: N gitproc daemons on this machine follow one repository.

Each daemon has its own state directory and `--hostname host-NNN`; the repository is
served on 127.0.0.1, so the load the fleet puts on a git server is measured, not guessed:
by `git http-backend` behind a small counting HTTP server (`--server http`, the default:
each request is a CGI process and an upload-pack, about six processes per changed check),
or by `git daemon` behind a counting TCP proxy (`--server git`: git://, one upload-pack per
check, closer to what a real git server costs). Phases, in order:

1. start: every host applies the first commit;
2. idle: ref advertisements (GET info/refs, or a git:// connection) and pack transfers
   (POST git-upload-pack with `command=fetch`, any v0 upload-pack POST, or `command=fetch`
   on a git:// connection) per host per poll interval, nothing changing;
3. memory: PSS (/proc/PID/smaps_rollup) of the N daemons, idle;
4. polling: a commit without rollout policy, no nudge: time until every host applied it;
   with `--webhooks` each daemon also has an `[http]` listener, and a second commit is
   announced by a signed push event POSTed to every host's `/hooks/git` at once;
5. waves: a commit with `gitproc-rollout.toml` (canary = host-000, then 10 % by hash, then
   the rest, DELAYS apart); every host is told at once (`sync` on its control socket, as a
   webhook would), so each applies when its wave is due; per-wave apply times;
6. halt: the next commit starts the same waves; once the 10 % wave has it, a commit with
   `halt = true` stops the rest; none of the rest may apply it;
7. revert: the units go back to what the rest still runs (and the policy's delays grow to
   a minute): every host must be on it within a second or two of being told.

Prints Markdown tables; `--json FILE` writes the figures (tests/it/bench_fleet.rs reads
them). Standard library only. Every wait has a timeout; cleanup SIGTERMs each daemon by
pid (which stops its services) and SIGKILLs whatever is left in our process tree.

    python3 bench/fleet.py --hosts 100 --poll 5 --delays 5,30
    python3 bench/fleet.py --hosts 100 --poll 5 --webhooks --server git
"""
import argparse
import datetime
import gzip
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpbench  # noqa: E402  (shared helpers: /proc, git, tables)

HTTP_BACKEND = '/usr/lib/git-core/git-http-backend'
POLICY = 'gitproc-rollout.toml'


# ----------------------------------------------------------------------------- git server

class Counts:
    """Requests served, by kind; `take()` returns and resets them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}

    def add(self, kind):
        with self.lock:
            self.c[kind] = self.c.get(kind, 0) + 1

    def take(self):
        with self.lock:
            out, self.c = self.c, {}
        return out


def read_body(handler):
    """The request body: Content-Length or chunked (git sends large POSTs chunked)."""
    te = handler.headers.get('Transfer-Encoding', '')
    if 'chunked' in te.lower():
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b';')[0].strip() or b'0', 16)
            if size == 0:
                while handler.rfile.readline() not in (b'\r\n', b'\n', b''):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get('Content-Length') or 0)
    return handler.rfile.read(n) if n else b''


def classify(method, path, query, body, encoding):
    if method == 'GET' and path.endswith('/info/refs'):
        return 'ref_advertisement'
    if method == 'POST' and path.endswith('/git-upload-pack'):
        data = body
        if 'gzip' in (encoding or ''):
            try:
                data = gzip.decompress(body)
            except OSError:
                data = b''
        if b'command=ls-refs' in data:
            return 'ls_refs'
        return 'pack_transfer'      # v2 command=fetch, or a v0 want/have exchange
    return 'other'


def make_handler(root, counts):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = 'HTTP/1.0'

        def log_message(self, *args):
            pass

        def do_GET(self):
            self.cgi('GET')

        def do_POST(self):
            self.cgi('POST')

        def cgi(self, method):
            path, _, query = self.path.partition('?')
            body = read_body(self) if method == 'POST' else b''
            counts.add(classify(method, path, query, body,
                                self.headers.get('Content-Encoding')))
            env = {
                'PATH': os.environ.get('PATH', '/usr/bin:/bin'),
                'GIT_PROJECT_ROOT': root,
                'GIT_HTTP_EXPORT_ALL': '1',
                'REQUEST_METHOD': method,
                'PATH_INFO': path,
                'QUERY_STRING': query,
                'CONTENT_TYPE': self.headers.get('Content-Type', ''),
                'CONTENT_LENGTH': str(len(body)),
                'REMOTE_ADDR': '127.0.0.1',
            }
            if self.headers.get('Git-Protocol'):
                env['GIT_PROTOCOL'] = self.headers['Git-Protocol']
            if self.headers.get('Content-Encoding'):
                env['HTTP_CONTENT_ENCODING'] = self.headers['Content-Encoding']
            r = subprocess.run([HTTP_BACKEND], input=body, env=env, capture_output=True,
                               timeout=60)
            head, _, payload = r.stdout.partition(b'\r\n\r\n')
            if not _:
                head, _, payload = r.stdout.partition(b'\n\n')
            status, headers = 200, []
            for line in head.decode('latin-1').splitlines():
                k, _, v = line.partition(':')
                if k.lower() == 'status':
                    status = int(v.split()[0])
                elif k:
                    headers.append((k, v.strip()))
            try:
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                counts.add('client_gone')     # the client gave up (its own timeout)

    return Handler


class GitServer:
    def __init__(self, root):
        self.counts = Counts()
        server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                                 make_handler(root, self.counts))
        server.daemon_threads = True
        self.server = server
        self.port = server.server_address[1]
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class GitDaemonServer:
    """`git daemon` (git://, protocol v2: a check is one connection, one upload-pack) behind
    a TCP proxy that counts connections as ref advertisements and the `command=ls-refs` and
    `command=fetch` requests clients send on them."""

    PATTERNS = ((b'command=ls-refs', 'ls_refs'), (b'command=fetch', 'pack_transfer'))

    def __init__(self, root):
        self.counts = Counts()
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            self.backend = probe.getsockname()[1]
        # --max-connections=0: the default of 32 would refuse most of a 100-host fleet.
        # git-daemon itself, not `git daemon`: a SIGKILL of the `git` wrapper would leave
        # its git-daemon child running.
        exec_path = subprocess.run(['git', '--exec-path'], capture_output=True, text=True,
                                   check=True).stdout.strip()
        self.proc = subprocess.Popen(
            [os.path.join(exec_path, 'git-daemon'), '--reuseaddr', '--export-all', '--max-connections=0',
             '--base-path=' + root, '--listen=127.0.0.1', '--port=%d' % self.backend, root],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.backend), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError('git daemon did not start listening')
                time.sleep(0.02)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(512)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.relay, args=(client,), daemon=True).start()

    @staticmethod
    def copy(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def relay(self, client):
        try:
            server = socket.create_connection(('127.0.0.1', self.backend))
        except OSError:
            self.counts.add('refused')
            client.close()
            return
        self.counts.add('ref_advertisement')
        back = threading.Thread(target=self.copy, args=(server, client), daemon=True)
        back.start()
        tail = b''
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                scan = tail + data
                for pattern, kind in self.PATTERNS:
                    # Occurrences wholly inside `tail` were counted with the last chunk.
                    for _ in range(scan.count(pattern) - tail.count(pattern)):
                        self.counts.add(kind)
                server.sendall(data)
                tail = scan[-32:]
            server.shutdown(socket.SHUT_WR)
        except OSError:
            self.counts.add('client_gone')
        back.join(60)
        client.close()
        server.close()

    def stop(self):
        self.listener.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----------------------------------------------------------------------------- daemons

def fnv_bucket(salt, host):
    """The daemon's wave bucket (src/rollout.rs): FNV-1a 64 of `salt \\0 host` mod 10000."""
    h = 0xcbf29ce484222325
    for b in (salt + '\0' + host).encode():
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h % 10000


def pick_salt(hosts):
    """A salt that puts at least one host other than the canary in the 10 % wave and one
    in the rest (small fleets would otherwise often leave the 10 % wave empty)."""
    for i in range(1000):
        salt = '' if i == 0 else str(i)
        ten = [h for h in hosts[1:] if fnv_bucket(salt, h) < 1000]
        if ten and len(ten) < len(hosts) - 1:
            return salt
    return ''


def wave_of(salt, host):
    if host == 'host-000':
        return 'canary'
    return 'ten' if fnv_bucket(salt, host) < 1000 else 'rest'


def ctl(sock, verb, timeout=30, **fields):
    """One request on a daemon's control socket; returns the reply's data (or raises)."""
    req = dict(v=1, verb=verb, **fields)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(sock)
        s.sendall(json.dumps(req).encode() + b'\n')
        buf = b''
        while not buf.endswith(b'\n'):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf)
    return reply.get('data') or {}


class Fleet:
    def __init__(self, args, scratch):
        self.args = args
        self.scratch = scratch
        self.bin = args.bin or gpbench.gitproc_bin()
        self.hosts = ['host-%03d' % i for i in range(args.hosts)]
        self.procs = {}
        self.offsets = {}
        self.applied = {}
        self.pool = ThreadPoolExecutor(max_workers=16)
        libc = __import__('ctypes').CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)      # PR_SET_CHILD_SUBREAPER: orphans come back to us
        self.poll_toml = ('[poll]\nmin_interval_s = %s\nmax_interval_s = %s\njitter = %s\n'
                          % (args.poll, args.poll, args.jitter))
        self.secret = os.path.join(scratch, 'webhook.secret')
        with open(self.secret, 'w') as fh:
            fh.write('fleet-%d\n' % os.getpid())
        self.ports = {}

    def config(self, host):
        """The host's gitproc.toml: the shared [poll], and with --webhooks an [http]
        listener of its own on a free loopback port."""
        path = os.path.join(self.state(host), 'gitproc.toml')
        text = self.poll_toml
        if self.args.webhooks:
            probe = socket.socket()
            probe.bind(('127.0.0.1', 0))
            self.ports[host] = probe.getsockname()[1]
            probe.close()
            text += ('[http]\nlisten = "127.0.0.1:%d"\nwebhook_secret_file = "%s"\n'
                     'webhook_min_interval_s = 0.5\n' % (self.ports[host], self.secret))
        with open(path, 'w') as fh:
            fh.write(text)
        return path

    def state(self, host):
        return os.path.join(self.scratch, 'hosts', host)

    def sock(self, host):
        return os.path.join(self.state(host), 'gitproc.sock')

    def start(self, url):
        for host in self.hosts:
            st = self.state(host)
            os.makedirs(st, exist_ok=True)
            log = open(os.path.join(st, 'daemon.log'), 'ab')
            # info: the `applied commit` lines the phases are timed by (nothing per poll).
            env = dict(os.environ, RUST_LOG='info')
            env.pop('NOTIFY_SOCKET', None)
            self.procs[host] = subprocess.Popen(
                [self.bin, 'daemon', '--config', self.config(host), '--repo', url,
                 '--state-dir', st, '--hostname', host],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=env)
            log.close()

    def commits(self):
        """{host: (applied commit, when it answered)}; the commit is None when its socket
        does not answer yet. The time is taken per answer, so a slow sweep of N sockets
        does not blur when each host applied."""
        def one(host):
            try:
                c = ctl(self.sock(host), 'status', timeout=5)['daemon']['commit']
            except (OSError, ValueError, KeyError, TypeError):
                c = None
            return host, (c, time.time())
        return dict(self.pool.map(one, self.hosts))

    def statuses(self):
        def one(host):
            try:
                return host, ctl(self.sock(host), 'status', timeout=5)['daemon']
            except (OSError, ValueError, KeyError, TypeError):
                return host, {}
        return dict(self.pool.map(one, self.hosts))

    def check_alive(self):
        dead = [h for h, p in self.procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError('daemon(s) exited: %s (see %s/daemon.log)'
                               % (', '.join(dead[:5]), self.state(dead[0])))

    def applied_lines(self, host):
        """New `applied commit X` lines of the host's log: [(short commit, unix time)].
        The daemon's own timestamp is exact, and reading a log costs the daemons nothing
        (asking 100 daemons for their status every few ms would load what is measured)."""
        path = os.path.join(self.state(host), 'daemon.log')
        offset = self.offsets.get(host, 0)
        try:
            with open(path, 'rb') as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return []
        end = data.rfind(b'\n') + 1
        self.offsets[host] = offset + end
        out = []
        for line in data[:end].decode('utf-8', 'replace').splitlines():
            if ' applied commit ' not in line:
                continue
            stamp = line.split()[0]
            short = line.split(' applied commit ', 1)[1].split(':', 1)[0]
            try:
                at = datetime.datetime.strptime(stamp, '%Y-%m-%dT%H:%M:%S.%fZ').replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                continue
            out.append((short, at))
        return out

    def wait_applied(self, commit, since, timeout, hosts=None):
        """{host: seconds after `since` when it applied `commit`}, from the daemons' logs."""
        hosts = hosts or self.hosts
        for host in hosts:
            for short, at in self.applied_lines(host):
                self.applied.setdefault(host, {}).setdefault(short, at)
        seen = {}
        deadline = time.time() + timeout
        while True:
            for host in hosts:
                for short, at in self.applied_lines(host):
                    self.applied.setdefault(host, {}).setdefault(short, at)
                at = self.applied.get(host, {}).get(commit[:10])
                if at is not None:
                    seen[host] = at - since
            if len(seen) == len(hosts):
                return seen
            if time.time() > deadline:
                missing = [h for h in hosts if h not in seen]
                raise RuntimeError('%d host(s) did not apply %s within %.0f s: %s'
                                   % (len(missing), commit[:10], timeout, missing[:5]))
            self.check_alive()
            time.sleep(0.05)

    def nudge(self, first=None):
        """Tell every host to check now, all at once (what a webhook fan-out does), without
        waiting: returns {host: seconds until its check answered}, filled in as they do.
        `first`: told alone before the others, and waited for (the canary: this one
        server's queue must not make the canary hear of a commit after the 10 % do)."""
        t0 = time.time()
        done = {}

        def one(host):
            try:
                ctl(self.sock(host), 'sync', timeout=120)
                done[host] = time.time() - t0
            except (OSError, ValueError):
                pass
        if first:
            one(first)
        for host in self.hosts:
            if host != first:
                threading.Thread(target=one, args=(host,), daemon=True).start()
        return done

    def webhook(self):
        """POST a signed push event to every host's /hooks/git at once (what a git server's
        webhook fan-out does); returns {host: seconds until its listener answered 2xx}."""
        import hashlib
        import hmac
        import http.client
        with open(self.secret, 'rb') as fh:
            key = fh.read().strip()
        body = json.dumps({'ref': 'refs/heads/main'}).encode()
        sig = 'sha256=' + hmac.new(key, body, hashlib.sha256).hexdigest()
        t0 = time.time()
        done = {}

        def one(host):
            try:
                c = http.client.HTTPConnection('127.0.0.1', self.ports[host], timeout=30)
                c.request('POST', '/hooks/git', body, {'X-Gitproc-Signature': sig,
                                                       'Content-Type': 'application/json'})
                r = c.getresponse()
                r.read()
                if 200 <= r.status < 300:
                    done[host] = time.time() - t0
                c.close()
            except OSError:
                pass
        threads = [threading.Thread(target=one, args=(h,), daemon=True) for h in self.hosts]
        for t in threads:
            t.start()
        return done, threads

    def cpu_s(self):
        """CPU seconds used so far by the N daemons (all threads)."""
        ticks = 0
        for p in self.procs.values():
            st = gpbench.cpu_sample(p.pid)
            ticks += st['ticks'] if st else 0
        return ticks / float(gpbench.CLK_TCK)

    def pss_mib(self):
        total = 0
        for p in self.procs.values():
            total += gpbench.pss_kib(p.pid) or 0
        return total / 1024.0

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + 30
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.pool.shutdown(wait=True)
        me = os.getpid()
        for _ in range(20):
            left = gpbench.descendants(me)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                pass


# ----------------------------------------------------------------------------- the run

def unit(version):
    return gpbench.sleep_unit(200000 + version)


def policy(salt, ten_delay, rest_delay, halt=False):
    return ('salt = "%s"\nhalt = %s\n'
            '[[wave]]\nname = "canary"\nhosts = ["host-000"]\ndelay_s = 0\n'
            '[[wave]]\nname = "ten"\npercent = 10\ndelay_s = %s\n'
            '[[wave]]\nname = "rest"\ndelay_s = %s\n'
            % (salt, 'true' if halt else 'false', ten_delay, rest_delay))


def align():
    """Committer times are whole seconds: commit just after a second begins, so the
    truncation does not eat most of a wave's delay (a 1 s delay could be 0 s). Returns the
    time the commit is made from, which the phases measure from."""
    frac = time.time() % 1.0
    if frac > 0.05:
        time.sleep(1.0 - frac + 0.01)
    return time.time()


def commit(work, bare, files, remove=(), message='fleet'):
    for name in remove:
        path = os.path.join(work, name)
        if os.path.exists(path):
            os.remove(path)
    gpbench.write_units(work, files)
    gpbench.git(work, 'add', '-A')
    gpbench.git(work, 'commit', '-q', '--allow-empty', '-m', message)
    gpbench.git(work, 'push', '-q', bare, 'HEAD:main')
    return gpbench.git(work, 'rev-parse', 'HEAD').strip()


def spread(times):
    v = sorted(times)
    return (v[0], gpbench.pct(v, 0.5), v[-1]) if v else (None, None, None)


def run(args):
    scratch = args.workdir or tempfile.mkdtemp(prefix='gitproc-fleet-')
    os.makedirs(scratch, exist_ok=True)
    root = os.path.join(scratch, 'srv')
    bare = os.path.join(root, 'fleet.git')
    work = os.path.join(scratch, 'work')
    os.makedirs(root, exist_ok=True)
    gpbench.git(scratch, 'init', '-q', '--bare', '-b', 'main', bare)
    gpbench.make_repo(work, {'app.service': unit(0)})
    gpbench.git(work, 'push', '-q', bare, 'HEAD:main')
    first = gpbench.git(work, 'rev-parse', 'HEAD').strip()

    if args.server == 'git':
        server = GitDaemonServer(root)
        url = 'git://127.0.0.1:%d/fleet.git' % server.port
    else:
        server = GitServer(root)
        url = 'http://127.0.0.1:%d/fleet.git' % server.port
    fleet = Fleet(args, scratch)
    delays = [float(x) for x in args.delays.split(',')]
    salt = pick_salt(fleet.hosts)
    waves = {h: wave_of(salt, h) for h in fleet.hosts}
    res = {'hosts': args.hosts, 'server': args.server, 'poll_s': args.poll, 'jitter': args.jitter,
           'delays_s': delays, 'salt': salt, 'bin': fleet.bin,
           'loadavg_at_start': os.getloadavg(),
           'wave_sizes': {w: sum(1 for v in waves.values() if v == w)
                          for w in ('canary', 'ten', 'rest')}}
    ok = False
    try:
        t0 = time.time()
        fleet.start(url)
        started = fleet.wait_applied(first, t0, args.timeout)
        res['start_all_applied_s'] = max(started.values())
        # The first checks of N daemons started together are not "idle": let them settle.
        time.sleep(min(args.poll, 2.0))
        server.counts.take()

        # Idle: nothing changes for `idle` seconds.
        t_idle = time.time()
        cpu0 = fleet.cpu_s()
        time.sleep(args.idle)
        idle = server.counts.take()
        window = time.time() - t_idle
        res['idle_daemon_cpu_pct'] = 100.0 * (fleet.cpu_s() - cpu0) / window
        intervals = window / args.poll
        res['idle'] = {
            'window_s': window,
            'requests': idle,
            'ref_adv_per_host_per_interval':
                idle.get('ref_advertisement', 0) / args.hosts / intervals,
            'ls_refs_per_host_per_interval': idle.get('ls_refs', 0) / args.hosts / intervals,
            'pack_transfers': idle.get('pack_transfer', 0),
        }
        res['pss_total_mib'] = fleet.pss_mib()
        res['pss_per_daemon_mib'] = res['pss_total_mib'] / args.hosts

        # Polling: a commit without a policy, nobody told.
        t = align()
        c1 = commit(work, bare, {'app.service': unit(1)}, message='polling')
        polled = fleet.wait_applied(c1, t, args.poll * 3 + args.timeout)
        res['polling'] = dict(zip(('min_s', 'p50_s', 'max_s'), spread(polled.values())))
        server.counts.take()

        if args.webhooks:
            # Webhooks: a commit without a policy, a signed push event to every listener.
            t = align()
            cw = commit(work, bare, {'app.service': unit(9)}, message='webhook')
            t_push = time.time()
            answered, threads = fleet.webhook()
            hooked = fleet.wait_applied(cw, t_push, args.timeout)
            for th in threads:
                th.join(30)
            res['webhook'] = dict(zip(('min_s', 'p50_s', 'max_s'), spread(hooked.values())))
            res['webhook']['answered'] = len(answered)
            res['webhook']['last_answer_s'] = max(answered.values()) if answered else None
            server.counts.take()

        # Waves: canary, 10 %, the rest; every host told at once.
        t = align()
        c2 = commit(work, bare, {'app.service': unit(2),
                                 POLICY: policy(salt, delays[0], delays[1])},
                    message='waves')
        checked = fleet.nudge(first='host-000')
        applied = fleet.wait_applied(c2, t, delays[1] + args.timeout)
        res['nudge_all_checked_s'] = max(checked.values()) if checked else None
        delay_of = {'canary': 0.0, 'ten': delays[0], 'rest': delays[1]}
        # The one invariant that holds whatever the load: no host applies before its wave's
        # delay (0.1 s of slack for the sub-second part of the committer time).
        res['applied_early'] = sorted(h for h, s in applied.items()
                                      if s < delay_of[waves[h]] - 0.1)
        by_wave = {}
        for host, s in applied.items():
            by_wave.setdefault(waves[host], []).append(s)
        res['waves'] = {w: dict(zip(('min_s', 'p50_s', 'max_s'), spread(v)))
                        for w, v in by_wave.items()}
        order = [w for w in ('canary', 'ten', 'rest') if w in by_wave]
        res['waves_in_order'] = all(
            max(by_wave[a]) < min(by_wave[b]) for a, b in zip(order, order[1:]))
        res['waves_requests'] = server.counts.take()

        # Halt mid-rollout: the same waves start, then `halt = true` once 10 % have it.
        t = align()
        c3 = commit(work, bare, {'app.service': unit(3),
                                 POLICY: policy(salt, delays[0], delays[1])},
                    message='a change to halt')
        fleet.nudge(first='host-000')
        early = [h for h in fleet.hosts if waves[h] in ('canary', 'ten')]
        fleet.wait_applied(c3, t, args.timeout, hosts=['host-000'])
        t_halt = time.time()
        c4 = commit(work, bare, {POLICY: policy(salt, delays[0], delays[1], halt=True)},
                    message='halt')
        fleet.nudge()
        res['halt_pushed_after_s'] = t_halt - t
        # Past the rest's deadline for c3, with margin.
        wait_until = t + delays[1] + 2.0
        while time.time() < wait_until:
            fleet.check_alive()
            time.sleep(0.1)
        st = fleet.statuses()
        rest = [h for h in fleet.hosts if waves[h] == 'rest']
        took = [h for h in rest if st[h].get('commit') in (c3, c4)]
        held = [h for h in rest if (st[h].get('pending') or {}).get('held_by') == 'halt']
        ten = [h for h in fleet.hosts if waves[h] == 'ten']
        res['halt'] = {'rest_hosts': len(rest), 'rest_applied': len(took),
                       'rest_held_by_halt': len(held),
                       'ten_applied_before_the_halt': sum(
                           1 for h in ten if st[h].get('commit') in (c3, c4)),
                       'early_on_halt_commit': sum(1 for h in early
                                                   if st[h].get('commit') == c4)}
        res['halt_ok'] = not took and len(held) == len(rest)

        # Revert: units back to what the rest runs, delays of a minute: applies at once.
        t = align()
        c5 = commit(work, bare, {'app.service': unit(2),
                                 POLICY: policy(salt, 60, 60)}, message='revert')
        fleet.nudge()
        reverted = fleet.wait_applied(c5, t, args.timeout)
        res['revert'] = dict(zip(('min_s', 'p50_s', 'max_s'), spread(reverted.values())))
        res['revert_ok'] = max(reverted.values()) < 30
        res['requests_total_after_idle'] = server.counts.take()
        ok = True
    finally:
        fleet.stop()
        server.stop()
        if ok and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        elif not ok:
            print('work files kept in %s (hosts/*/daemon.log)' % scratch, file=sys.stderr)
    return res


def report(res):
    f = lambda v: '-' if v is None else '%.2f' % v  # noqa: E731
    print('## gitproc fleet: %d hosts, %s server, poll %s s (jitter %s), wave delays %s s, '
          'load average at start %.1f' % (res['hosts'], res.get('server', 'http'),
                                          res['poll_s'], res['jitter'], res['delays_s'],
                                          res['loadavg_at_start'][0]))
    print()
    idle = res['idle']
    rows = [
        ('every host applied the first commit (start)', '%.2f s' % res['start_all_applied_s']),
        ('polling: commit until every host applied (min / p50 / max)',
         '%s / %s / %s s' % tuple(f(res['polling'][k]) for k in ('min_s', 'p50_s', 'max_s'))),
        ('idle: ref advertisements (GET info/refs or git:// connections) per host per poll '
         'interval',
         '%.2f' % idle['ref_adv_per_host_per_interval']),
        ('idle: ls-refs requests per host per poll interval',
         '%.2f' % idle['ls_refs_per_host_per_interval']),
        ('idle: pack transfers (window %.0f s)' % idle['window_s'], idle['pack_transfers']),
        ('idle: CPU of the %d daemons together' % res['hosts'],
         '%.1f %% of one core' % res['idle_daemon_cpu_pct']),
        ('PSS of the %d daemons, idle' % res['hosts'],
         '%.1f MiB (%.2f MiB each)' % (res['pss_total_mib'], res['pss_per_daemon_mib'])),
    ]
    if 'webhook' in res:
        v = res['webhook']
        rows.append(('webhook to every listener: push until every host applied '
                     '(min / p50 / max)',
                     '%s / %s / %s s' % (f(v['min_s']), f(v['p50_s']), f(v['max_s']))))
        rows.append(('webhook: listeners that answered 2xx / last answer',
                     '%d / %s s' % (v['answered'], f(v['last_answer_s']))))
    for w in ('canary', 'ten', 'rest'):
        if w in res['waves']:
            v = res['waves'][w]
            rows.append(('wave %s (%d hosts): applied after commit (min / p50 / max)'
                         % (w, res['wave_sizes'][w]),
                         '%s / %s / %s s' % (f(v['min_s']), f(v['p50_s']), f(v['max_s']))))
    rows.append(('waves in order (canary < 10 % < rest)', res['waves_in_order']))
    rows.append(('hosts that applied before their wave\'s delay', len(res['applied_early'])))
    if res.get('nudge_all_checked_s') is not None:
        rows.append(('`sync` fanned out to every host: until the last check answered',
                     '%.2f s' % res['nudge_all_checked_s']))
    h = res['halt']
    rows.append(('halt pushed %.1f s into the rollout (canary applied): rest applied / held'
                 % res['halt_pushed_after_s'],
                 '%d / %d of %d' % (h['rest_applied'], h['rest_held_by_halt'], h['rest_hosts'])))
    rows.append(('halt: 10 % hosts that had applied before it reached them',
                 '%d of %d' % (h['ten_applied_before_the_halt'], res['wave_sizes']['ten'])))
    rows.append(('revert (delays 60 s): applied on every host after (min / p50 / max)',
                 '%s / %s / %s s' % tuple(f(res['revert'][k]) for k in ('min_s', 'p50_s', 'max_s'))))
    print(gpbench.md_table(['measure', 'value'], rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--hosts', type=int, default=100)
    ap.add_argument('--poll', type=float, default=5.0,
                    help='[poll] min_interval_s = max_interval_s (seconds)')
    ap.add_argument('--jitter', type=float, default=0.1)
    ap.add_argument('--idle', type=float, default=None,
                    help='idle window (seconds; default 4 poll intervals)')
    ap.add_argument('--delays', default='5,30',
                    help='delays of the 10 %% wave and of the rest (seconds)')
    ap.add_argument('--timeout', type=float, default=120.0)
    ap.add_argument('--bin', help='gitproc binary (default GITPROC_BIN or target/release)')
    ap.add_argument('--workdir')
    ap.add_argument('--keep', action='store_true', help='keep the work directory')
    ap.add_argument('--webhooks', action='store_true',
                    help='give each daemon an [http] listener and add the webhook phase')
    ap.add_argument('--server', choices=('http', 'git'), default='http',
                    help='git server: http-backend as CGI (default) or git daemon (git://)')
    ap.add_argument('--json', help='write the figures here')
    args = ap.parse_args()
    if args.idle is None:
        args.idle = 4 * args.poll
    if args.server == 'http' and not os.access(HTTP_BACKEND, os.X_OK):
        sys.exit('%s not found: install git' % HTTP_BACKEND)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_signal)
    res = run(args)
    report(res)
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump(res, fh, indent=2)
    good = (res['waves_in_order'] and res['halt_ok'] and res['revert_ok']
            and not res['applied_early'])
    return 0 if good else 1


if __name__ == '__main__':
    sys.exit(main())
