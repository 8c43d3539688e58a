//! The per-service state machine against a simulated clock: no process is spawned, time is
//! an `Instant` base plus offsets, every test runs in microseconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitproc::service::{
    ActiveState, Effect, Event, ExecKind, ExitStatus, KillTarget, Lifecycle, NotifyMessage,
    ProcessRole, Service, ServiceResult, SubState,
};
use gitproc::unit::model::{
    ExecCommand, ExecFlags, KillMode, RestartPolicy, ServiceSection, ServiceType, Unit, UnitSection,
};

const TERM: i32 = libc::SIGTERM;
const KILL: i32 = libc::SIGKILL;

fn cmd(line: &str) -> ExecCommand {
    let (ignore, line) = match line.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let argv: Vec<String> = line.split_whitespace().map(String::from).collect();
    ExecCommand {
        flags: ExecFlags {
            ignore_failure: ignore,
            ..Default::default()
        },
        path: argv[0].clone(),
        argv,
        origin: "test.service:1".to_string(),
        ..Default::default()
    }
}

fn unit(service: ServiceSection) -> Unit {
    Unit {
        name: "test.service".to_string(),
        path: "units/test.service".to_string(),
        service,
        ..Default::default()
    }
}

fn simple(start: &str) -> ServiceSection {
    ServiceSection {
        exec_start: vec![cmd(start)],
        ..Default::default()
    }
}

/// A simulated event loop: performs `Spawn` effects by handing out pids (or failing them),
/// records everything else, and owns the clock.
struct Sim {
    svc: Service,
    base: Instant,
    now: Instant,
    next_pid: i32,
    /// (role, path, pid) of every spawn, in order.
    spawns: Vec<(ProcessRole, String, i32)>,
    effects: Vec<Effect>,
    /// Paths whose spawn fails (like a missing binary).
    failing: Vec<String>,
}

impl Sim {
    fn new(u: Unit) -> Sim {
        let base = Instant::now();
        Sim {
            svc: Service::new(Arc::new(u)),
            base,
            now: base,
            next_pid: 100,
            spawns: Vec::new(),
            effects: Vec::new(),
            failing: Vec::new(),
        }
    }

    fn started(u: Unit) -> Sim {
        let mut sim = Sim::new(u);
        sim.send(Event::Start);
        sim
    }

    /// Feeds one event and performs spawns as the loop would (answering right away).
    fn send(&mut self, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        let mut queue = vec![event];
        while let Some(ev) = queue.pop() {
            for fx in self.svc.on_event(ev, self.now) {
                if let Effect::Spawn { role, command } = &fx {
                    if self.failing.contains(&command.path) {
                        queue.push(Event::SpawnFailed {
                            role: *role,
                            error: format!(
                                "exec failed: {}: No such file or directory",
                                command.path
                            ),
                            exit_status: gitproc::service::exit_code::EXEC,
                        });
                    } else {
                        let pid = self.next_pid;
                        self.next_pid += 1;
                        self.spawns.push((*role, command.path.clone(), pid));
                        queue.push(Event::Spawned { role: *role, pid });
                    }
                }
                out.push(fx);
            }
        }
        self.effects.extend(out.iter().cloned());
        out
    }

    fn at(&self) -> Duration {
        self.now - self.base
    }

    /// Moves the clock by `d`, firing every deadline on the way, as the loop's select would.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(deadline) = self.svc.next_deadline() {
            if deadline > end {
                break;
            }
            self.now = self.now.max(deadline);
            self.send(Event::Timer);
        }
        self.now = end;
    }

    /// Jumps to the next deadline and fires it; returns how far it was.
    fn fire_next(&mut self) -> Duration {
        let deadline = self.svc.next_deadline().expect("a deadline is armed");
        let waited = deadline.saturating_duration_since(self.now);
        self.now = self.now.max(deadline);
        self.send(Event::Timer);
        waited
    }

    fn main_pid(&self) -> i32 {
        self.svc.status().main_pid.expect("a main pid")
    }

    fn control_pid(&self) -> i32 {
        self.svc.status().control_pid.expect("a control pid")
    }

    fn exit_main(&mut self, status: ExitStatus) -> Vec<Effect> {
        let pid = self.main_pid();
        self.send(Event::Exited { pid, status })
    }

    fn exit_control(&mut self, status: ExitStatus) -> Vec<Effect> {
        let pid = self.control_pid();
        self.send(Event::Exited { pid, status })
    }

    fn notify(&mut self, datagram: &str) -> Vec<Effect> {
        let pid = self.svc.status().main_pid.unwrap_or(1);
        self.send(Event::Notify {
            pid,
            message: NotifyMessage::parse(datagram.as_bytes()),
        })
    }

    fn state(&self) -> (ActiveState, SubState, ServiceResult) {
        let s = self.svc.status();
        (s.active_state, s.sub_state, s.result)
    }

    fn spawned_paths(&self) -> Vec<&str> {
        self.spawns.iter().map(|(_, p, _)| p.as_str()).collect()
    }

    fn signals(fx: &[Effect]) -> Vec<(KillTarget, i32)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Signal { target, signal } => Some((*target, *signal)),
                _ => None,
            })
            .collect()
    }

    fn lifecycles(&self) -> Vec<Lifecycle> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::Lifecycle { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect()
    }
}

/// Signals sent, in order.
type Signals = Vec<(KillTarget, i32)>;

fn signaled(signal: i32) -> ExitStatus {
    ExitStatus::Signaled {
        signal,
        core_dumped: false,
    }
}

// ----- Restart= table (systemd.service(5), Table 2): one test per row -------------------

const POLICIES: [RestartPolicy; 7] = [
    RestartPolicy::No,
    RestartPolicy::Always,
    RestartPolicy::OnSuccess,
    RestartPolicy::OnFailure,
    RestartPolicy::OnAbnormal,
    RestartPolicy::OnAbort,
    RestartPolicy::OnWatchdog,
];

/// Runs `cause` against every policy and checks which restart, in POLICIES order.
fn check_row(name: &str, expected: [bool; 7], cause: impl Fn(&mut Sim)) {
    for (policy, want) in POLICIES.iter().zip(expected) {
        let mut s = simple("/bin/svc");
        s.restart = *policy;
        let mut sim = Sim::started(unit(s.clone()));
        // Let the main process count as started by ExecStart (no ExecStartPost).
        cause(&mut sim);
        let (_, sub, result) = sim.state();
        let restarts = sub == SubState::AutoRestart;
        assert_eq!(
            restarts, want,
            "row {name:?}, Restart={policy:?}: sub-state {sub}, result {result}"
        );
        if restarts {
            sim.fire_next();
            assert_eq!(
                sim.state().0,
                ActiveState::Active,
                "restarted under {policy:?}"
            );
            assert_eq!(sim.svc.status().n_restarts, 1);
        } else {
            assert_eq!(
                sim.svc.next_deadline(),
                None,
                "nothing scheduled under {policy:?}"
            );
        }
    }
}

