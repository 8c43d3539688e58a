#!/usr/bin/env python3
"""Run the shared peer benchmark (peers.py) with gitproc added as one more supervisor.

peers.py is imported unmodified from PEERS_DIR (default: ../shared/bench next to this
checkout, or ../../shared/bench for a worktree one level deeper); this script adds a
`gitproc` Adapter to its ADAPTERS and calls its main() with the same command line.
Results go to bench/results-peers.{json,md} of this checkout unless --out/--md say
otherwise. Run as root, after `cargo build --release` (or set GITPROC_BIN):

    python3 bench/peers_gitproc.py run --peers gitproc,runit,s6,supervisord \\
        --sizes 100,500 --reps 3
    python3 bench/peers_gitproc.py run --peers gitproc --reps 1 --sizes 20 --idle 3   # smoke
"""
import json
import os
import re
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


def find_peers_dir():
    env = os.environ.get('PEERS_DIR')
    candidates = [env] if env else [os.path.join(REPO_ROOT, '..', 'shared', 'bench'),
                                     os.path.join(REPO_ROOT, '..', '..', 'shared', 'bench')]
    for c in candidates:
        if os.path.isfile(os.path.join(c, 'peers.py')):
            return os.path.abspath(c)
    sys.exit('peers.py not found in %s: set PEERS_DIR to the folder that holds it'
             % ' or '.join(os.path.abspath(c) for c in candidates))


sys.path.insert(0, find_peers_dir())
import peers  # noqa: E402


def gitproc_bin():
    return os.environ.get('GITPROC_BIN') or os.path.join(REPO_ROOT, 'target', 'release',
                                                         'gitproc')


class Gitproc(peers.Adapter):
    name = 'gitproc'
    driven = ('start: `gitproc daemon --repo REPO --state-dir D` on a fresh git repository '
              'with one committed unit per service; status: `gitproc status --json`; stop: '
              '`gitproc stop s0000 ...` (all units, one command); shutdown: SIGTERM to the '
              'daemon; child: main_pid from `gitproc status --json`')
    restart_policy = ('Restart=always, RestartSec=0, StartLimitIntervalSec=0 (as configured; '
                      'gitproc adds no restart delay of its own)')
    start_mode = 'launch `gitproc daemon` with all units already committed'

    def available(self):
        b = gitproc_bin()
        if not os.access(b, os.X_OK):
            return ('%s not found: `cargo build --release` or set GITPROC_BIN' % b)
        if not peers.shutil.which('git'):
            return 'git not installed'
        return None

    def version(self):
        try:
            out = subprocess.run([gitproc_bin(), '--version'], capture_output=True, text=True,
                                 timeout=20).stdout.strip()
            return out or '?'
        except Exception:
            return '?'

    def setup(self, dir, services):
        self.dir, self.services = dir, services
        self.bin = gitproc_bin()
        self.repo = os.path.join(dir, 'repo')
        self.state = os.path.join(dir, 'state')
        os.makedirs(self.repo)
        sleep = peers.shutil.which(peers.SERVICE_ARGV[0]) or '/bin/sleep'
        cmd = ' '.join([sleep] + peers.SERVICE_ARGV[1:])
        for s in services:
            with open(os.path.join(self.repo, s + '.service'), 'w') as f:
                f.write('[Unit]\nDescription=peer benchmark %s\nStartLimitIntervalSec=0\n\n'
                        '[Service]\nExecStart=%s\nRestart=always\nRestartSec=0\n' % (s, cmd))
        git = ['git', '-c', 'user.name=peers', '-c', 'user.email=peers@bench.invalid',
               '-c', 'commit.gpgsign=false']
        for args in (['init', '-q', '-b', 'main'], ['add', '-A'],
                     ['commit', '-q', '-m', '%d services' % len(services)]):
            rc, out, _ = self.h.run(git + args, timeout=120, cwd=self.repo)
            if rc != 0:
                raise RuntimeError('git %s failed: %s' % (' '.join(args), out.strip()))

    def ctl(self, *args):
        return [self.bin] + list(args) + ['--state-dir', self.state]

    def start(self):
        self.root = self.h.spawn([self.bin, 'daemon', '--repo', self.repo,
                                  '--state-dir', self.state], log=self.log('daemon.log'))
        return None

    def _status(self):
        rc, out, el = self.h.run(self.ctl('status', '--json'), timeout=120)
        try:
            return json.loads(out), rc, el
        except ValueError:
            # h.run merges stderr into stdout; take the JSON object if warnings precede it.
            m = re.search(r'^\{.*\}\s*$', out, re.S | re.M)
            try:
                return (json.loads(m.group(0)) if m else None), rc, el
            except ValueError:
                return None, rc, el

    def status(self):
        st, rc, el = self._status()
        units = (st or {}).get('units', [])
        running = sum(1 for u in units
                      if u.get('active_state') == 'active' and u.get('sub_state') == 'running')
        return running == len(self.services), rc, el

    def stop(self):
        return self.h.spawn(self.ctl('stop', *self.services), log=self.log('ctl.log'))

    def shutdown(self):
        # SIGTERM: the daemon stops every service (reverse dependency order), then exits.
        if self.root and self.root.poll() is None:
            os.kill(self.root.pid, signal.SIGTERM)
        return None

    def supervisor_pids(self):
        return peers.tree_supervisor_pids({self.root.pid}) if self.root else set()

    def child_pid(self, service):
        st, _, _ = self._status()
        for u in (st or {}).get('units', []):
            if u.get('name') in (service, service + '.service'):
                pid = u.get('main_pid')
                return pid if isinstance(pid, int) and pid > 0 else None
        return None


def main():
    peers.ADAPTERS[Gitproc.name] = Gitproc
    # peers.py writes its default --out/--md next to itself; shared/ is read-only, so the
    # defaults (and the optional notes file) move to this folder.
    peers.BENCH_DIR = HERE
    return peers.main()


if __name__ == '__main__':
    sys.exit(main())
