//! The loader's rules, written from systemd's documentation (systemd.syntax(7),
//! systemd.service(5), systemd.exec(5), systemd.kill(5), systemd.unit(5), systemd.time(7)).

use std::collections::BTreeMap;
use std::time::Duration;

use gitproc::tree::{Entry, FileTree};
use gitproc::unit::model::{KillMode, RestartPolicy, ServiceType, StdInput, StdOutput, Unit};
use gitproc::unit::{LoadedUnit, Severity, SpecifierContext, load_tree, parse_unit};

fn ctx() -> SpecifierContext {
    SpecifierContext {
        hostname: "box.example.org".into(),
        ..SpecifierContext::default()
    }
}

fn no_files(_: &str) -> Option<Vec<u8>> {
    None
}

fn load(text: &str) -> LoadedUnit {
    parse_unit(
        "t.service",
        "t.service",
        text.as_bytes(),
        &[],
        &ctx(),
        &no_files,
    )
}

/// The unit, failing the test with the diagnostics when it has errors.
fn ok(text: &str) -> Unit {
    let l = load(text);
    match l.unit {
        Some(u) => u,
        None => panic!("unexpected errors: {:#?}", l.diagnostics),
    }
}

/// The errors of a unit that must fail, as `line:col: message`.
fn errors(text: &str) -> Vec<String> {
    let l = load(text);
    let errs: Vec<String> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect();
    assert!(!errs.is_empty(), "expected an error for:\n{text}");
    assert!(l.unit.is_none(), "a unit with errors must not be usable");
    errs
}

fn warnings(text: &str) -> Vec<String> {
    load(text)
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(|d| format!("{}:{}: {}", d.line, d.column, d.message))
        .collect()
}

const MIN: &str = "[Service]\nExecStart=/bin/true\n";

#[test]
fn defaults_are_systemds() {
    let u = ok(MIN);
    let s = &u.service;
    assert_eq!(s.service_type, ServiceType::Simple);
    assert_eq!(s.restart, RestartPolicy::No);
    assert_eq!(s.restart_sec, Duration::from_millis(100));
    assert_eq!(s.timeout_start, Some(Duration::from_secs(90)));
    assert_eq!(s.timeout_stop, Some(Duration::from_secs(90)));
    assert_eq!(s.kill_mode, KillMode::ControlGroup);
    assert_eq!(s.kill_signal, libc::SIGTERM);
    assert_eq!(s.final_kill_signal, libc::SIGKILL);
    assert!(s.send_sigkill && !s.send_sighup);
    assert_eq!(s.umask, 0o022);
    assert_eq!(u.unit.start_limit_interval, Duration::from_secs(10));
    assert_eq!(u.unit.start_limit_burst, 5);
    assert_eq!(s.standard_output, StdOutput::Journal);
    assert_eq!(s.standard_error, None);
    assert_eq!(s.standard_input, StdInput::Null);
}

#[test]
fn unit_section_typed() {
    let u = ok(
        "[Unit]\nDescription=Web on %H\nAfter=a.service b.target\nAfter=c.service\nBefore=d.service\nRequires=e.service\nWants=f.service\nBindsTo=g.service\nPartOf=h.service\nConflicts=i.service\nConditionHost=!other\nConditionPathExists=|/etc/x\nAssertPathExists=/etc/y\nStartLimitIntervalSec=1min\nStartLimitBurst=3\nDocumentation=man:x(1)\n[Service]\nExecStart=/bin/true\n",
    );
    let x = &u.unit;
    assert_eq!(x.description.as_deref(), Some("Web on box.example.org"));
    assert_eq!(x.after, vec!["a.service", "b.target", "c.service"]);
    assert_eq!(x.before, vec!["d.service"]);
    assert_eq!(x.requires, vec!["e.service"]);
    assert_eq!(x.wants, vec!["f.service"]);
    assert_eq!(x.binds_to, vec!["g.service"]);
    assert_eq!(x.part_of, vec!["h.service"]);
    assert_eq!(x.conflicts, vec!["i.service"]);
    let conditions: Vec<String> = x.conditions.iter().map(|c| c.directive()).collect();
    assert_eq!(
        conditions,
        [
            "ConditionHost=!other",
            "ConditionPathExists=|/etc/x",
            "AssertPathExists=/etc/y"
        ]
    );
    assert_eq!(x.start_limit_interval, Duration::from_secs(60));
    assert_eq!(x.start_limit_burst, 3);
}

#[test]
fn empty_assignment_resets_a_list() {
    let u = ok(
        "[Unit]\nAfter=a.service\nAfter=\nAfter=b.service\n[Service]\nExecStart=/bin/true\nEnvironment=A=1\nEnvironment=\nEnvironment=B=2\n",
    );
    assert_eq!(u.unit.after, vec!["b.service"]);
    assert_eq!(
        u.service.environment,
        vec![("B".to_string(), "2".to_string())]
    );
}