//                                    no     always on-succ on-fail on-abn on-abort on-wd
#[test]
fn restart_row_clean_exit_code() {
    check_row(
        "exit 0",
        [false, true, true, false, false, false, false],
        |sim| {
            sim.exit_main(ExitStatus::Exited(0));
            assert_eq!(sim.state().2, ServiceResult::Success);
        },
    );
}

#[test]
fn restart_row_clean_signal() {
    check_row(
        "SIGTERM",
        [false, true, true, false, false, false, false],
        |sim| {
            sim.exit_main(signaled(TERM));
            assert_eq!(sim.state().2, ServiceResult::Success);
        },
    );
}

#[test]
fn restart_row_unclean_exit_code() {
    check_row(
        "exit 1",
        [false, true, false, true, false, false, false],
        |sim| {
            sim.exit_main(ExitStatus::Exited(1));
            assert_eq!(sim.state().2, ServiceResult::ExitCode);
        },
    );
}

#[test]
fn restart_row_unclean_signal() {
    check_row(
        "SIGKILL",
        [false, true, false, true, true, true, false],
        |sim| {
            sim.exit_main(signaled(KILL));
            assert_eq!(sim.state().2, ServiceResult::Signal);
        },
    );
    check_row(
        "core dump",
        [false, true, false, true, true, true, false],
        |sim| {
            sim.exit_main(ExitStatus::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: true,
            });
            assert_eq!(sim.state().2, ServiceResult::CoreDump);
            assert_eq!(sim.svc.status().exec_main_code, Some("dumped"));
        },
    );
}

#[test]
fn restart_row_timeout() {
    for (policy, want) in POLICIES
        .iter()
        .zip([false, true, false, true, true, false, false])
    {
        let mut s = simple("/bin/notifier");
        s.service_type = ServiceType::Notify;
        s.restart = *policy;
        s.timeout_start = Some(Duration::from_secs(3));
        let mut sim = Sim::started(unit(s));
        assert_eq!(sim.state().1, SubState::Start);
        sim.fire_next(); // TimeoutStartSec
        assert_eq!(sim.state().1, SubState::StopSigterm);
        sim.exit_main(signaled(TERM));
        let (_, sub, result) = sim.state();
        assert_eq!(result, ServiceResult::Timeout, "{policy:?}");
        assert_eq!(
            sub == SubState::AutoRestart,
            want,
            "timeout, Restart={policy:?}: {sub}"
        );
    }
}

#[test]
fn restart_row_watchdog() {
    for (policy, want) in POLICIES
        .iter()
        .zip([false, true, false, true, true, false, true])
    {
        let mut s = simple("/bin/svc");
        s.restart = *policy;
        s.watchdog = Some(Duration::from_secs(2));
        let mut sim = Sim::started(unit(s));
        let main = sim.main_pid();
        assert_eq!(sim.fire_next(), Duration::from_secs(2));
        let fx = sim.effects.clone();
        assert!(
            Sim::signals(&fx).contains(&(KillTarget::Group, libc::SIGABRT)),
            "watchdog kills with SIGABRT"
        );
        sim.send(Event::Exited {
            pid: main,
            status: ExitStatus::Signaled {
                signal: libc::SIGABRT,
                core_dumped: true,
            },
        });
        let (_, sub, result) = sim.state();
        assert_eq!(result, ServiceResult::Watchdog, "{policy:?}");
        assert_eq!(
            sub == SubState::AutoRestart,
            want,
            "watchdog, Restart={policy:?}: {sub}"
        );
    }
}

#[test]
fn restart_prevent_and_force_exit_status() {
    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::Always;
    s.restart_prevent_exit_status.codes = vec![42];
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(42));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );

    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::No;
    s.restart_force_exit_status.codes = vec![0];
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

#[test]
fn success_exit_status_makes_an_exit_clean() {
    let mut s = simple("/usr/bin/java");
    s.restart = RestartPolicy::OnFailure;
    s.success_exit_status.codes = vec![143];
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(143));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(sim.svc.status().exec_main_status, Some(143));
}

#[test]
fn oneshot_sigterm_is_not_clean() {
    let mut s = simple("/bin/job");
    s.service_type = ServiceType::Oneshot;
    s.restart = RestartPolicy::OnFailure;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().2, ServiceResult::Signal);
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

// ----- backoff and start limits ----------------------------------------------------------

fn crash_looper() -> ServiceSection {
    let mut s = simple("/bin/crash");
    s.restart = RestartPolicy::Always;
    s.restart_sec = Duration::from_millis(100);
    s.restart_steps = 4;
    s.restart_max_delay = Some(Duration::from_millis(1600));
    s
}

fn no_start_limit(s: ServiceSection) -> Unit {
    let mut u = unit(s);
    u.unit = UnitSection {
        start_limit_interval: Duration::ZERO,
        ..Default::default()
    };
    u
}

#[test]
fn backoff_grows_to_the_maximum() {
    let mut sim = Sim::started(no_start_limit(crash_looper()));
    let mut delays = Vec::new();
    for _ in 0..7 {
        sim.exit_main(ExitStatus::Exited(1));
        delays.push(sim.fire_next().as_millis());
        assert_eq!(sim.state().1, SubState::Running);
    }
    assert_eq!(delays, vec![100, 200, 400, 800, 1600, 1600, 1600]);
    assert_eq!(sim.svc.status().n_restarts, 7);
}

#[test]
fn backoff_resets_once_the_service_stayed_up() {
    let mut sim = Sim::started(no_start_limit(crash_looper()));
    for _ in 0..4 {
        sim.exit_main(ExitStatus::Exited(1));
        sim.fire_next();
    }
    // Up 5 s: less than the stay-up period (max(1.6 s, 10 s)): the streak goes on.
    sim.advance(Duration::from_secs(5));
    sim.exit_main(ExitStatus::Exited(1));
    assert_eq!(sim.fire_next().as_millis(), 1600);
    // Up 10 s: the streak is over, back to RestartSec=.
    sim.advance(Duration::from_secs(10));
    sim.exit_main(ExitStatus::Exited(1));
    assert_eq!(sim.fire_next().as_millis(), 100);
    sim.exit_main(ExitStatus::Exited(1));
    assert_eq!(sim.fire_next().as_millis(), 200);
    // n_restarts keeps counting across streaks.
    assert_eq!(sim.svc.status().n_restarts, 7);
}

