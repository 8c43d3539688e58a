//! `[X-Health]` end to end: a real daemon on a real git repository, python3 HTTP/1.1
//! servers as services, real sockets. Health shown in status, `OnUnhealthy=restart` after
//! `Retries=` failures, TCP and Exec probes (a closed port, a probe that times out), one
//! kept-alive connection per unit, `ReadyOnHealthy=yes` holding back an `After=`
//! dependent, and a commit whose new version runs but is unhealthy rolled back. Plus the
//! loader: defaults, errors naming file:line.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gitproc::unit::SpecifierContext;
use gitproc::unit::load::parse_unit;
use gitproc::unit::model::{HealthProbe, OnUnhealthy};

use crate::support::{Daemon, Repo, cmdline_once_exec};

/// A port nobody listens on now (bound to 127.0.0.1:0, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// An HTTP/1.1 keep-alive server: `serve.py PORT CTL [DELAY]`. It answers every GET with the
/// status code written in the file CTL (200 when empty or missing), appends one line to
/// `CTL.conns` per accepted connection, and waits DELAY seconds before it listens (writing
/// the time it starts listening to `CTL.listening`).
const SERVER: &str = r#"
import http.server, socketserver, sys, time
port, ctl = int(sys.argv[1]), sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
time.sleep(delay)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        with open(ctl + ".conns", "a") as f:
            f.write("c\n")
    def do_GET(self):
        try:
            code = int(open(ctl).read().strip() or "200")
        except Exception:
            code = 200
        body = b"status %d from %s\n" % (code, ctl.encode())
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
s = S(("127.0.0.1", port), H)
with open(ctl + ".listening", "w") as f:
    f.write("%f\n" % time.time())
s.serve_forever()
"#;

struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        std::fs::write(dir.path().join("serve.py"), SERVER).expect("script");
        Scratch { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ExecStart=` of the server on `port` with control file `ctl`.
    fn exec(&self, port: u16, ctl: &str, delay: &str) -> String {
        format!(
            "python3 {} {port} {} {delay}",
            self.path("serve.py").display(),
            self.path(ctl).display()
        )
        .trim_end()
        .to_string()
    }

    fn set(&self, ctl: &str, code: u16) {
        let tmp = self.path(&format!("{ctl}.tmp"));
        std::fs::write(&tmp, code.to_string()).expect("write control file");
        std::fs::rename(tmp, self.path(ctl)).expect("rename control file");
    }

    fn connections(&self, ctl: &str) -> usize {
        std::fs::read_to_string(self.path(&format!("{ctl}.conns")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

fn have_python() -> bool {
    crate::support::require("python3", crate::support::have_program("python3"))
}

fn unit_with_health(exec: &str, service_extra: &str, health: &str) -> String {
    format!("[Service]\nExecStart={exec}\n{service_extra}\n\n[X-Health]\n{health}\n")
}

fn logs(daemon: &Daemon, unit: &str) -> String {
    String::from_utf8_lossy(&daemon.cli(&["logs", unit]).stdout).into_owned()
}

#[test]
fn an_http_server_answering_500_is_restarted_after_retries_failed_probes() {
    if !have_python() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let repo = Repo::new();
    repo.write(
        "web.service",
        &unit_with_health(
            &scratch.exec(port, "web", ""),
            // Restart=no: OnUnhealthy=restart restarts all the same.
            "Restart=no",
            &format!(
                "HTTP=http://127.0.0.1:{port}/health\nIntervalSec=100ms\nRetries=3\nStartPeriodSec=20s"
            ),
        ),
    );
    repo.commit("web with an HTTP health check");
    let daemon = Daemon::start(repo.path(), &[]);
    let healthy = daemon.wait_unit("web.service", "healthy", |u| u["health"] == "healthy");
    assert_eq!(healthy["last_probe_result"], "HTTP 200", "{healthy:#}");
    assert!(
        healthy["last_probe_output"]
            .as_str()
            .is_some_and(|o| o.contains("status 200")),
        "{healthy:#}"
    );
    assert!(healthy["health_since"].is_u64() && healthy["last_probe"].is_u64());
    let text = String::from_utf8_lossy(&daemon.cli(&["status", "web.service"]).stdout).into_owned();
    assert!(text.contains("Health: healthy"), "{text}");
    let list = String::from_utf8_lossy(&daemon.cli(&["status"]).stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l.contains("web.service") && l.trim_end().ends_with("healthy")),
        "the unit list has a HEALTH column: {list}"
    );
    let first = healthy["main_pid"].as_i64().expect("main pid");

    scratch.set("web", 500);
    let restarted = daemon.wait_unit("web.service", "restarted by its health check", |u| {
        u["n_restarts"].as_u64() >= Some(1) && u["main_pid"].is_i64() && u["main_pid"] != first
    });
    scratch.set("web", 200);
    assert_eq!(restarted["sub_state"], "running", "{restarted:#}");
    let log = logs(&daemon, "web.service");
    assert!(
        log.contains("Health: unhealthy: HTTP 500 after 3 probes"),
        "the unit log says why: {log}"
    );
    assert!(
        daemon.log_text().contains("result health"),
        "the run ended with result health: {}",
        daemon.log_text()
    );
    // The new run is probed afresh and becomes healthy again.
    daemon.wait_unit("web.service", "healthy again", |u| {
        u["health"] == "healthy" && u["main_pid"] != first
    });
    let perf = daemon.cli(&["perf", "export", "--format", "json"]);
    let perf: serde_json::Value =
        serde_json::from_slice(&perf.stdout).expect("perf export is JSON");
    let probes = &perf["probes"]["web.service"];
    assert!(probes["count"].as_u64() >= Some(4), "{perf:#}");
    assert!(probes["failures"].as_u64() >= Some(3), "{perf:#}");
    assert!(
        perf["operations"]["probe_to_restart"]["count"].as_u64() >= Some(1),
        "{perf:#}"
    );
}

#[test]
fn a_tcp_probe_of_a_closed_port_marks_the_unit_unhealthy() {
    let port = free_port();
    let repo = Repo::new();
    repo.write(
        "closed.service",
        &unit_with_health(
            "/bin/sleep 1000",
            "",
            &format!("TCP=127.0.0.1:{port}\nIntervalSec=100ms\nRetries=2\nOnUnhealthy=none"),
        ),
    );
    repo.commit("a TCP probe of a closed port");
    let daemon = Daemon::start(repo.path(), &[]);
    let pid = daemon.wait_running("closed.service");
    let u = daemon.wait_unit("closed.service", "unhealthy", |u| {
        u["health"] == "unhealthy"
    });
    assert!(
        u["last_probe_result"]
            .as_str()
            .is_some_and(|r| r.contains("connection refused")),
        "{u:#}"
    );
    // OnUnhealthy=none only reports.
    assert_eq!(u["main_pid"].as_i64(), Some(i64::from(pid)), "{u:#}");
    assert_eq!(u["sub_state"], "running");
    assert!(logs(&daemon, "closed.service").contains("Health: unhealthy: connection refused"));
}

#[test]
fn an_exec_probe_that_times_out_counts_as_a_failure() {
    let repo = Repo::new();
    repo.write(
        "slowprobe.service",
        &unit_with_health(
            "/bin/sleep 1000",
            "",
            "Exec=/bin/sleep 30\nIntervalSec=100ms\nTimeoutSec=200ms\nRetries=1\nOnUnhealthy=none",
        ),
    );
    repo.write(
        "goodprobe.service",
        &unit_with_health(
            "/bin/sleep 1000",
            "Environment=WANT=yes",
            "Exec=/bin/sh -c 'test \"$WANT\" = yes && echo all good'\nIntervalSec=100ms",
        ),
    );
    repo.commit("exec probes");
    let daemon = Daemon::start(repo.path(), &[]);
    let u = daemon.wait_unit("slowprobe.service", "unhealthy", |u| {
        u["health"] == "unhealthy"
    });
    assert!(
        u["last_probe_result"]
            .as_str()
            .is_some_and(|r| r.contains("timed out after 0.2s")),
        "{u:#}"
    );
    // The probe ran with the unit's environment and exited 0.
    let g = daemon.wait_unit("goodprobe.service", "healthy", |u| u["health"] == "healthy");
    assert_eq!(g["last_probe_result"], "exit status 0", "{g:#}");
    assert_eq!(
        g["last_probe_output"], "all good",
        "the probe's output is shown: {g:#}"
    );
    // Timed-out probes are killed, not left behind.
    daemon.wait("no leftover probe processes", || {
        crate::support::pids_with_cmdline(&["/bin/sleep", "30"])
            .is_empty()
            .then_some(())
    });
}

#[test]
fn twenty_probes_use_one_kept_alive_connection() {
    if !have_python() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let repo = Repo::new();
    repo.write(
        "keep.service",
        &unit_with_health(
            &scratch.exec(port, "keep", ""),
            "",
            &format!("HTTP=http://127.0.0.1:{port}/\nIntervalSec=50ms\nStartPeriodSec=20s"),
        ),
    );
    repo.commit("keep-alive");
    let daemon = Daemon::start(repo.path(), &[]);
    let u = daemon.wait_unit_for(
        "keep.service",
        "probed 20 times",
        Duration::from_secs(30),
        |u| u["health_probes"].as_u64() >= Some(21),
    );
    assert_eq!(u["health"], "healthy", "{u:#}");
    assert_eq!(
        scratch.connections("keep"),
        1,
        "the server saw one connection"
    );
    assert_eq!(u["health_connections"], 1, "{u:#}");
}

#[test]
fn ready_on_healthy_keeps_an_after_dependent_waiting_until_the_first_healthy_probe() {
    if !have_python() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let stamp = scratch.path("dependent.started");
    let repo = Repo::new();
    repo.write(
        "slow.service",
        &unit_with_health(
            &scratch.exec(port, "slow", "2"),
            "",
            &format!(
                "HTTP=http://127.0.0.1:{port}/\nIntervalSec=100ms\nStartPeriodSec=30s\nReadyOnHealthy=yes"
            ),
        ),
    );
    repo.write(
        "dependent.service",
        &format!(
            "[Unit]\nWants=slow.service\nAfter=slow.service\n\n[Service]\nExecStart=/bin/sh -c 'date +%%s.%%N > {}; exec sleep 1000'\n",
            stamp.display()
        ),
    );
    repo.commit("slow server and its dependent");
    let began = Instant::now();
    let daemon = Daemon::start(repo.path(), &[]);
    let waiting = daemon.wait_unit("slow.service", "activating with its server", |u| {
        u["active_state"] == "activating" && u["main_pid"].is_i64()
    });
    assert_eq!(waiting["health"], "starting", "{waiting:#}");
    assert!(!stamp.exists(), "the dependent must wait for slow.service");
    let up = daemon.wait_unit("slow.service", "active and healthy", |u| {
        u["active_state"] == "active" && u["health"] == "healthy"
    });
    assert!(began.elapsed() >= Duration::from_secs(2), "{up:#}");
    daemon.wait_running("dependent.service");
    // Both stamps are written by the processes themselves: wait until they are complete.
    let read_time = |path: PathBuf| {
        daemon.wait(&format!("a time in {}", path.display()), || {
            std::fs::read_to_string(&path)
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    let listening = read_time(scratch.path("slow.listening"));
    let started = read_time(stamp.clone());
    assert!(
        started >= listening,
        "the dependent started ({started}) before slow.service was healthy ({listening})"
    );
}

#[test]
fn a_commit_whose_new_version_is_unhealthy_is_rolled_back() {
    if !have_python() {
        return;
    }
    let scratch = Scratch::new();
    let port = free_port();
    let health = format!("HTTP=http://127.0.0.1:{port}/\nIntervalSec=100ms\nRetries=20");
    let repo = Repo::new();
    let good_exec = scratch.exec(port, "v1", "");
    repo.write("app.service", &unit_with_health(&good_exec, "", &health));
    let good = repo.commit("good version");
    let daemon = Daemon::start(repo.path(), &[]);
    let u = daemon.wait_unit("app.service", "proven good", |u| {
        u["last_good_commit"] == good.as_str()
    });
    let old_pid = u["main_pid"].as_i64().expect("main pid");

    // The new version runs (it listens) but answers 500.
    scratch.set("v2", 500);
    repo.write(
        "app.service",
        &unit_with_health(&scratch.exec(port, "v2", ""), "", &health),
    );
    let bad = repo.commit("v2 answers 500");
    daemon.sync_to(&bad);
    let u = daemon.wait_unit("app.service", "rolled back and running", |u| {
        u["failed_commit"] == bad.as_str()
            && u["sub_state"] == "running"
            && u["main_pid"].is_i64()
            && u["main_pid"] != old_pid
            && u["commit"] == good.as_str()
    });
    let pid = u["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(
        cmdline_once_exec(pid, &good_exec),
        good_exec,
        "the previous command line runs again"
    );
    assert!(scratch.connections("v2") >= 1, "v2 did run and answer");
    let text = String::from_utf8_lossy(&daemon.cli(&["status", "app.service"]).stdout).into_owned();
    assert!(
        text.contains(&bad[..10]),
        "status names the failed commit: {text}"
    );
    assert!(daemon.log_text().contains("Rolling back app.service"));
    daemon.wait_unit("app.service", "healthy on the old version", |u| {
        u["health"] == "healthy"
    });
}

#[test]
fn the_loader_reads_x_health_with_defaults_and_names_file_and_line_in_errors() {
    let ctx = SpecifierContext::default();
    let env = |_: &str| None;
    let ok = parse_unit(
        "a.service",
        "a.service",
        b"[Service]\nExecStart=/bin/true\n[X-Health]\nHTTP=http://127.0.0.1:8080/hz\nExpectBody=ok\n",
        &[],
        &ctx,
        &env,
    );
    let unit = ok.unit.expect("parses");
    let h = unit.health.expect("a health check");
    assert_eq!(h.interval, Duration::from_secs(10));
    assert_eq!(h.timeout, Duration::from_secs(5));
    assert_eq!((h.retries, h.success_threshold), (3, 1));
    assert_eq!(h.on_unhealthy, OnUnhealthy::Restart);
    assert!(!h.ready_on_healthy);
    match h.probe {
        HealthProbe::Http(http) => {
            assert_eq!(http.expect_status, vec![(200, 399)]);
            assert_eq!(http.expect_body.as_deref(), Some("ok"));
            assert_eq!(http.path, "/hz");
        }
        other => panic!("{other:?}"),
    }
    let exec = parse_unit(
        "b.service",
        "b.service",
        b"[Service]\nExecStart=/bin/true\nEnvironment=X=1\n[X-Health]\nExec=-/bin/check \"$X\" 'two words'\n",
        &[],
        &ctx,
        &env,
    );
    match exec.unit.and_then(|u| u.health).map(|h| h.probe) {
        Some(HealthProbe::Exec(cmd)) => {
            assert!(cmd.flags.ignore_failure);
            assert_eq!(cmd.argv, vec!["/bin/check", "1", "two words"]);
        }
        other => panic!("{other:?}"),
    }
    let bad = parse_unit(
        "c.service",
        "units/c.service",
        b"[Service]\nExecStart=/bin/true\n[X-Health]\nTCP=127.0.0.1:80\nRetries=zero\nOnUnhealthy=explode\n",
        &[],
        &ctx,
        &env,
    );
    assert!(bad.unit.is_none());
    let errors: Vec<String> = bad.diagnostics.iter().map(|d| d.to_string()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("units/c.service:5") && e.contains("Retries=")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("units/c.service:6") && e.contains("OnUnhealthy=")),
        "{errors:?}"
    );
    let no_probe = parse_unit(
        "d.service",
        "d.service",
        b"[Service]\nExecStart=/bin/true\n[X-Health]\nIntervalSec=1s\n",
        &[],
        &ctx,
        &env,
    );
    assert!(
        no_probe
            .diagnostics
            .iter()
            .any(|d| d.to_string().contains("d.service:4")
                && d.to_string().contains("needs a probe")),
        "{:?}",
        no_probe.diagnostics
    );
    // A unit without [X-Health] has no health check.
    let plain = parse_unit(
        "e.service",
        "e.service",
        b"[Service]\nExecStart=/bin/true\n",
        &[],
        &ctx,
        &env,
    );
    assert!(plain.unit.expect("parses").health.is_none());
}

#[test]
fn an_unhealthy_restart_starts_the_on_failure_hook_with_result_health() {
    let port = free_port();
    let repo = Repo::new();
    let out = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(out.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let dump = out.path().join("hook-env");
    repo.write(
        "probed.service",
        &format!(
            "[Unit]\nOnFailure=alert.service\n\n[Service]\nExecStart=/bin/sleep 1000\n\n[X-Health]\nTCP=127.0.0.1:{port}\nIntervalSec=100ms\nRetries=2\n"
        ),
    );
    repo.write(
        "alert.service",
        &format!(
            "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'env | grep ^MONITOR_ | sort > {0}.tmp && mv {0}.tmp {0}'\n",
            dump.display()
        ),
    );
    repo.commit("a probed unit that turns unhealthy, and its hook");
    let daemon = Daemon::start(repo.path(), &[]);
    let text = daemon.wait("the OnFailure= hook's dump", || {
        std::fs::read_to_string(&dump).ok()
    });
    assert!(text.contains("MONITOR_SERVICE_RESULT=health"), "{text}");
    assert!(text.contains("MONITOR_UNIT=probed.service"), "{text}");
    // The unit itself was restarted by its health check.
    daemon.wait_unit("probed.service", "restarted", |u| {
        u["n_restarts"].as_u64() >= Some(1)
    });
}