#[test]
fn empty_assignment_resets_a_scalar_to_its_default() {
    let u = ok(
        "[Service]\nExecStart=/bin/true\nRestartSec=5\nRestartSec=\nKillMode=mixed\nKillMode=\n",
    );
    assert_eq!(u.service.restart_sec, Duration::from_millis(100));
    assert_eq!(u.service.kill_mode, KillMode::ControlGroup);
}

#[test]
fn service_section_typed() {
    let u = ok(
        "[Service]\nType=forking\nPIDFile=/run/x.pid\nExecStartPre=/bin/pre\nExecStart=/bin/x\nExecStartPost=/bin/post\nExecReload=/bin/kill -HUP $MAINPID\nExecStop=-/bin/stop\nExecStopPost=/bin/stoppost\nExecCondition=/bin/cond\nRemainAfterExit=yes\nRestart=on-abnormal\nRestartSec=1min 30s\nRestartSteps=5\nRestartMaxDelaySec=10min\nSuccessExitStatus=1 SIGUSR1\nRestartPreventExitStatus=255\nRestartForceExitStatus=3\nTimeoutStartSec=infinity\nTimeoutStopSec=30s\nWatchdogSec=20\nKillMode=process\nKillSignal=SIGINT\nFinalKillSignal=9\nSendSIGKILL=no\nSendSIGHUP=yes\nWorkingDirectory=-/srv/x\nUser=www-data\nGroup=www-data\nSupplementaryGroups=adm log\nUMask=0027\nPassEnvironment=TERM LANG\nUnsetEnvironment=FOO\nLimitNOFILE=1024:4096\nNice=-5\nOOMScoreAdjust=-900\nNoNewPrivileges=true\nRuntimeDirectory=x x/y\nRuntimeDirectoryMode=0750\nStateDirectory=x\nStateDirectoryMode=0700\nLogsDirectory=x\nLogsDirectoryMode=0755\nStandardOutput=append:/var/log/x.log\nStandardError=null\nSyslogIdentifier=xd\n",
    );
    let s = &u.service;
    assert_eq!(s.service_type, ServiceType::Forking);
    assert_eq!(s.pid_file.as_deref(), Some("/run/x.pid"));
    assert_eq!(s.exec_start_pre[0].argv, vec!["/bin/pre"]);
    assert_eq!(s.exec_start_post[0].path, "/bin/post");
    assert_eq!(s.exec_reload[0].argv, vec!["/bin/kill", "-HUP", "$MAINPID"]);
    assert!(s.exec_stop[0].flags.ignore_failure);
    assert_eq!(s.exec_stop_post.len(), 1);
    assert_eq!(s.exec_condition.len(), 1);
    assert!(s.remain_after_exit);
    assert_eq!(s.restart, RestartPolicy::OnAbnormal);
    assert_eq!(s.restart_sec, Duration::from_secs(90));
    assert_eq!(s.restart_steps, 5);
    assert_eq!(s.restart_max_delay, Some(Duration::from_secs(600)));
    assert_eq!(s.success_exit_status.codes, vec![1]);
    assert_eq!(s.success_exit_status.signals, vec![libc::SIGUSR1]);
    assert_eq!(s.restart_prevent_exit_status.codes, vec![255]);
    assert_eq!(s.restart_force_exit_status.codes, vec![3]);
    assert_eq!(s.timeout_start, None);
    assert_eq!(s.timeout_stop, Some(Duration::from_secs(30)));
    assert_eq!(s.watchdog, Some(Duration::from_secs(20)));
    assert_eq!(s.kill_mode, KillMode::Process);
    assert_eq!(s.kill_signal, libc::SIGINT);
    assert_eq!(s.final_kill_signal, 9);
    assert!(!s.send_sigkill && s.send_sighup);
    assert_eq!(s.working_directory.as_deref(), Some("/srv/x"));
    assert!(s.working_directory_optional);
    assert_eq!(s.user.as_deref(), Some("www-data"));
    assert_eq!(s.group.as_deref(), Some("www-data"));
    assert_eq!(s.supplementary_groups, vec!["adm", "log"]);
    assert_eq!(s.umask, 0o027);
    assert_eq!(s.pass_environment, vec!["TERM", "LANG"]);
    assert_eq!(s.unset_environment, vec!["FOO"]);
    let nofile = s.limits.get("NOFILE").copied();
    assert_eq!(
        nofile.map(|l| (l.soft, l.hard)),
        Some((Some(1024), Some(4096)))
    );
    assert_eq!(s.nice, Some(-5));
    assert_eq!(s.oom_score_adjust, Some(-900));
    assert!(s.no_new_privileges);
    assert_eq!(s.runtime_directory, vec!["x", "x/y"]);
    assert_eq!(s.runtime_directory_mode, 0o750);
    assert_eq!(s.state_directory_mode, 0o700);
    assert_eq!(s.logs_directory, vec!["x"]);
    assert_eq!(
        s.standard_output,
        StdOutput::Append("/var/log/x.log".into())
    );
    assert_eq!(s.standard_error, Some(StdOutput::Null));
    assert_eq!(s.syslog_identifier.as_deref(), Some("xd"));
}