#[test]
fn start_limit_ends_in_failed_start_limit_hit() {
    let mut s = simple("/bin/crash");
    s.restart = RestartPolicy::Always;
    s.restart_sec = Duration::ZERO;
    let mut u = unit(s);
    u.unit.start_limit_burst = 3;
    u.unit.start_limit_interval = Duration::from_secs(10);
    let mut sim = Sim::started(u);
    for _ in 0..2 {
        sim.exit_main(ExitStatus::Exited(1));
        sim.fire_next();
        assert_eq!(sim.state().1, SubState::Running);
    }
    // The 4th start within 10 s is refused.
    sim.exit_main(ExitStatus::Exited(1));
    sim.fire_next();
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::StartLimitHit
        )
    );
    assert_eq!(sim.svc.next_deadline(), None, "no more automatic restarts");
    assert_eq!(sim.spawns.len(), 3, "no CPU burnt");
    let err = sim.svc.status().error.unwrap_or_default();
    assert!(
        err.contains("start limit hit") && err.contains("gitproc start"),
        "{err}"
    );
    // An operator start resets the limit.
    sim.send(Event::Start);
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Running,
            ServiceResult::Success
        )
    );
}

#[test]
fn start_limit_window_slides() {
    let mut s = simple("/bin/crash");
    s.restart = RestartPolicy::Always;
    s.restart_sec = Duration::from_secs(4);
    let mut u = unit(s);
    u.unit.start_limit_burst = 2;
    u.unit.start_limit_interval = Duration::from_secs(10);
    let mut sim = Sim::started(u);
    // Starts at 0 s, 4 s, 8 s (refused: 3 within 10 s)... but with 4 s between starts and
    // a burst of 2, the start at 12 s is fine again once 0 s and 4 s... keep it exact:
    sim.exit_main(ExitStatus::Exited(1));
    sim.fire_next(); // start #2 at 4 s
    sim.exit_main(ExitStatus::Exited(1));
    sim.advance(Duration::from_secs(7)); // restart due at 8 s; 0 s and 4 s are within 10 s
    assert_eq!(sim.state().2, ServiceResult::StartLimitHit);
    // With starts 6 s apart the window always holds at most 2.
    let mut s = simple("/bin/crash");
    s.restart = RestartPolicy::Always;
    s.restart_sec = Duration::from_secs(6);
    let mut u = unit(s);
    u.unit.start_limit_burst = 2;
    u.unit.start_limit_interval = Duration::from_secs(10);
    let mut sim = Sim::started(u);
    for _ in 0..5 {
        sim.exit_main(ExitStatus::Exited(1));
        sim.fire_next();
        assert_eq!(sim.state().1, SubState::Running, "at {:?}", sim.at());
    }
}

// ----- stopping -----------------------------------------------------------------------------

#[test]
fn operator_stop_never_restarts() {
    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::Always;
    let mut sim = Sim::started(unit(s));
    let fx = sim.send(Event::Stop);
    assert_eq!(Sim::signals(&fx), vec![(KillTarget::Group, TERM)]);
    assert_eq!(sim.state().1, SubState::StopSigterm);
    // Even a death by an unclean signal during the stop does not restart.
    sim.exit_main(signaled(KILL));
    assert_eq!(sim.state().1, SubState::Failed);
    assert_eq!(sim.svc.next_deadline(), None);
    // And a stop while waiting to restart cancels the restart.
    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::Always;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(sim.state().1, SubState::AutoRestart);
    sim.send(Event::Stop);
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(sim.svc.next_deadline(), None);
}

#[test]
fn a_clean_stop_ends_dead_with_success() {
    let mut sim = Sim::started(unit(simple("/bin/svc")));
    sim.send(Event::Stop);
    sim.exit_main(signaled(TERM));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(
        sim.lifecycles(),
        vec![
            Lifecycle::Starting,
            Lifecycle::Started,
            Lifecycle::Stopping,
            Lifecycle::Stopped
        ]
    );
    assert!(sim.effects.contains(&Effect::StatusChanged));
}

#[test]
fn sigterm_ignored_escalates_to_sigkill_after_timeout_stop() {
    let mut s = simple("/bin/stubborn");
    s.timeout_stop = Some(Duration::from_secs(5));
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    assert_eq!(sim.state().1, SubState::StopSigterm);
    sim.advance(Duration::from_millis(4999));
    assert_eq!(
        sim.state().1,
        SubState::StopSigterm,
        "not before TimeoutStopSec"
    );
    let before = sim.effects.len();
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.state().1, SubState::StopSigkill);
    assert_eq!(
        Sim::signals(&sim.effects[before..]),
        vec![(KillTarget::Group, KILL)]
    );
    sim.exit_main(signaled(KILL));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
}

#[test]
fn send_sigkill_no_gives_up_without_sigkill() {
    let mut s = simple("/bin/stubborn");
    s.timeout_stop = Some(Duration::from_secs(5));
    s.send_sigkill = false;
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    sim.advance(Duration::from_secs(6));
    assert!(
        !Sim::signals(&sim.effects)
            .iter()
            .any(|(_, sig)| *sig == KILL)
    );
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
}

fn stop_signals(mode: KillMode, sighup: bool) -> (Signals, Signals, SubState) {
    let mut s = simple("/bin/svc");
    s.kill_mode = mode;
    s.send_sighup = sighup;
    s.timeout_stop = Some(Duration::from_secs(1));
    let mut sim = Sim::started(unit(s));
    let first = Sim::signals(&sim.send(Event::Stop));
    let sub = sim.state().1;
    let before = sim.effects.len();
    sim.advance(Duration::from_secs(1));
    let second = Sim::signals(&sim.effects[before..]);
    (first, second, sub)
}

#[test]
fn kill_mode_control_group_signals_the_group() {
    let (first, second, _) = stop_signals(KillMode::ControlGroup, false);
    assert_eq!(first, vec![(KillTarget::Group, TERM)]);
    assert_eq!(second, vec![(KillTarget::Group, KILL)]);
}

