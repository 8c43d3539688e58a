//! The `.service` files Debian 12 ships in nginx-common, redis-server, memcached,
//! openssh-server, cron, rsyslog, postgresql-common, haproxy and chrony load with zero errors,
//! and the typed model holds what they say. The files are fetched by
//! `tests/fetch-debian-units.sh` into `target/debian-units/<package>/` (never committed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gitproc::unit::load::load_templates;
use gitproc::unit::model::{KillMode, RestartPolicy, ServiceType, StdOutput, Unit};
use gitproc::unit::{LoadedUnit, SpecifierContext, load_tree};

fn units_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian-units");
    let what = format!(
        "the Debian units fixture {} (`bash tests/fetch-debian-units.sh`, needs apt-get)",
        dir.display()
    );
    crate::support::require(&what, dir.join(".done").is_file()).then_some(dir)
}

/// Every package directory loaded like a unit directory, templates included.
fn load_all(dir: &Path) -> BTreeMap<String, LoadedUnit> {
    let ctx = SpecifierContext::default();
    let mut all = BTreeMap::new();
    let mut pkgs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    pkgs.sort();
    for pkg in pkgs {
        let tree = match gitproc::source::dir::read_tree(&pkg) {
            Ok(t) => t,
            Err(e) => panic!("reading {}: {e}", pkg.display()),
        };
        all.extend(load_tree(&tree, &ctx));
        all.extend(load_templates(&tree, &ctx));
    }
    all
}

fn unit<'a>(all: &'a BTreeMap<String, LoadedUnit>, name: &str) -> &'a Unit {
    match all.get(name).and_then(|l| l.unit.as_ref()) {
        Some(u) => u,
        None => panic!(
            "{name} missing or failed: {:?}",
            all.get(name).map(|l| &l.diagnostics)
        ),
    }
}

#[test]
fn debian_units_load_without_errors() {
    let Some(dir) = units_dir() else { return };
    let all = load_all(&dir);
    assert!(
        all.len() >= 15,
        "expected the Debian units, found {:?}",
        all.keys()
    );
    let errors: Vec<String> = all
        .values()
        .flat_map(|l| {
            l.diagnostics
                .iter()
                .filter(|d| d.is_error())
                .map(|d| format!("{}: {d}", l.name))
        })
        .collect();
    assert!(errors.is_empty(), "errors:\n{}", errors.join("\n"));
}

#[test]
fn debian_units_typed_model() {
    let Some(dir) = units_dir() else { return };
    let all = load_all(&dir);

    let nginx = unit(&all, "nginx.service");
    assert_eq!(nginx.service.service_type, ServiceType::Forking);
    assert_eq!(nginx.service.pid_file.as_deref(), Some("/run/nginx.pid"));
    assert_eq!(nginx.service.exec_start_pre.len(), 1);
    assert_eq!(
        nginx.service.exec_start_pre[0].argv,
        [
            "/usr/sbin/nginx",
            "-t",
            "-q",
            "-g",
            "daemon on; master_process on;"
        ]
    );
    assert!(
        nginx.service.exec_stop[0].flags.ignore_failure,
        "ExecStop=-..."
    );
    assert_eq!(nginx.service.exec_stop[0].path, "/sbin/start-stop-daemon");
    assert_eq!(nginx.service.kill_mode, KillMode::Mixed);
    assert_eq!(nginx.service.timeout_stop, Some(Duration::from_secs(5)));
    assert_eq!(nginx.install.wanted_by, ["multi-user.target"]);

    let redis = unit(&all, "redis-server.service");
    assert_eq!(redis.service.service_type, ServiceType::Notify);
    assert_eq!(redis.service.user.as_deref(), Some("redis"));
    assert_eq!(redis.service.umask, 0o007);
    assert_eq!(redis.service.runtime_directory_mode, 0o2755);
    assert_eq!(
        redis.service.limits.get("NOFILE").and_then(|l| l.soft),
        Some(65535)
    );
    assert_eq!(
        redis.service.timeout_stop, None,
        "TimeoutStopSec=0 disables the timeout"
    );
    assert_eq!(redis.install.alias, ["redis.service"]);

    let ssh = unit(&all, "ssh.service");
    assert_eq!(ssh.service.service_type, ServiceType::Notify);
    assert_eq!(ssh.service.kill_mode, KillMode::Process);
    assert_eq!(ssh.service.restart, RestartPolicy::OnFailure);
    assert_eq!(ssh.service.restart_prevent_exit_status.codes, [255]);
    assert_eq!(
        ssh.unit
            .conditions
            .iter()
            .map(|c| c.directive())
            .collect::<Vec<_>>(),
        ["ConditionPathExists=!/etc/ssh/sshd_not_to_be_run"]
    );
    assert!(ssh.service.environment_files[0].optional);
    assert_eq!(
        ssh.service.exec_reload[1].argv,
        ["/bin/kill", "-HUP", "$MAINPID"]
    );

    let cron = unit(&all, "cron.service");
    assert_eq!(cron.service.kill_mode, KillMode::Process);
    assert_eq!(cron.service.exec_start[0].path, "/usr/sbin/cron");

    let rsyslog = unit(&all, "rsyslog.service");
    assert_eq!(rsyslog.service.standard_output, StdOutput::Null);
    assert_eq!(rsyslog.unit.requires, ["syslog.socket"]);

    let haproxy = unit(&all, "haproxy.service");
    assert_eq!(haproxy.service.restart, RestartPolicy::Always);
    assert_eq!(haproxy.service.success_exit_status.codes, [143]);
    assert_eq!(
        haproxy.service.exec_start[0].argv,
        [
            "/usr/sbin/haproxy",
            "-Ws",
            "-f",
            "/etc/haproxy/haproxy.cfg",
            "-p",
            "/run/haproxy.pid",
            "-S",
            "/run/haproxy-master.sock"
        ]
    );

    let chrony = unit(&all, "chrony.service");
    assert!(
        chrony.service.exec_start[0].flags.no_setuid,
        "ExecStart=!..."
    );
    assert_eq!(chrony.service.state_directory_mode, 0o750);

    let pg = unit(&all, "postgresql@.service");
    assert_eq!(pg.service.timeout_start, None, "TimeoutStartSec=0");
    assert_eq!(pg.service.timeout_stop, Some(Duration::from_secs(3600)));
    assert_eq!(pg.service.oom_score_adjust, Some(-900));
    let dump = unit(&all, "pg_dump@.service");
    assert_eq!(dump.service.service_type, ServiceType::Oneshot);
    assert_eq!(dump.service.exec_start.len(), 2);
    assert_eq!(
        dump.service.exec_start[1].argv.last().map(String::as_str),
        Some("3"),
        "$KEEP from Environment="
    );

    let memcached = unit(&all, "memcached.service");
    assert_eq!(memcached.service.restart, RestartPolicy::Always);
}