#[test]
fn timeouts_zero_means_disabled_and_timeoutsec_sets_both() {
    let u = ok("[Service]\nExecStart=/bin/true\nTimeoutSec=0\n");
    assert_eq!(
        (u.service.timeout_start, u.service.timeout_stop),
        (None, None)
    );
    let u = ok("[Service]\nExecStart=/bin/true\nTimeoutSec=7\nTimeoutStopSec=3\n");
    assert_eq!(u.service.timeout_start, Some(Duration::from_secs(7)));
    assert_eq!(u.service.timeout_stop, Some(Duration::from_secs(3)));
    let u = ok("[Service]\nExecStart=/bin/true\nWatchdogSec=0\n");
    assert_eq!(u.service.watchdog, None);
}

#[test]
fn every_type_and_restart_value() {
    for (t, want) in [
        ("simple", ServiceType::Simple),
        ("exec", ServiceType::Exec),
        ("forking", ServiceType::Forking),
        ("oneshot", ServiceType::Oneshot),
        ("notify", ServiceType::Notify),
    ] {
        assert_eq!(
            ok(&format!("[Service]\nType={t}\nExecStart=/bin/true\n"))
                .service
                .service_type,
            want
        );
    }
    for (r, want) in [
        ("no", RestartPolicy::No),
        ("on-success", RestartPolicy::OnSuccess),
        ("on-failure", RestartPolicy::OnFailure),
        ("on-abnormal", RestartPolicy::OnAbnormal),
        ("on-watchdog", RestartPolicy::OnWatchdog),
        ("on-abort", RestartPolicy::OnAbort),
        ("always", RestartPolicy::Always),
    ] {
        assert_eq!(
            ok(&format!("[Service]\nRestart={r}\nExecStart=/bin/true\n"))
                .service
                .restart,
            want
        );
    }
    for (k, want) in [
        ("control-group", KillMode::ControlGroup),
        ("mixed", KillMode::Mixed),
        ("process", KillMode::Process),
        ("none", KillMode::None),
    ] {
        assert_eq!(
            ok(&format!("[Service]\nKillMode={k}\nExecStart=/bin/true\n"))
                .service
                .kill_mode,
            want
        );
    }
}

#[test]
fn standard_output_forms() {
    for (v, want) in [
        ("null", StdOutput::Null),
        ("inherit", StdOutput::Inherit),
        ("journal", StdOutput::Journal),
        ("file:/tmp/o", StdOutput::File("/tmp/o".into())),
        ("append:/tmp/o", StdOutput::Append("/tmp/o".into())),
        ("truncate:/tmp/o", StdOutput::Truncate("/tmp/o".into())),
    ] {
        let u = ok(&format!(
            "[Service]\nExecStart=/bin/true\nStandardOutput={v}\n"
        ));
        assert_eq!(u.service.standard_output, want, "{v}");
    }
    assert!(
        errors("[Service]\nExecStart=/bin/true\nStandardOutput=file:rel\n")[0].contains("absolute")
    );
    assert!(
        errors("[Service]\nExecStart=/bin/true\nStandardOutput=nowhere\n")[0].starts_with("3:16:")
    );
}

#[test]
fn invalid_values_of_enforced_keys_are_errors_with_position() {
    assert_eq!(
        errors("[Service]\nExecStart=/bin/true\nRestart=sometimes\n")[0]
            .split(':')
            .take(2)
            .collect::<Vec<_>>(),
        ["3", "9"]
    );
    assert!(errors("[Service]\nExecStart=/bin/true\nRestartSec=soon\n")[0].contains("time span"));
    assert!(errors("[Service]\nExecStart=/bin/true\nKillSignal=SIGNOPE\n")[0].contains("signal"));
    assert!(errors("[Service]\nExecStart=/bin/true\nUMask=999\n")[0].contains("octal"));
    assert!(
        errors("[Service]\nExecStart=/bin/true\nRemainAfterExit=perhaps\n")[0].contains("boolean")
    );
    assert!(errors("[Service]\nExecStart=/bin/true\nType=daemon\n")[0].contains("service type"));
    assert!(errors("[Service]\nExecStart=/bin/true\nNice=40\n")[0].contains("-20 to 19"));
    assert!(
        errors("[Service]\nExecStart=/bin/true\nLimitNOFILE=many\n")[0].contains("LimitNOFILE")
    );
    assert!(
        errors("[Service]\nExecStart=/bin/true\nWorkingDirectory=relative\n")[0]
            .contains("absolute")
    );
    assert!(
        errors("[Service]\nExecStart=/bin/true\nSuccessExitStatus=300\n")[0].contains("0..255")
    );
    assert!(
        errors("[Service]\nExecStart=/bin/true\nEnvironment=no_equals\n")[0].contains("NAME=value")
    );
    assert!(
        errors("[Unit]\nAfter=not a unit\n[Service]\nExecStart=/bin/true\n")[0]
            .contains("invalid unit name")
    );
    assert!(
        errors("[Service]\nExecStart=/bin/true\nRuntimeDirectory=../escape\n")[0]
            .contains("relative")
    );
}