#[test]
fn kill_mode_mixed_terms_the_main_and_kills_the_group() {
    let (first, second, _) = stop_signals(KillMode::Mixed, false);
    assert_eq!(first, vec![(KillTarget::Main(100), TERM)]);
    assert_eq!(second, vec![(KillTarget::Group, KILL)]);
}

#[test]
fn kill_mode_mixed_kills_the_rest_once_the_main_is_gone() {
    let mut s = simple("/bin/svc");
    s.kill_mode = KillMode::Mixed;
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    let fx = sim.exit_main(signaled(TERM));
    assert_eq!(Sim::signals(&fx), vec![(KillTarget::Group, KILL)]);
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
}

#[test]
fn exec_stop_post_leftovers_get_the_final_sigterm() {
    let mut s = simple("/bin/svc");
    s.exec_stop_post = vec![cmd("/bin/cleanup")];
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().1, SubState::StopPost);
    let fx = sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(Sim::signals(&fx), vec![(KillTarget::Group, TERM)]);
    assert_eq!(sim.state().1, SubState::Dead);
}

#[test]
fn kill_mode_process_signals_the_main_only() {
    let (first, second, _) = stop_signals(KillMode::Process, false);
    assert_eq!(first, vec![(KillTarget::Main(100), TERM)]);
    assert_eq!(second, vec![(KillTarget::Main(100), KILL)]);
}

#[test]
fn kill_mode_none_signals_nothing_and_forgets() {
    let (first, second, sub) = stop_signals(KillMode::None, false);
    assert!(first.is_empty() && second.is_empty());
    assert_eq!(sub, SubState::Dead);
}

#[test]
fn send_sighup_follows_the_kill_signal() {
    let (first, _, _) = stop_signals(KillMode::ControlGroup, true);
    assert_eq!(
        first,
        vec![(KillTarget::Group, TERM), (KillTarget::Group, libc::SIGHUP)]
    );
}

#[test]
fn exec_stop_runs_first_then_the_remaining_get_the_kill_signal() {
    let mut s = simple("/bin/svc");
    s.exec_stop = vec![cmd("/bin/svc-stop")];
    s.exec_stop_post = vec![cmd("/bin/cleanup")];
    let mut sim = Sim::started(unit(s));
    let fx = sim.send(Event::Stop);
    assert!(Sim::signals(&fx).is_empty(), "ExecStop= first");
    assert_eq!(sim.state().1, SubState::Stop);
    assert_eq!(
        sim.svc.role_of(sim.control_pid()),
        Some(ProcessRole::Control(ExecKind::Stop))
    );
    // The main exits while ExecStop= runs: the machine waits for ExecStop=.
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().1, SubState::Stop);
    sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(sim.state().1, SubState::StopPost);
    sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(
        sim.spawned_paths(),
        vec!["/bin/svc", "/bin/svc-stop", "/bin/cleanup"]
    );
}

#[test]
fn exec_stop_timeout_goes_to_sigterm() {
    let mut s = simple("/bin/svc");
    s.exec_stop = vec![cmd("/bin/hang")];
    s.timeout_stop = Some(Duration::from_secs(2));
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    let ctl = sim.control_pid();
    sim.fire_next();
    assert_eq!(sim.state().1, SubState::StopSigterm);
    let sigs = Sim::signals(&sim.effects);
    assert!(sigs.contains(&(KillTarget::Control(ctl), KILL)), "{sigs:?}");
    assert!(sigs.contains(&(KillTarget::Group, TERM)), "{sigs:?}");
}

#[test]
fn operator_restart_stops_then_starts_without_counting() {
    let mut sim = Sim::started(unit(simple("/bin/svc")));
    sim.send(Event::Restart);
    assert_eq!(sim.state().1, SubState::StopSigterm);
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.spawns.len(), 2);
    assert_eq!(sim.svc.status().n_restarts, 0);
}

// ----- service types ------------------------------------------------------------------------

#[test]
fn oneshot_runs_every_exec_start_in_order_and_remains() {
    let mut s = ServiceSection {
        service_type: ServiceType::Oneshot,
        exec_start: vec![cmd("/bin/one"), cmd("/bin/two")],
        remain_after_exit: true,
        ..Default::default()
    };
    let mut sim = Sim::started(unit(s.clone()));
    assert_eq!(sim.state().0, ActiveState::Activating);
    assert_eq!(sim.spawned_paths(), vec!["/bin/one"]);
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(sim.state().0, ActiveState::Activating);
    assert_eq!(sim.spawned_paths(), vec!["/bin/one", "/bin/two"]);
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Exited,
            ServiceResult::Success
        )
    );
    // Stopping an exited oneshot needs no signal wait.
    sim.send(Event::Stop);
    assert_eq!(sim.state().1, SubState::Dead);

    s.remain_after_exit = false;
    let mut sim = Sim::started(unit(s.clone()));
    sim.exit_main(ExitStatus::Exited(0));
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );

    // A failing line stops the sequence; with `-` it is ignored.
    let mut sim = Sim::started(unit(s.clone()));
    sim.exit_main(ExitStatus::Exited(3));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );
    assert_eq!(sim.spawns.len(), 1);
    s.exec_start = vec![cmd("-/bin/one"), cmd("/bin/two")];
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(3));
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(sim.svc.status().exec_main_status, Some(0));
}

#[test]
fn forking_reads_the_pid_file_and_supervises_that_pid() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    s.pid_file = Some("/run/daemon.pid".to_string());
    s.restart = RestartPolicy::OnFailure;
    let mut sim = Sim::started(unit(s));
    assert_eq!(
        sim.state().1,
        SubState::Start,
        "activating until the parent exits"
    );
    let fx = sim.exit_main(ExitStatus::Exited(0));
    assert!(fx.contains(&Effect::ReadPidFile {
        path: "/run/daemon.pid".to_string()
    }));
    // Not written yet: read again a little later.
    sim.send(Event::PidFile(Err(
        "/run/daemon.pid: No such file or directory".into(),
    )));
    assert_eq!(sim.state().1, SubState::Start);
    let waited = sim.fire_next();
    assert!(waited <= Duration::from_millis(100), "{waited:?}");
    assert!(matches!(
        sim.effects.last(),
        Some(Effect::ReadPidFile { .. })
    ));
    sim.send(Event::PidFile(Ok(4242)));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Running,
            ServiceResult::Success
        )
    );
    assert_eq!(sim.svc.role_of(4242), Some(ProcessRole::Main));
    // The daemon (not our child: reaped as a subreaper orphan) dies of SIGKILL: restart.
    sim.send(Event::Exited {
        pid: 4242,
        status: signaled(KILL),
    });
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

