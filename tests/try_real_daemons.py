#!/usr/bin/env python3
"""Runs Debian 12 daemons from their unmodified unit files under gitproc, one at a time, and
prints one JSON line per daemon: whether it became active with a main pid and answered over
its protocol, how its stop ended, and the daemon's warnings. The README's "Debian daemons
tried" table came from this (as root, the packages installed under a policy-rc.d):

    GP=target/debug/gitproc python3 tests/try_real_daemons.py            # all of them
    GP=target/debug/gitproc python3 tests/try_real_daemons.py tor rpcbind

Not part of the test suite: tests/it/unit_real_daemons.rs is (for the ones CI installs).
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time
GP = os.environ.get("GP", "target/debug/gitproc")
SU = "/lib/systemd/system"
# name: (files, symlinks {instance: template}, unit to watch, probe, activation trigger)
D = {
 "mariadb": (["mariadb.service"], {}, "mariadb.service", ("tcp", 3306), None),
 "postgresql": (["postgresql@.service"], {"postgresql@15-main.service": "postgresql@.service"}, "postgresql@15-main.service", ("tcp", 5432), None),
 "prometheus": (["prometheus.service"], {}, "prometheus.service", ("tcp", 9090), None),
 "rabbitmq": (["rabbitmq-server.service"], {}, "rabbitmq-server.service", ("tcp", 5672), None),
 "tor": (["tor@default.service", "tor@.service"], {}, "tor@default.service", ("tcp", 9050), None),
 "knot": (["knot.service"], {}, "knot.service", ("cmd", ["knotc", "status"]), None),
 "varnish": (["varnish.service"], {}, "varnish.service", ("tcp", 6081), None),
 "knot-resolver": (["kresd@.service"], {"kresd@1.service": "kresd@.service"}, "kresd@1.service", ("tcp", 53), None),
 "haproxy": (["haproxy.service"], {}, "haproxy.service", ("unix", "/run/haproxy/admin.sock"), None),
 "chrony": (["chrony.service"], {}, "chrony.service", ("cmd", ["chronyc", "-n", "tracking"]), None),
 "lighttpd": (["lighttpd.service"], {}, "lighttpd.service", ("tcp", 80), None),
 "php-fpm": (["php8.2-fpm.service"], {}, "php8.2-fpm.service", ("unix", "/run/php/php8.2-fpm.sock"), None),
 "postfix": (["postfix.service", "postfix@.service"], {"postfix@-.service": "postfix@.service"}, "postfix@-.service", ("tcp", 25), None),
 "vsftpd": (["vsftpd.service"], {}, "vsftpd.service", ("tcp", 21), None),
 "cron": (["cron.service"], {}, "cron.service", None, None),
 "dnsmasq": (["dnsmasq.service"], {}, "dnsmasq.service", ("tcp", 53), None),
 "rpcbind": (["rpcbind.service", "rpcbind.socket"], {}, "rpcbind.service", ("tcp", 111), ("tcp", 111)),
 "avahi": (["avahi-daemon.service", "avahi-daemon.socket"], {}, "avahi-daemon.service", ("unix", "/run/avahi-daemon/socket"), ("unix", "/run/avahi-daemon/socket")),
 "etcd": (["etcd.service"], {}, "etcd.service", ("tcp", 2379), None),
}
def sh(*a, **k): return subprocess.run(list(a), capture_output=True, text=True, **k)
def status(sd, unit):
    r = sh(GP, "--state-dir", sd, "status", unit, "--json")
    try:
        j = json.loads(r.stdout)
        return j["units"][0] if "units" in j else j
    except Exception: return {}
def probe(p):
    if p is None: return True
    kind, arg = p
    try:
        if kind == "tcp":
            socket.create_connection(("127.0.0.1", arg), 1).close()
        elif kind == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.settimeout(1); s.connect(arg); s.close()
        else:
            return sh(*arg, timeout=5).returncode == 0
        return True
    except Exception: return False
def run(name):
    files, links, unit, pr, trig = D[name]
    repo = tempfile.mkdtemp(); sd = tempfile.mkdtemp(); os.makedirs(f"{repo}/units")
    for f in files: shutil.copy(f"{SU}/{f}", f"{repo}/units/{f}")
    for i, t in links.items(): os.symlink(t, f"{repo}/units/{i}")
    sh("git", "-C", repo, "init", "-q"); sh("git", "-C", repo, "add", "-A"); sh("git", "-C", repo, "commit", "-qm", "units")
    log = open(f"{sd}/daemon.out", "w")
    d = subprocess.Popen([GP, "daemon", "--repo", repo, "--units-dir", "units", "--state-dir", sd], stdout=log, stderr=log)
    res = "timeout"; u = {}
    t0 = time.time()
    time.sleep(0.5)
    if trig: probe(trig)
    while time.time() - t0 < 40:
        u = status(sd, unit)
        if u.get("active_state") == "active" and (u.get("main_pid") or name == "postfix") and probe(pr):
            res = "ok"; break
        if u.get("active_state") == "failed": res = "failed"; break
        time.sleep(0.3)
    up = time.time() - t0
    stop = ""
    if res == "ok":
        sh(GP, "--state-dir", sd, "stop", unit, timeout=120)
        s = status(sd, unit)
        stop = f"{s.get('active_state')}/{s.get('result')}"
    d.terminate()
    try: d.wait(60)
    except Exception: d.kill()
    dl = open(f"{sd}/daemon.out").read()
    err = [l for l in dl.splitlines() if " WARN " in l or " ERROR " in l][-6:]
    print(json.dumps({"daemon": name, "result": res, "secs": round(up, 1), "state": f"{u.get('active_state')}/{u.get('sub_state')}/{u.get('result')}", "main_pid": u.get("main_pid"), "error": u.get("error"), "stop": stop, "log": err}), flush=True)
for n in (sys.argv[1:] or D): run(n)