#[test]
fn unknown_key_is_a_warning_naming_key_and_section() {
    let w = warnings("[Service]\nExecStart=/bin/true\nFrobnicate=1\n");
    assert_eq!(
        w,
        vec!["3:1: unknown key Frobnicate= in section [Service]: ignored"]
    );
    let w = warnings("[Unit]\nExecStart=/bin/true\n[Service]\nExecStart=/bin/true\n");
    assert!(
        w[0].contains("[Unit]") && w[0].contains("belongs in [Service]"),
        "{w:?}"
    );
}

#[test]
fn not_enforced_keys_are_warnings_and_the_unit_loads() {
    let text = "[Service]\nExecStart=/bin/true\nProtectSystem=strict\nPrivateTmp=yes\nSystemCallFilter=@system-service\nProtectHome=yes\nRootDirectory=/srv/root\n";
    let l = load(text);
    assert!(l.unit.is_some());
    let w = warnings(text);
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(
        w.iter().all(|m| m.contains("not enforced by gitproc")),
        "{w:?}"
    );
}

#[test]
fn unknown_section_warns_and_extension_sections_are_kept() {
    // [X-Health] is gitproc's own (section_health.rs); any other X- section is kept raw,
    // unread and never warned about.
    let text = "[Service]\nExecStart=/bin/true\n[Socket]\nListenStream=80\n[X-Custom]\nExec=/bin/check\nInterval=5s\n";
    let w = warnings(text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].starts_with("3:1: unknown section [Socket]"));
    let u = ok(text);
    let h = u.extensions.get("X-Custom").cloned().unwrap_or_default();
    assert_eq!(h.get("Exec"), Some(&vec!["/bin/check".to_string()]));
    assert_eq!(h.get("Interval"), Some(&vec!["5s".to_string()]));
    assert!(u.health.is_none());
    // An unknown key in [X-Health] is a warning naming the section (the unit still loads).
    let text = "[Service]\nExecStart=/bin/true\n[X-Health]\nExec=/bin/check\nInterval=5s\n";
    let w = warnings(text);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("unknown key Interval= in section [X-Health]"),
        "{w:?}"
    );
    assert!(ok(text).health.is_some());
}

#[test]
fn multiple_execstart_only_for_oneshot() {
    let e = errors("[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n");
    assert!(
        e[0].starts_with("3:1:") && e[0].contains("oneshot"),
        "{e:?}"
    );
    let u = ok("[Service]\nType=oneshot\nExecStart=/bin/a\nExecStart=/bin/b\n");
    assert_eq!(u.service.exec_start.len(), 2);
    // An empty ExecStart= resets, so a drop-in can replace the command.
    let u = ok("[Service]\nExecStart=/bin/a\nExecStart=\nExecStart=/bin/b\n");
    assert_eq!(u.service.exec_start[0].path, "/bin/b");
}

#[test]
fn missing_execstart_is_an_error_unless_oneshot_with_execstop() {
    assert!(errors("[Service]\nType=simple\n")[0].contains("no ExecStart="));
    assert!(errors("[Unit]\nDescription=x\n")[0].contains("[Service]"));
    ok("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStop=/bin/true\n");
    assert!(
        errors("[Service]\nType=oneshot\nExecStart=/bin/true\nRestart=always\n")[0]
            .contains("oneshot")
    );
}

#[test]
fn exec_lines_quoting_prefixes_and_specifiers() {
    let u = ok(
        "[Service]\nExecStart=-/usr/sbin/nginx -g 'daemon on; master_process on;' \"a b\" %n %i\n",
    );
    let c = &u.service.exec_start[0];
    assert!(c.flags.ignore_failure);
    assert_eq!(
        c.argv,
        vec![
            "/usr/sbin/nginx",
            "-g",
            "daemon on; master_process on;",
            "a b",
            "t.service",
            ""
        ]
    );
    assert_eq!(c.origin, "t.service:2");
    assert!(errors("[Service]\nExecStart=/bin/echo %Q\n")[0].contains("unknown specifier %Q"));
    let e = errors("[Service]\nExecStart=/bin/echo \"open\n");
    assert!(
        e[0].starts_with("2:21:") && e[0].contains("unterminated"),
        "{e:?}"
    );
}

#[test]
fn variables_expand_from_environment_and_environment_files() {
    let files = |p: &str| match p {
        "/etc/default/app" => Some(b"OPTS=-v -x\nPORT=9\n".to_vec()),
        _ => None,
    };
    let text = "[Service]\nExecStart=/bin/app $OPTS ${PORT} ${NAME} $MISSING :$$\nEnvironment=\"NAME=my app\" PORT=1\nEnvironmentFile=/etc/default/app\nEnvironmentFile=-/etc/default/absent\n";
    let l = parse_unit(
        "a.service",
        "a.service",
        text.as_bytes(),
        &[],
        &ctx(),
        &files,
    );
    let u = l.unit.unwrap_or_else(|| panic!("{:?}", l.diagnostics));
    // Environment files override Environment= (systemd.exec(5)).
    assert_eq!(
        u.service.exec_start[0].argv,
        vec!["/bin/app", "-v", "-x", "9", "my app", ":$"]
    );
    assert_eq!(u.service.environment_files.len(), 2);
    assert!(u.service.environment_files[1].optional);
    assert_eq!(
        u.service.environment_from_files[1],
        ("PORT".to_string(), "9".to_string())
    );
}