#[test]
fn forking_pid_file_never_written_times_out() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    s.pid_file = Some("/run/daemon.pid".to_string());
    s.timeout_start = Some(Duration::from_secs(1));
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(0));
    for _ in 0..100 {
        if sim.state().1 != SubState::Start {
            break;
        }
        sim.send(Event::PidFile(Err(
            "/run/daemon.pid: No such file or directory".into(),
        )));
        sim.fire_next();
    }
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
    let err = sim.svc.status().error.unwrap_or_default();
    assert!(err.contains("/run/daemon.pid"), "{err}");
}

#[test]
fn forking_without_pid_file_runs_without_a_main_pid() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    s.guess_main_pid = false;
    let mut sim = Sim::started(unit(s));
    let fx = sim.exit_main(ExitStatus::Exited(0));
    assert!(
        !fx.contains(&Effect::GuessMainPid),
        "GuessMainPID=no: {fx:?}"
    );
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.svc.status().main_pid, None);
    let fx = sim.send(Event::Stop);
    assert_eq!(Sim::signals(&fx), vec![(KillTarget::Group, TERM)]);
    assert_eq!(sim.state().1, SubState::Dead);
}

#[test]
fn forking_without_pid_file_guesses_the_main_pid_and_restarts_on_its_death() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    s.restart = RestartPolicy::OnFailure;
    let mut sim = Sim::started(unit(s));
    let fx = sim.exit_main(ExitStatus::Exited(0));
    assert!(fx.contains(&Effect::GuessMainPid), "{fx:?}");
    assert_eq!(sim.state().1, SubState::Start, "activating until the guess");
    sim.send(Event::MainPidGuessed(Some(4321)));
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.main_pid(), 4321);
    sim.exit_main(signaled(KILL));
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

#[test]
fn forking_without_pid_file_and_no_guess_runs_without_a_main_pid() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(0));
    sim.send(Event::MainPidGuessed(None));
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.svc.status().main_pid, None);
    // A late answer (another run's) changes nothing.
    assert!(sim.send(Event::MainPidGuessed(Some(99))).is_empty());
    assert_eq!(sim.svc.status().main_pid, None);
}

#[test]
fn forking_parent_failure_fails() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(1));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );
}

fn notify_unit() -> ServiceSection {
    let mut s = simple("/bin/notifier");
    s.service_type = ServiceType::Notify;
    s.timeout_start = Some(Duration::from_secs(5));
    s
}

#[test]
fn notify_is_activating_until_ready() {
    let mut sim = Sim::started(unit(notify_unit()));
    sim.advance(Duration::from_secs(4));
    assert_eq!(sim.state().0, ActiveState::Activating);
    sim.notify("STATUS=warming up");
    assert_eq!(sim.svc.status().status_text.as_deref(), Some("warming up"));
    sim.notify("READY=1\nSTATUS=serving");
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Running,
            ServiceResult::Success
        )
    );
    assert_eq!(sim.svc.status().status_text.as_deref(), Some("serving"));
    assert_eq!(sim.svc.status().active_enter, Some(sim.now));
    // No timeout once running.
    assert_eq!(sim.svc.next_deadline(), None);
}

#[test]
fn notify_never_ready_hits_timeout_start() {
    let mut sim = Sim::started(unit(notify_unit()));
    let main = sim.main_pid();
    assert_eq!(sim.fire_next(), Duration::from_secs(5));
    assert_eq!(sim.state().1, SubState::StopSigterm);
    sim.send(Event::Exited {
        pid: main,
        status: signaled(TERM),
    });
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
    let err = sim.svc.status().error.unwrap_or_default();
    assert!(err.contains("TimeoutStartSec"), "{err}");
}

#[test]
fn notify_extend_timeout_usec_pushes_the_deadline() {
    let mut sim = Sim::started(unit(notify_unit()));
    sim.advance(Duration::from_secs(4));
    sim.notify("EXTEND_TIMEOUT_USEC=3000000");
    sim.advance(Duration::from_secs(2)); // 6 s: past 5 s, within 4 + 3
    assert_eq!(sim.state().1, SubState::Start);
    sim.advance(Duration::from_secs(1)); // 7 s
    assert_eq!(sim.state().1, SubState::StopSigterm);
}

#[test]
fn notify_exit_before_ready_is_a_protocol_failure() {
    let mut sim = Sim::started(unit(notify_unit()));
    sim.exit_main(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Protocol
        )
    );
}

#[test]
fn notify_mainpid_reloading_and_stopping() {
    let mut s = notify_unit();
    s.restart = RestartPolicy::Always;
    let mut sim = Sim::started(unit(s));
    sim.notify("MAINPID=1");
    assert_eq!(sim.main_pid(), 100, "MAINPID=1 is refused");
    sim.notify("MAINPID=777\nREADY=1");
    assert_eq!(sim.main_pid(), 777);
    assert_eq!(sim.state().1, SubState::Running);
    sim.notify("RELOADING=1");
    assert_eq!(sim.state().0, ActiveState::Reloading);
    sim.notify("READY=1");
    assert_eq!(sim.state().1, SubState::Running);
    sim.notify("STOPPING=1");
    assert_eq!(sim.state().1, SubState::Stop);
    sim.exit_main(ExitStatus::Exited(0));
    // Stopping on its own is not an operator stop: Restart= applies.
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

#[test]
fn watchdog_pings_keep_the_service_alive() {
    let mut s = notify_unit();
    s.watchdog = Some(Duration::from_secs(1));
    let mut sim = Sim::started(unit(s));
    sim.notify("READY=1");
    for _ in 0..10 {
        sim.advance(Duration::from_millis(600));
        sim.notify("WATCHDOG=1");
    }
    assert_eq!(sim.state().1, SubState::Running);
    sim.advance(Duration::from_millis(999));
    assert_eq!(sim.state().1, SubState::Running);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.state().1, SubState::StopSigterm);
    assert_eq!(sim.state().2, ServiceResult::Watchdog);
    // WATCHDOG=trigger fails at once.
    let mut s = notify_unit();
    s.watchdog = Some(Duration::from_secs(1));
    let mut sim = Sim::started(unit(s));
    sim.notify("READY=1");
    sim.notify("WATCHDOG=trigger");
    assert_eq!(sim.state().2, ServiceResult::Watchdog);
}

// ----- Exec* commands -------------------------------------------------------------------

