"""Shared helpers of the gitproc end-to-end benchmarks (Python 3, standard library only).

A benchmark builds a git repository of `sleep` units, runs `gitproc daemon` on it, and
observes the daemon's children through /proc. Everything it starts stays in its process
tree (it makes itself a child subreaper), and `Bench.cleanup()` stops the daemon and kills
whatever is left, by pid, at exit.
"""
import ctypes
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf('SC_CLK_TCK')
SLEEP = shutil.which('sleep') or '/bin/sleep'


def now():
    return time.perf_counter()


def gitproc_bin():
    """GITPROC_BIN, else target/release/gitproc of this checkout."""
    path = os.environ.get('GITPROC_BIN') or os.path.join(REPO_ROOT, 'target', 'release',
                                                          'gitproc')
    if not os.access(path, os.X_OK):
        sys.exit('gitproc binary %s not found or not executable: run `cargo build --release` '
                 'or set GITPROC_BIN' % path)
    return path


# ----------------------------------------------------------------------------- /proc

def read_stat(pid):
    """(comm, state, ppid, utime, stime, starttime) or None if gone."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as fh:
            data = fh.read()
    except OSError:
        return None
    l, r = data.find(b'('), data.rfind(b')')
    f = data[r + 2:].split()
    return (data[l + 1:r].decode('utf-8', 'replace'), f[0].decode(), int(f[1]),
            int(f[11]), int(f[12]), int(f[19]))


def read_cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            data = fh.read()
    except OSError:
        return None
    return [a.decode('utf-8', 'replace') for a in data.split(b'\0')[:-1]]


def alive(pid):
    st = read_stat(pid)
    return st is not None and st[1] not in ('Z', 'X')


def children(pid):
    """Direct children of `pid` (all its threads), from /proc/PID/task/*/children."""
    out = set()
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open('/proc/%d/task/%s/children' % (pid, tid)) as fh:
                out.update(int(x) for x in fh.read().split())
        except FileNotFoundError:
            if not os.path.exists('/proc/%d/task/%s' % (pid, tid)):
                continue        # the thread exited meanwhile
            # A kernel without CONFIG_PROC_CHILDREN: scan /proc for the parent pid.
            return {int(n) for n in os.listdir('/proc')
                    if n.isdigit() and (read_stat(int(n)) or (0, 0, None))[2] == pid}
        except OSError:
            pass
    return out


def descendants(root):
    """root's live descendants (root excluded), from one scan of /proc."""
    kids = {}
    for name in os.listdir('/proc'):
        if name.isdigit():
            st = read_stat(int(name))
            if st and st[1] not in ('Z', 'X'):
                kids.setdefault(st[2], []).append(int(name))
    out, stack = set(), list(kids.get(root, ()))
    while stack:
        p = stack.pop()
        if p not in out:
            out.add(p)
            stack.extend(kids.get(p, ()))
    return out


def is_sleep(pid, arg=None):
    """A live `sleep ARG` process (any ARG when arg is None), i.e. a service that has exec'd."""
    argv = read_cmdline(pid)
    if not argv or os.path.basename(argv[0]) != 'sleep' or len(argv) != 2:
        return False
    return (arg is None or argv[1] == str(arg)) and alive(pid)


def pss_kib(pid):
    try:
        with open('/proc/%d/smaps_rollup' % pid) as fh:
            for line in fh:
                if line.startswith('Pss:'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_sample(pid):
    """dict(ticks, sched_ns, vcsw, nvcsw) summed over the threads of pid, or None."""
    st = read_stat(pid)
    if st is None:
        return None
    out = {'ticks': st[3] + st[4], 'sched_ns': 0, 'vcsw': 0, 'nvcsw': 0}
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return None
    for tid in tids:
        base = '/proc/%d/task/%s/' % (pid, tid)
        try:
            with open(base + 'schedstat') as fh:
                out['sched_ns'] += int(fh.read().split()[0])
            with open(base + 'status') as fh:
                for line in fh:
                    if line.startswith('voluntary_ctxt_switches:'):
                        out['vcsw'] += int(line.split()[1])
                    elif line.startswith('nonvoluntary_ctxt_switches:'):
                        out['nvcsw'] += int(line.split()[1])
        except OSError:
            pass
    return out


def thread_wakeups(pid):
    """{thread name: (voluntary ctx switches, schedstat ns)} of pid's threads (same-named
    threads summed): shows which thread of the daemon wakes up."""
    out = {}
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return out
    for tid in tids:
        base = '/proc/%d/task/%s/' % (pid, tid)
        try:
            with open(base + 'comm') as fh:
                name = fh.read().strip()
            with open(base + 'schedstat') as fh:
                ns = int(fh.read().split()[0])
            vcsw = 0
            with open(base + 'status') as fh:
                for line in fh:
                    if line.startswith('voluntary_ctxt_switches:'):
                        vcsw = int(line.split()[1])
        except OSError:
            continue
        v, n = out.get(name, (0, 0))
        out[name] = (v + vcsw, n + ns)
    return out


def wait_exited(pids, timeout):
    """Wait until every pid has exited (zombies count as exited), using pidfds.
    Returns (seconds until the last exit, set of pids still alive)."""
    t0 = now()
    fds = {}
    for p in pids:
        try:
            fds[os.pidfd_open(p)] = p
        except OSError:
            pass                    # already gone
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    last = t0
    left = dict(fds)
    try:
        while left:
            remaining = t0 + timeout - now()
            if remaining <= 0:
                break
            for fd, _ in poller.poll(remaining * 1000):
                if fd in left:
                    del left[fd]
                    poller.unregister(fd)
                    last = now()
    finally:
        for fd in fds:
            os.close(fd)
    return last - t0, set(left.values())


# ----------------------------------------------------------------------------- stats

def pct(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def md_table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    out += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(out)


def ms(seconds, fmt='%.1f'):
    return '-' if seconds is None else fmt % (seconds * 1e3)


# ----------------------------------------------------------------------------- units, git

def sleep_unit(arg=100000, extra=''):
    """A unit that restarts at once, forever: what every peer is measured with."""
    return ('[Unit]\nDescription=benchmark sleeper\nStartLimitIntervalSec=0\n\n'
            '[Service]\nExecStart=%s %s\nRestart=always\nRestartSec=0\n%s'
            % (SLEEP, arg, extra))


def git(repo, *args, timeout=60):
    cmd = ['git', '-c', 'user.name=gitproc bench', '-c', 'user.email=bench@gitproc.invalid',
           '-c', 'commit.gpgsign=false'] + list(args)
    r = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError('git %s in %s failed: %s' % (' '.join(args), repo, r.stderr.strip()))
    return r.stdout


def make_repo(repo, units):
    """A fresh repository on branch main with `units` ({file name: text}) committed."""
    os.makedirs(repo)
    git(repo, 'init', '-q', '-b', 'main')
    write_units(repo, units)
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '-m', 'bench: %d units' % len(units))


def write_units(repo, units):
    for name, text in units.items():
        with open(os.path.join(repo, name), 'w') as fh:
            fh.write(text)


# ----------------------------------------------------------------------------- daemon

class Bench:
    """Owns the daemon process and everything under it; cleans up on exit and on signals."""

    def __init__(self, scratch, remove=False):
        """`remove`: delete `scratch` in cleanup() if the run succeeded (`self.ok` set);
        a failed run keeps it, with the daemon's log, for diagnosis."""
        self.scratch = scratch
        self.remove = remove
        self.ok = False
        self.bin = gitproc_bin()
        self.daemon = None
        self.state = None
        os.makedirs(scratch, exist_ok=True)
        # PR_SET_CHILD_SUBREAPER (36): services orphaned by a dead daemon re-parent to us,
        # so cleanup() still finds and kills them.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:
            print('warning: PR_SET_CHILD_SUBREAPER failed; orphans may escape cleanup',
                  file=sys.stderr)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, _frame):
        print('signal %d: cleaning up' % signum, file=sys.stderr)
        self.cleanup()
        sys.exit(130)

    def start_daemon(self, repo, state, extra=()):
        """Launch `gitproc daemon --repo repo --state-dir state` (no wait)."""
        self.state = state
        log = open(os.path.join(self.scratch, 'daemon.log'), 'ab')
        try:
            self.daemon = subprocess.Popen(
                [self.bin, 'daemon', '--repo', repo, '--state-dir', state] + list(extra),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        finally:
            log.close()
        return self.daemon

    def cli(self, *args, timeout=30):
        """Run `gitproc ARGS --state-dir STATE`: (rc, stdout, stderr)."""
        r = subprocess.run([self.bin] + list(args) + ['--state-dir', self.state],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def status(self):
        """`gitproc status --json` as a dict, or None while the daemon does not answer."""
        try:
            rc, out, _ = self.cli('status', '--json', timeout=10)
        except subprocess.TimeoutExpired:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    def main_pids(self):
        """{unit name without .service: main_pid or None} from status --json."""
        st = self.status()
        if not st:
            return {}
        out = {}
        for u in st.get('units', []):
            name = u.get('name', '')
            if name.endswith('.service'):
                name = name[:-len('.service')]
            out[name] = u.get('main_pid')
        return out

    def check_daemon(self):
        if self.daemon is None or self.daemon.poll() is not None:
            raise RuntimeError('the daemon exited (code %s); see %s' % (
                None if self.daemon is None else self.daemon.returncode,
                os.path.join(self.scratch, 'daemon.log')))

    def run_sleep_units(self, n):
        """Commits `n` sleep units (s0000, s0001, ...) into a fresh repository under the
        scratch directory, starts the daemon on it and waits until every unit runs.
        Returns (names, {name: sleep argument}); the daemon is `self.daemon`."""
        names = ['s%04d' % i for i in range(n)]
        arg_of = {name: 100000 + i for i, name in enumerate(names)}
        repo = os.path.join(self.scratch, 'repo')
        make_repo(repo, {name + '.service': sleep_unit(arg_of[name]) for name in names})
        self.start_daemon(repo, os.path.join(self.scratch, 'state'))
        self.wait_running(names, timeout=60)
        return names, arg_of

    def wait_running(self, names, timeout=60.0, poll=0.005, arg=None):
        """Wait until every unit in `names` has a main pid that is a live `sleep` child;
        returns the seconds waited. Raises with what was missing on timeout."""
        t0 = now()
        deadline = t0 + timeout
        missing = list(names)
        while now() < deadline:
            self.check_daemon()
            pids = self.main_pids()
            missing = [n for n in names if not (pids.get(n) and is_sleep(pids[n], arg))]
            if not missing:
                return now() - t0
            time.sleep(poll)
        raise RuntimeError('%d of %d units not running after %.0f s (e.g. %s); see %s'
                           % (len(missing), len(names), timeout, missing[:5],
                              os.path.join(self.scratch, 'daemon.log')))

    def stop_daemon(self, timeout=30.0):
        """SIGTERM the daemon (it stops its services, then exits); SIGKILL after timeout."""
        if self.daemon is None:
            return None
        t0 = now()
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout)
            except subprocess.TimeoutExpired:
                print('warning: daemon did not exit %.0f s after SIGTERM: SIGKILL' % timeout,
                      file=sys.stderr)
                self.daemon.kill()
                self.daemon.wait(10)
        self.daemon = None
        return now() - t0

    def cleanup(self):
        """Stop the daemon, then SIGKILL any process left in our tree (all started by us).
        Returns the pids killed."""
        try:
            self.stop_daemon(timeout=20)
        except Exception as e:          # keep cleaning up
            print('warning: stopping the daemon: %s' % e, file=sys.stderr)
        killed = set()
        me = os.getpid()
        for _ in range(20):
            left = descendants(me)
            left.discard(me)
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                    killed.add(p)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
            while True:                 # reap orphans re-parented to us
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
        if killed:
            print('cleanup: killed %d leftover processes: %s' % (len(killed), sorted(killed)),
                  file=sys.stderr)
        if self.remove and self.ok:
            shutil.rmtree(self.scratch, ignore_errors=True)
        elif not self.ok:
            print('work files kept in %s (daemon.log)' % self.scratch, file=sys.stderr)
        return killed