#[test]
fn unset_and_pass_environment_affect_expansion() {
    let u = ok(
        "[Service]\nEnvironment=A=1 B=2 C=3\nUnsetEnvironment=A B=9 C=3\nPassEnvironment=FROM_MANAGER\nExecStart=/bin/x $A $B $C $FROM_MANAGER $OTHER\n",
    );
    let c = &u.service.exec_start[0];
    assert_eq!(c.argv, vec!["/bin/x", "2", "$FROM_MANAGER"]);
    assert_eq!(c.runtime_vars, vec!["FROM_MANAGER"]);
}

#[test]
fn colon_prefix_disables_variable_expansion() {
    let u = ok("[Service]\nEnvironment=A=1\nExecStart=:/bin/echo $A ${A}\n");
    assert_eq!(
        u.service.exec_start[0].argv,
        vec!["/bin/echo", "$A", "${A}"]
    );
}

#[test]
fn missing_environment_files() {
    // Relative (in the tree) and not optional: an error; absolute: a warning (host-dependent).
    let e = errors("[Service]\nExecStart=/bin/true\nEnvironmentFile=env/app.env\n");
    assert!(
        e[0].starts_with("3:17:") && e[0].contains("not in the tree"),
        "{e:?}"
    );
    let w = warnings("[Service]\nExecStart=/bin/true\nEnvironmentFile=/nonexistent/gitproc-test\n");
    assert!(w[0].contains("cannot be read"), "{w:?}");
    let l = load("[Service]\nExecStart=/bin/true\nEnvironmentFile=-env/app.env\n");
    assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
}

#[test]
fn environment_file_errors_point_at_their_line_even_with_specifiers() {
    let text = "[Service]\nExecStart=/bin/true\nEnvironmentFile=env/%i\n";
    let l = parse_unit(
        "a@x.service",
        "a@.service",
        text.as_bytes(),
        &[],
        &ctx(),
        &no_files,
    );
    let d = &l.diagnostics[0];
    assert_eq!((d.file.as_str(), d.line, d.column), ("a@.service", 3, 17));
    assert!(d.message.contains("env/x"), "{}", d.message);
}

#[test]
fn unknown_specifier_points_at_the_percent_sign() {
    let e = errors("[Unit]\nDescription=ab %Z\n[Service]\nExecStart=/bin/true\n");
    assert!(e[0].starts_with("2:16:") && e[0].contains("%Z"), "{e:?}");
}

#[test]
fn missing_execstart_points_at_the_service_header() {
    let e = errors("[Unit]\nDescription=x\n\n[Service]\nUser=nobody\n");
    assert!(e[0].starts_with("4:1:"), "{e:?}");
}

#[test]
fn invalid_utf8_is_an_error_with_position() {
    let l = parse_unit(
        "t.service",
        "t.service",
        b"[Service]\nExecStart=/bin/\xc3\x28\n",
        &[],
        &ctx(),
        &no_files,
    );
    assert!(l.unit.is_none());
    let d = &l.diagnostics[0];
    assert_eq!((d.line, d.column, d.severity), (2, 16, Severity::Error));
    assert!(d.message.contains("UTF-8"));
}

#[test]
fn continuation_lines_join() {
    let u = ok("[Service]\nExecStart=/bin/echo one \\\n  two \\\n# a comment inside\n  three\n");
    assert_eq!(
        u.service.exec_start[0].argv,
        vec!["/bin/echo", "one", "two", "three"]
    );
}

#[test]
fn dropins_apply_in_the_given_order_and_are_recorded() {
    let d1 = (
        "t.service.d/10-a.conf".to_string(),
        b"[Service]\nRestart=always\nEnvironment=X=1\n".to_vec(),
    );
    let d2 = (
        "t.service.d/20-b.conf".to_string(),
        b"[Service]\nRestart=on-failure\nExecStart=\nExecStart=/bin/b\n".to_vec(),
    );
    let l = parse_unit(
        "t.service",
        "t.service",
        MIN.as_bytes(),
        &[d1, d2],
        &ctx(),
        &no_files,
    );
    let u = l.unit.unwrap_or_else(|| panic!("{:?}", l.diagnostics));
    assert_eq!(u.service.restart, RestartPolicy::OnFailure);
    assert_eq!(u.service.exec_start.len(), 1);
    assert_eq!(u.service.exec_start[0].path, "/bin/b");
    assert_eq!(
        u.dropins,
        vec!["t.service.d/10-a.conf", "t.service.d/20-b.conf"]
    );
    assert_eq!(
        l.inputs,
        vec![
            "t.service",
            "t.service.d/10-a.conf",
            "t.service.d/20-b.conf"
        ]
    );
}