#[test]
fn exec_condition_skips_without_failure() {
    let mut s = simple("/bin/svc");
    s.exec_condition = vec![cmd("/bin/check")];
    s.restart = RestartPolicy::Always;
    let mut sim = Sim::started(unit(s.clone()));
    assert_eq!(sim.state().1, SubState::Condition);
    sim.exit_control(ExitStatus::Exited(1));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(
        sim.spawned_paths(),
        vec!["/bin/check"],
        "ExecStart= skipped"
    );
    assert_eq!(sim.svc.next_deadline(), None, "a skip is not restarted");

    let mut sim = Sim::started(unit(s.clone()));
    sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(sim.state().1, SubState::Running);

    s.restart = RestartPolicy::No;
    let mut sim = Sim::started(unit(s.clone()));
    sim.exit_control(ExitStatus::Exited(255));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );
    let mut sim = Sim::started(unit(s));
    sim.exit_control(signaled(KILL));
    assert_eq!(
        sim.state(),
        (ActiveState::Failed, SubState::Failed, ServiceResult::Signal)
    );
}

#[test]
fn dash_prefix_ignores_a_failing_command() {
    let mut s = simple("/bin/svc");
    s.exec_start_pre = vec![cmd("/bin/pre")];
    s.exec_start_post = vec![cmd("/bin/post")];
    let mut sim = Sim::started(unit(s.clone()));
    assert_eq!(sim.state().1, SubState::StartPre);
    sim.exit_control(ExitStatus::Exited(1));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );
    assert_eq!(sim.spawned_paths(), vec!["/bin/pre"]);

    s.exec_start_pre = vec![cmd("-/bin/pre"), cmd("/bin/pre2")];
    let mut sim = Sim::started(unit(s.clone()));
    sim.exit_control(ExitStatus::Exited(1));
    sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(sim.state().1, SubState::StartPost);
    sim.exit_control(ExitStatus::Exited(0));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Running,
            ServiceResult::Success
        )
    );
    assert_eq!(
        sim.spawned_paths(),
        vec!["/bin/pre", "/bin/pre2", "/bin/svc", "/bin/post"]
    );

    // A missing binary behind `-` is ignored too.
    s.exec_start_pre = vec![cmd("-/bin/missing")];
    let mut sim = Sim::new(unit(s));
    sim.failing.push("/bin/missing".into());
    sim.send(Event::Start);
    assert_eq!(sim.state().1, SubState::StartPost);
    assert_eq!(sim.svc.status().error, None);
}

#[test]
fn exec_start_post_failure_stops_the_service() {
    let mut s = simple("/bin/svc");
    s.exec_start_post = vec![cmd("/bin/post")];
    let mut sim = Sim::started(unit(s));
    sim.exit_control(ExitStatus::Exited(2));
    assert_eq!(sim.state().1, SubState::StopSigterm);
    sim.exit_main(signaled(TERM));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::ExitCode
        )
    );
}

#[test]
fn exec_failure_is_reported_like_systemd() {
    let mut sim = Sim::new(unit(simple("/bin/nope")));
    sim.failing.push("/bin/nope".into());
    sim.send(Event::Start);
    let st = sim.svc.status();
    assert_eq!(st.result, ServiceResult::ExitCode);
    assert_eq!(st.sub_state, SubState::Failed);
    assert_eq!(
        (st.exec_main_status, st.exec_main_code),
        (Some(203), Some("exited"))
    );
    assert_eq!(
        st.error.as_deref(),
        Some("exec failed: /bin/nope: No such file or directory")
    );
}

#[test]
fn reload_runs_exec_reload_and_returns_to_running() {
    let mut s = simple("/bin/svc");
    s.exec_reload = vec![cmd("/bin/kill -HUP $MAINPID")];
    let mut sim = Sim::started(unit(s));
    assert!(sim.svc.can_reload());
    sim.send(Event::Reload);
    assert_eq!(sim.state().0, ActiveState::Reloading);
    sim.exit_control(ExitStatus::Exited(1));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Active,
            SubState::Running,
            ServiceResult::Success
        )
    );
    assert!(
        sim.svc
            .status()
            .error
            .unwrap_or_default()
            .contains("reload failed")
    );
    let plain = Sim::started(unit(simple("/bin/svc")));
    assert!(!plain.svc.can_reload());
}

#[test]
fn start_timeout_in_start_pre_kills_the_control_process() {
    let mut s = simple("/bin/svc");
    s.exec_start_pre = vec![cmd("/bin/slow")];
    s.timeout_start = Some(Duration::from_secs(2));
    let mut sim = Sim::started(unit(s));
    let ctl = sim.control_pid();
    sim.fire_next();
    assert_eq!(sim.state().1, SubState::StopSigterm);
    sim.send(Event::Exited {
        pid: ctl,
        status: signaled(TERM),
    });
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
    assert_eq!(sim.spawned_paths(), vec!["/bin/slow"]);
}

// ----- adoption, persistence, unit changes --------------------------------------------

#[test]
fn adopted_main_pid_is_supervised() {
    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::Always;
    let mut sim = Sim::new(unit(s));
    sim.svc.restore(4, ServiceResult::Success);
    let now = sim.now;
    sim.svc.adopt(999, now);
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.svc.role_of(999), Some(ProcessRole::Main));
    sim.send(Event::Exited {
        pid: 999,
        status: ExitStatus::Unknown,
    });
    assert_eq!(sim.state().1, SubState::AutoRestart);
    sim.fire_next();
    assert_eq!(sim.svc.status().n_restarts, 5);
}

#[test]
fn restore_shows_a_failed_last_result() {
    let mut svc = Service::new(Arc::new(unit(simple("/bin/svc"))));
    svc.restore(2, ServiceResult::ExitCode);
    let st = svc.status();
    assert_eq!(
        (st.active_state, st.result, st.n_restarts),
        (ActiveState::Failed, ServiceResult::ExitCode, 2)
    );
}

#[test]
fn a_new_unit_takes_effect_at_the_next_start() {
    let mut sim = Sim::started(unit(simple("/bin/v1")));
    sim.svc.set_unit(Arc::new(unit(simple("/bin/v2"))));
    sim.exit_main(ExitStatus::Exited(0));
    sim.send(Event::Start);
    assert_eq!(sim.spawned_paths(), vec!["/bin/v1", "/bin/v2"]);
}

#[test]
fn exits_of_unknown_pids_are_ignored() {
    let mut sim = Sim::started(unit(simple("/bin/svc")));
    let fx = sim.send(Event::Exited {
        pid: 31337,
        status: ExitStatus::Exited(1),
    });
    assert!(fx.is_empty());
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.svc.role_of(31337), None);
}