#[test]
fn a_dropin_error_names_the_dropin_file() {
    let d = (
        "t.service.d/x.conf".to_string(),
        b"[Service]\nKillMode=gently\n".to_vec(),
    );
    let l = parse_unit(
        "t.service",
        "t.service",
        MIN.as_bytes(),
        &[d],
        &ctx(),
        &no_files,
    );
    assert_eq!(l.diagnostics[0].file, "t.service.d/x.conf");
    assert_eq!((l.diagnostics[0].line, l.diagnostics[0].column), (2, 10));
}

#[test]
fn content_hash_is_stable_and_sensitive() {
    let a = load(MIN).content_hash;
    assert_eq!(a, load(MIN).content_hash);
    assert_eq!(a.len(), 32);
    assert_ne!(a, load("[Service]\nExecStart=/bin/false\n").content_hash);
    let d = (
        "t.service.d/x.conf".to_string(),
        b"[Service]\nNice=1\n".to_vec(),
    );
    let with = parse_unit(
        "t.service",
        "t.service",
        MIN.as_bytes(),
        &[d],
        &ctx(),
        &no_files,
    );
    assert_ne!(a, with.content_hash);
    // Pinned: the hash is part of the persisted state, it must not drift between versions.
    assert_eq!(
        parse_unit("x.service", "x.service", b"", &[], &ctx(), &no_files).content_hash,
        load_hash_of_empty_x()
    );
}

/// FNV-1a-128 over the framed parts ("gitproc-unit-v1", "x.service", ""), computed independently.
fn load_hash_of_empty_x() -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    let prime: u128 = 0x0000000001000000000000000000013B;
    let mut feed = |b: &[u8]| {
        for &x in b {
            h ^= u128::from(x);
            h = h.wrapping_mul(prime);
        }
    };
    for part in [&b"gitproc-unit-v1"[..], b"x.service", b""] {
        feed(&(part.len() as u64).to_le_bytes());
        feed(part);
    }
    format!("{h:032x}")
}

fn tree(entries: &[(&str, Option<&str>, Option<&str>)]) -> FileTree {
    let mut t = FileTree::default();
    for (path, file, link) in entries {
        let e = match (file, link) {
            (Some(f), _) => Entry::File(f.as_bytes().to_vec()),
            (None, Some(l)) => Entry::Symlink(l.to_string()),
            _ => continue,
        };
        t.entries.insert(path.to_string(), e);
    }
    t
}

#[test]
fn load_tree_units_dropins_templates_and_isolation() {
    let t = tree(&[
        ("web.service", Some("[Service]\nExecStart=/bin/web\n"), None),
        (
            "web.service.d/20-b.conf",
            Some("[Service]\nRestart=always\n"),
            None,
        ),
        (
            "web.service.d/10-a.conf",
            Some(
                "[Service]\nRestart=on-failure\nEnvironmentFile=env/web\nExecStart=\nExecStart=/bin/web $PORT\n",
            ),
            None,
        ),
        ("web.service.d/notes.txt", Some("ignored"), None),
        ("env/web", Some("PORT=8080\n"), None),
        (
            "broken.service",
            Some("[Service]\nExecStart=/bin/x\nRestart=bogus\n"),
            None,
        ),
        (
            "worker@.service",
            Some("[Unit]\nDescription=worker %i\n[Service]\nExecStart=/bin/work %i\n"),
            None,
        ),
        (
            "worker@.service.d/x.conf",
            Some("[Service]\nNice=5\n"),
            None,
        ),
        ("worker@1.service", None, Some("worker@.service")),
        ("worker@2.service", None, Some("./worker@.service")),
        (
            "worker@2.service.d/y.conf",
            Some("[Service]\nNice=7\n"),
            None,
        ),
        ("alias.service", None, Some("web.service")),
        (
            "sub/nested.service",
            Some("[Service]\nExecStart=/bin/n\n"),
            None,
        ),
        ("README.md", Some("# units"), None),
    ]);
    let loaded: BTreeMap<String, LoadedUnit> = load_tree(&t, &ctx());
    let names: Vec<&str> = loaded.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "alias.service",
            "broken.service",
            "web.service",
            "worker@1.service",
            "worker@2.service"
        ]
    );

    let web = &loaded["web.service"];
    let u = web
        .unit
        .as_ref()
        .unwrap_or_else(|| panic!("{:?}", web.diagnostics));
    assert_eq!(
        u.service.restart,
        RestartPolicy::Always,
        "20-b.conf applies after 10-a.conf"
    );
    assert_eq!(u.service.exec_start[0].argv, vec!["/bin/web", "8080"]);
    assert_eq!(
        web.inputs,
        vec![
            "web.service",
            "web.service.d/10-a.conf",
            "web.service.d/20-b.conf",
            "env/web"
        ]
    );

    assert!(loaded["broken.service"].unit.is_none());
    assert!(loaded["alias.service"].unit.is_none());
    assert!(
        loaded["alias.service"].diagnostics[0]
            .message
            .contains("Alias=")
    );

    let w1 = &loaded["worker@1.service"];
    let u1 = w1
        .unit
        .as_ref()
        .unwrap_or_else(|| panic!("{:?}", w1.diagnostics));
    assert_eq!(u1.name, "worker@1.service");
    assert_eq!(u1.unit.description.as_deref(), Some("worker 1"));
    assert_eq!(u1.service.exec_start[0].argv, vec!["/bin/work", "1"]);
    assert_eq!(u1.service.nice, Some(5));
    assert_eq!(w1.inputs[0], "worker@1.service");
    let u2 = loaded["worker@2.service"]
        .unit
        .as_ref()
        .map(|u| u.service.nice);
    assert_eq!(
        u2,
        Some(Some(7)),
        "instance drop-ins apply after the template's"
    );
    assert_ne!(w1.content_hash, loaded["worker@2.service"].content_hash);
}