#[test]
fn stop_during_start_pre_kills_it_and_skips_exec_stop() {
    let mut s = simple("/bin/svc");
    s.exec_start_pre = vec![cmd("/bin/migrate")];
    s.exec_stop = vec![cmd("/bin/svc-stop")];
    s.kill_mode = KillMode::Process;
    let mut sim = Sim::started(unit(s));
    let ctl = sim.control_pid();
    let fx = sim.send(Event::Stop);
    assert_eq!(Sim::signals(&fx), vec![(KillTarget::Control(ctl), TERM)]);
    sim.exit_control(signaled(TERM));
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
    assert_eq!(
        sim.spawned_paths(),
        vec!["/bin/migrate"],
        "neither ExecStart= nor ExecStop="
    );
}

#[test]
fn start_during_stop_starts_once_stopped() {
    let mut sim = Sim::started(unit(simple("/bin/svc")));
    sim.send(Event::Stop);
    sim.send(Event::Start);
    assert_eq!(
        sim.state().1,
        SubState::StopSigterm,
        "the stop completes first"
    );
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().1, SubState::Running);
    assert_eq!(sim.spawns.len(), 2);
}

#[test]
fn stop_post_timeout_ends_with_final_kill() {
    let mut s = simple("/bin/svc");
    s.exec_stop_post = vec![cmd("/bin/hang")];
    s.timeout_stop = Some(Duration::from_secs(1));
    let mut sim = Sim::started(unit(s));
    sim.send(Event::Stop);
    sim.exit_main(signaled(TERM));
    assert_eq!(sim.state().1, SubState::StopPost);
    sim.fire_next();
    assert_eq!(sim.state().1, SubState::FinalSigterm);
    let before = sim.effects.len();
    sim.fire_next();
    assert_eq!(sim.state().1, SubState::FinalSigkill);
    assert_eq!(
        Sim::signals(&sim.effects[before..]),
        vec![(KillTarget::Group, KILL)]
    );
    sim.fire_next();
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );
    assert_eq!(sim.svc.status().control_pid, None);
}

#[test]
fn watchdog_usec_from_the_service_changes_the_period() {
    let mut sim = Sim::started(unit(notify_unit()));
    sim.notify("READY=1");
    assert_eq!(sim.svc.next_deadline(), None, "no watchdog configured");
    sim.notify("WATCHDOG_USEC=2000000");
    assert_eq!(sim.fire_next(), Duration::from_secs(2));
    assert_eq!(sim.state().2, ServiceResult::Watchdog);
}

#[test]
fn lifecycle_lines_of_a_crash_and_restart() {
    let mut s = simple("/bin/svc");
    s.restart = RestartPolicy::OnFailure;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(3));
    sim.fire_next();
    assert_eq!(
        sim.lifecycles(),
        vec![
            Lifecycle::Starting,
            Lifecycle::Started,
            Lifecycle::Stopping,
            Lifecycle::Failed,
            Lifecycle::Restarting,
            Lifecycle::Started
        ]
    );
    let reasons: Vec<&str> = sim
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Lifecycle { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        reasons[3].contains("status=3") && reasons[3].contains("restarting in"),
        "{reasons:?}"
    );
    assert!(reasons[4].contains("#1"), "{reasons:?}");
    let pids: Vec<Option<i32>> = sim
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Lifecycle { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    // Starting has no pid yet; the Failed line names the pid that died; the new run its own.
    assert_eq!(
        pids,
        vec![None, Some(100), Some(100), Some(100), None, Some(101)]
    );
    assert_eq!(sim.svc.status().exec_main_status, Some(3));
}

// ----- group tracking (Event::GroupEmpty) -------------------------------------------------

fn tracked(s: ServiceSection) -> Sim {
    let mut sim = Sim::new(unit(s));
    sim.svc.set_group_tracking(true);
    sim.send(Event::Start);
    sim
}

#[test]
fn tracked_group_stop_waits_for_the_whole_group() {
    let mut s = simple("/bin/svc");
    s.timeout_stop = Some(Duration::from_secs(5));
    let mut sim = tracked(s.clone());
    sim.send(Event::Stop);
    sim.exit_main(signaled(TERM));
    assert_eq!(
        sim.state().1,
        SubState::StopSigterm,
        "a grandchild is still there"
    );
    let before = sim.effects.len();
    sim.fire_next();
    assert_eq!(
        Sim::signals(&sim.effects[before..]),
        vec![(KillTarget::Group, KILL)]
    );
    sim.send(Event::GroupEmpty);
    assert_eq!(
        sim.state(),
        (
            ActiveState::Failed,
            SubState::Failed,
            ServiceResult::Timeout
        )
    );

    // When the group empties in time, the stop is clean.
    let mut sim = tracked(s);
    sim.send(Event::Stop);
    sim.exit_main(signaled(TERM));
    sim.send(Event::GroupEmpty);
    assert_eq!(
        sim.state(),
        (
            ActiveState::Inactive,
            SubState::Dead,
            ServiceResult::Success
        )
    );
}

#[test]
fn tracked_mixed_waits_instead_of_killing_at_once() {
    let mut s = simple("/bin/svc");
    s.kill_mode = KillMode::Mixed;
    let mut sim = tracked(s);
    sim.send(Event::Stop);
    let fx = sim.exit_main(signaled(TERM));
    assert!(Sim::signals(&fx).is_empty(), "{fx:?}");
    sim.send(Event::GroupEmpty);
    assert_eq!(sim.state().1, SubState::Dead);
}

#[test]
fn tracked_forking_without_pid_file_ends_when_the_group_empties() {
    let mut s = simple("/usr/sbin/daemon");
    s.service_type = ServiceType::Forking;
    s.restart = RestartPolicy::Always;
    let mut sim = tracked(s);
    sim.exit_main(ExitStatus::Exited(0));
    sim.send(Event::MainPidGuessed(None));
    assert_eq!(sim.state().1, SubState::Running);
    sim.send(Event::GroupEmpty);
    assert_eq!(sim.state().1, SubState::AutoRestart);
}

#[test]
fn group_empty_is_ignored_without_tracking() {
    let mut s = simple("/bin/svc");
    s.service_type = ServiceType::Forking;
    let mut sim = Sim::started(unit(s));
    sim.exit_main(ExitStatus::Exited(0));
    sim.send(Event::MainPidGuessed(None));
    assert!(sim.send(Event::GroupEmpty).is_empty());
    assert_eq!(sim.state().1, SubState::Running);
}