#[test]
fn a_bad_unit_never_affects_another() {
    let t = tree(&[
        ("a.service", Some("[Service]\nExecStart=/bin/a\n"), None),
        ("b.service", Some("\u{0}\u{1}garbage[[[\n=\n"), None),
        ("c.service", Some("[Service]\nExecStart=/bin/c\n"), None),
    ]);
    let loaded = load_tree(&t, &ctx());
    assert!(loaded["a.service"].unit.is_some());
    assert!(loaded["b.service"].unit.is_none());
    assert!(loaded["c.service"].unit.is_some());
    let alone = load_tree(
        &tree(&[("a.service", Some("[Service]\nExecStart=/bin/a\n"), None)]),
        &ctx(),
    );
    assert_eq!(alone["a.service"], loaded["a.service"]);
}

#[test]
fn dangling_instance_symlink_is_an_error_for_that_instance() {
    let t = tree(&[("x@1.service", None, Some("x@.service"))]);
    let l = &load_tree(&t, &ctx())["x@1.service"];
    assert!(l.unit.is_none());
    assert!(l.diagnostics[0].message.contains("template x@.service"));
}

#[test]
fn specifiers_user_and_host_come_from_the_manager_not_user_setting() {
    let c = SpecifierContext {
        user_name: "gitproc".into(),
        uid: 999,
        home: "/var/lib/gitproc".into(),
        ..SpecifierContext::default()
    };
    let l = parse_unit(
        "t.service",
        "t.service",
        b"[Service]\nUser=nobody\nExecStart=/bin/echo %u %U %h\n",
        &[],
        &c,
        &no_files,
    );
    let argv = l
        .unit
        .map(|u| u.service.exec_start[0].argv.clone())
        .unwrap_or_default();
    assert_eq!(
        argv,
        vec!["/bin/echo", "gitproc", "999", "/var/lib/gitproc"]
    );
}

#[test]
fn oneshot_has_no_start_timeout_unless_one_is_set() {
    let u = ok("[Service]\nType=oneshot\nExecStart=/bin/true\n");
    assert_eq!(u.service.timeout_start, None);
    let u = ok("[Service]\nType=oneshot\nTimeoutStartSec=5\nExecStart=/bin/true\n");
    assert_eq!(
        u.service.timeout_start,
        Some(std::time::Duration::from_secs(5))
    );
    let u = ok("[Service]\nExecStart=/bin/true\n");
    assert_eq!(
        u.service.timeout_start,
        Some(std::time::Duration::from_secs(90))
    );
}

/// Resource control (systemd.resource-control(5)): systemd's value syntax, enforced (no
/// "not enforced" warning), an invalid value an error naming the key, an empty value a
/// reset, and the legacy names systemd still maps.
#[test]
fn resource_control_values_follow_systemds_syntax() {
    use gitproc::unit::resources::{CpuWeight, MemoryLimit, TasksLimit};
    let u = ok(
        "[Service]\nExecStart=/bin/true\nMemoryMax=32M\nMemoryHigh=50%\nMemoryLow=1G\n\
                MemoryMin=512K\nMemorySwapMax=infinity\nCPUQuota=150%\nCPUWeight=idle\n\
                TasksMax=5\nIOWeight=200\nAllowedCPUs=0-3,5\n",
    );
    let r = &u.service.resources;
    assert_eq!(r.memory_max, Some(MemoryLimit::Bytes(32 << 20)));
    assert_eq!(r.memory_high, Some(MemoryLimit::Permyriad(5000)));
    assert_eq!(r.memory_low, Some(MemoryLimit::Bytes(1 << 30)));
    assert_eq!(r.memory_min, Some(MemoryLimit::Bytes(512 << 10)));
    assert_eq!(r.memory_swap_max, Some(MemoryLimit::Infinity));
    assert_eq!(r.cpu_quota_per_sec, Some(Duration::from_millis(1500)));
    assert_eq!(r.cpu_weight, Some(CpuWeight::Idle));
    assert_eq!(r.tasks_max, Some(TasksLimit::Count(5)));
    assert_eq!(r.io_weight, Some(200));
    assert_eq!(r.allowed_cpus, Some(vec![(0, 3), (5, 5)]));
    let w = warnings("[Service]\nExecStart=/bin/true\nMemoryMax=1G\nTasksMax=infinity\n");
    assert!(w.iter().all(|w| !w.contains("not enforced")), "{w:?}");

    let u = ok(
        "[Service]\nExecStart=/bin/true\nMemoryLimit=1G\nCPUShares=512\n\
                BlockIOWeight=100\nTasksMax=10%\nMemoryMax=2G\nMemoryMax=\n",
    );
    let r = &u.service.resources;
    assert_eq!(r.memory_max, None, "an empty value resets");
    assert_eq!(r.cpu_shares, Some(512));
    assert_eq!(r.blockio_weight, Some(100));
    assert_eq!(r.tasks_max, Some(TasksLimit::Permyriad(1000)));

    for (line, key) in [
        ("MemoryMax=lots", "MemoryMax="),
        ("MemoryMax=150%", "MemoryMax="),
        ("CPUQuota=20", "CPUQuota="),
        ("CPUWeight=0", "CPUWeight="),
        ("TasksMax=0", "TasksMax="),
        ("AllowedCPUs=3-1", "AllowedCPUs="),
        ("IOWeight=10001", "IOWeight="),
    ] {
        let e = errors(&format!("[Service]\nExecStart=/bin/true\n{line}\n"));
        assert!(e.iter().any(|e| e.contains(key)), "{line}: {e:?}");
    }
}