// ----- random event sequences: the machine never gets stuck ------------------------------

mod random {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Action {
        Start,
        Stop,
        Restart,
        Reload,
        ExitMain(ExitStatus),
        ExitControl(ExitStatus),
        Advance(u64),
        Notify(&'static str),
        PidFile(bool),
        Guess(bool),
        FailNextSpawn,
        GroupEmpty,
    }

    fn status() -> impl Strategy<Value = ExitStatus> {
        prop_oneof![
            (0..3i32).prop_map(ExitStatus::Exited),
            Just(ExitStatus::Exited(255)),
            Just(signaled(TERM)),
            Just(signaled(KILL)),
            Just(ExitStatus::Unknown),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![
            2 => Just(Action::Start),
            1 => Just(Action::Stop),
            1 => Just(Action::Restart),
            1 => Just(Action::Reload),
            3 => status().prop_map(Action::ExitMain),
            3 => status().prop_map(Action::ExitControl),
            3 => (0..4000u64).prop_map(Action::Advance),
            1 => prop::sample::select(vec![
                "READY=1", "STOPPING=1", "RELOADING=1", "WATCHDOG=1", "WATCHDOG=trigger",
                "MAINPID=4000", "EXTEND_TIMEOUT_USEC=500000",
            ])
            .prop_map(Action::Notify),
            1 => any::<bool>().prop_map(Action::PidFile),
            1 => any::<bool>().prop_map(Action::Guess),
            1 => Just(Action::FailNextSpawn),
            2 => Just(Action::GroupEmpty),
        ]
    }

    fn config() -> impl Strategy<Value = Unit> {
        (
            prop::sample::select(vec![
                ServiceType::Simple,
                ServiceType::Exec,
                ServiceType::Forking,
                ServiceType::Oneshot,
                ServiceType::Notify,
            ]),
            prop::sample::select(POLICIES.to_vec()),
            prop::sample::select(vec![
                KillMode::ControlGroup,
                KillMode::Mixed,
                KillMode::Process,
                KillMode::None,
            ]),
            any::<[bool; 8]>(),
        )
            .prop_map(|(ty, restart, kill_mode, b)| {
                let list = |on: bool, path: &str| if on { vec![cmd(path)] } else { vec![] };
                let s = ServiceSection {
                    service_type: ty,
                    restart,
                    kill_mode,
                    exec_condition: list(b[0], "/bin/cond"),
                    exec_start_pre: list(b[1], "-/bin/pre"),
                    exec_start: vec![cmd("/bin/main"), cmd("/bin/main2")]
                        [..if ty == ServiceType::Oneshot { 2 } else { 1 }]
                        .to_vec(),
                    exec_start_post: list(b[2], "/bin/post"),
                    exec_reload: list(b[3], "/bin/reload"),
                    exec_stop: list(b[4], "/bin/stop"),
                    exec_stop_post: list(b[5], "/bin/stoppost"),
                    remain_after_exit: b[6],
                    pid_file: b[7].then(|| "/run/x.pid".to_string()),
                    send_sigkill: !b[6],
                    restart_sec: Duration::from_millis(300),
                    timeout_start: Some(Duration::from_secs(2)),
                    timeout_stop: Some(Duration::from_secs(2)),
                    watchdog: b[3].then_some(Duration::from_secs(1)),
                    ..Default::default()
                };
                unit(s)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Whatever happens, the machine is never stuck: every transitional state has a
        /// deadline, and a settled state holds no process and wants no timer.
        #[test]
        fn never_stuck(
            u in config(),
            tracking in any::<bool>(),
            actions in prop::collection::vec(action(), 1..40),
        ) {
            let mut sim = Sim::new(u);
            sim.svc.set_group_tracking(tracking);
            for a in actions {
                match a {
                    Action::Start => { sim.send(Event::Start); }
                    Action::Stop => { sim.send(Event::Stop); }
                    Action::Restart => { sim.send(Event::Restart); }
                    Action::Reload => { sim.send(Event::Reload); }
                    Action::ExitMain(st) => {
                        if let Some(pid) = sim.svc.status().main_pid {
                            sim.send(Event::Exited { pid, status: st });
                        }
                    }
                    Action::ExitControl(st) => {
                        if let Some(pid) = sim.svc.status().control_pid {
                            sim.send(Event::Exited { pid, status: st });
                        }
                    }
                    Action::Advance(ms) => sim.advance(Duration::from_millis(ms)),
                    Action::Notify(m) => { sim.notify(m); }
                    Action::PidFile(ok) => {
                        let read = if ok { Ok(5000) } else { Err("/run/x.pid: missing".to_string()) };
                        sim.send(Event::PidFile(read));
                    }
                    Action::Guess(found) => {
                        sim.send(Event::MainPidGuessed(found.then_some(5001)));
                    }
                    Action::GroupEmpty => {
                        if sim.svc.status().main_pid.is_none() && sim.svc.status().control_pid.is_none() {
                            sim.send(Event::GroupEmpty);
                        }
                    }
                    Action::FailNextSpawn => {
                        sim.failing = vec!["/bin/main".into(), "/bin/post".into(), "/bin/stop".into()];
                    }
                }
                let st = sim.svc.status();
                match st.active_state {
                    ActiveState::Inactive | ActiveState::Failed => {
                        prop_assert_eq!(st.main_pid, None);
                        prop_assert_eq!(st.control_pid, None);
                        prop_assert_eq!(sim.svc.next_deadline(), None);
                    }
                    ActiveState::Activating | ActiveState::Deactivating | ActiveState::Reloading => {
                        prop_assert!(sim.svc.next_deadline().is_some(), "stuck in {}", st.sub_state);
                    }
                    ActiveState::Active => {
                        if st.sub_state == SubState::Exited {
                            prop_assert_eq!(st.main_pid, None);
                        }
                    }
                }
                if let (Some(m), Some(c)) = (st.main_pid, st.control_pid) {
                    prop_assert_ne!(m, c);
                }
            }
            // Processes never exit here on their own, so escalation must go on by timers
            // alone: after a minute the machine still has a timer or is settled.
            sim.advance(Duration::from_secs(60));
            let st = sim.svc.status();
            let settled = matches!(st.active_state, ActiveState::Inactive | ActiveState::Failed | ActiveState::Active);
            prop_assert!(settled || sim.svc.next_deadline().is_some(), "stuck in {}", st.sub_state);
        }
    }
}