/// Debian's tor@default.service: `PermissionsStartOnly=yes` with a `CapabilityBoundingSet=`
/// that lacks CAP_CHOWN and an `ExecStartPre=/usr/bin/install -o debian-tor ...`: every
/// command but `ExecStart=` is privileged, as with a `+` prefix; `!` keeps its meaning.
#[test]
fn permissions_start_only_makes_every_command_but_exec_start_privileged() {
    let u = ok("[Service]\nPermissionsStartOnly=yes\nUser=nobody\n\
                ExecStartPre=/bin/true pre\nExecStartPre=!/bin/true bang\n\
                ExecStart=/bin/sleep 1\nExecReload=/bin/true\nExecStopPost=/bin/true\n");
    let s = &u.service;
    assert!(s.permissions_start_only);
    assert!(s.exec_start_pre[0].flags.full_privileges);
    assert!(!s.exec_start_pre[1].flags.full_privileges && s.exec_start_pre[1].flags.no_setuid);
    assert!(
        !s.exec_start[0].flags.full_privileges,
        "ExecStart= keeps User="
    );
    assert!(s.exec_reload[0].flags.full_privileges && s.exec_stop_post[0].flags.full_privileges);
    let plain = ok("[Service]\nUser=nobody\nExecStartPre=/bin/true\nExecStart=/bin/sleep 1\n");
    assert!(!plain.service.exec_start_pre[0].flags.full_privileges);
}

#[test]
fn on_failure_and_on_success_take_unit_names_with_specifiers() {
    let u = ok(
        "[Unit]\nOnFailure=notify@%n.service alert.service\nOnSuccess=done.service\nOnFailureJobMode=replace\n[Service]\nExecStart=/bin/true\n",
    );
    assert_eq!(
        u.unit.on_failure,
        vec!["notify@t.service.service", "alert.service"]
    );
    assert_eq!(u.unit.on_success, vec!["done.service"]);
    let w = warnings(
        "[Unit]\nOnFailure=a.service\nOnFailureJobMode=replace\n[Service]\nExecStart=/bin/true\n",
    );
    assert!(
        w.iter()
            .any(|m| m.contains("OnFailureJobMode") && m.contains("not enforced")),
        "{w:?}"
    );
    assert!(!w.iter().any(|m| m.contains("OnFailure=")), "{w:?}");
}

#[test]
fn a_template_named_by_a_hook_is_instantiated_without_a_symlink() {
    let t = tree(&[
        (
            "web.service",
            Some("[Unit]\nOnFailure=notify@%n.service\n[Service]\nExecStart=/bin/false\n"),
            None,
        ),
        (
            "notify@.service",
            Some(
                "[Unit]\nOnFailure=notify@%n.service\n[Service]\nType=oneshot\nExecStart=/bin/echo %i\n",
            ),
            None,
        ),
    ]);
    let loaded = load_tree(&t, &ctx());
    let hook = loaded
        .get("notify@web.service.service")
        .and_then(|l| l.unit.as_ref())
        .unwrap_or_else(|| panic!("the hook instance is loaded: {loaded:#?}"));
    assert_eq!(
        hook.service.exec_start[0].argv,
        vec!["/bin/echo", "web.service"]
    );
    // One round only: the instance's own hook is not instantiated in turn.
    assert_eq!(loaded.len(), 2, "{:?}", loaded.keys().collect::<Vec<_>>());
}

#[test]
fn hooks_of_a_timer_are_not_enforced() {
    let t = tree(&[(
        "tick.timer",
        Some("[Unit]\nOnFailure=alert.service\n[Timer]\nOnCalendar=daily\n"),
        None,
    )]);
    let timers = gitproc::unit::load::load_timers(&t, &ctx());
    let l = &timers["tick.timer"];
    assert!(
        l.diagnostics
            .iter()
            .any(|d| d.message.contains("not enforced") && d.message.contains(".timer")),
        "{:#?}",
        l.diagnostics
    );
    assert!(
        l.unit
            .as_ref()
            .is_some_and(|u| u.unit.on_failure.is_empty())
    );
}
