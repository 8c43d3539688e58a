//! The simulated event loop of [`super::drive`]: fake processes, a simulated clock, and the
//! invariant checks.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Bytes;
use crate::deps::Graph;
use crate::reconcile::{Action, Candidate, Current, Recorded, reconcile};
use crate::service::{
    ActiveState, Effect, Event, ExitStatus, KillTarget, NotifyMessage, ProcessRole, Service,
};
use crate::tree::{Entry, FileTree};
use crate::unit::SpecifierContext;
use crate::unit::model::Unit;

/// A fake process: who it belongs to and what has happened to it.
#[derive(Debug)]
pub(super) struct Proc {
    pub(super) unit: String,
    /// The unit's main process (spawned as main, read from its PID file, named by
    /// `MAINPID=` or adopted); cleared when another pid takes the role.
    pub(super) main: bool,
    /// It got a signal that ends it (it exits at shutdown, or sooner).
    pub(super) signalled: bool,
    /// It got SIGKILL: its exit is queued.
    killed: bool,
}

/// What the loop keeps per unit around the pure `Service` (cf. `daemon::managed`).
pub(super) struct Managed {
    pub(super) svc: Option<Service>,
    pub(super) hash: String,
    pub(super) loaded: bool,
    pub(super) held_stopped: bool,
    /// Gone from git: forgotten once stopped.
    removed: bool,
}

pub struct Sim {
    pub(super) now: Instant,
    pub(super) group_tracking: bool,
    pub(super) next_pid: i32,
    /// Processes not reaped yet (zombies included), by pid.
    pub(super) procs: BTreeMap<i32, Proc>,
    pub(super) units: BTreeMap<String, Managed>,
    pub(super) graph: Graph,
    /// Exits to deliver before the next step (SIGKILL is immediate).
    pub(super) exits: VecDeque<(i32, ExitStatus)>,
    /// `Effect::ReadPidFile`s not answered yet.
    pub(super) pid_reads: Vec<String>,
    /// The last events and effects, for the message of a violated invariant.
    pub(super) trace: VecDeque<String>,
}

impl Sim {
    pub fn new(t0: Instant, group_tracking: bool) -> Sim {
        Sim {
            now: t0,
            group_tracking,
            next_pid: 1000,
            procs: BTreeMap::new(),
            units: BTreeMap::new(),
            graph: Graph::default(),
            exits: VecDeque::new(),
            pid_reads: Vec::new(),
            trace: VecDeque::new(),
        }
    }

    pub(super) fn note(&mut self, line: String) {
        if self.trace.len() >= 60 {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    /// The recent history, one line each.
    pub(super) fn history(&self) -> String {
        self.trace.iter().map(|l| format!("\n  {l}")).collect()
    }

    fn fresh_pid(&mut self, unit: &str, main: bool) -> i32 {
        self.next_pid += 1;
        let pid = self.next_pid;
        self.procs.insert(
            pid,
            Proc {
                unit: unit.to_string(),
                main,
                signalled: false,
                killed: false,
            },
        );
        pid
    }

    /// A new snapshot: parse, reconcile against what runs, carry the plan out in order.
    pub fn apply(&mut self, files: &BTreeMap<String, Vec<u8>>) {
        self.apply_with(files, &BTreeMap::new());
    }

    pub(super) fn apply_with(
        &mut self,
        files: &BTreeMap<String, Vec<u8>>,
        restored: &BTreeMap<String, Recorded>,
    ) {
        let tree = FileTree {
            entries: files
                .iter()
                .map(|(k, v)| (k.clone(), Entry::File(v.clone())))
                .collect(),
            ..FileTree::default()
        };
        let loaded = crate::unit::load_tree(&tree, &SpecifierContext::default());
        let parsed: BTreeMap<String, Arc<Unit>> = loaded
            .iter()
            .filter_map(|(n, l)| l.unit.clone().map(|u| (n.clone(), Arc::new(u))))
            .collect();
        let snapshot: BTreeMap<String, Candidate> = loaded
            .iter()
            .map(|(n, l)| {
                let c = Candidate {
                    hash: l.content_hash.clone(),
                    loads: l.unit.is_some(),
                };
                (n.clone(), c)
            })
            .collect();
        let current: BTreeMap<String, Current> = self
            .units
            .iter()
            .map(|(n, m)| {
                let c = Current {
                    hash: Some(m.hash.clone()),
                    loaded: m.loaded,
                    failed_hash: None,
                    held_stopped: m.held_stopped,
                };
                (n.clone(), c)
            })
            .collect();
        let plan = reconcile(&snapshot, &current, restored);
        let (graph, dep_errors) = Graph::build(&parsed);
        self.graph = graph;
        for (name, action) in &plan.actions {
            self.note(format!("plan {name}: {action:?}"));
            let unit = parsed.get(name).cloned();
            let hash = snapshot.get(name).map(|c| c.hash.clone());
            self.bookkeeping(name, *action, unit, hash);
        }
        for (name, action) in plan.perform_order(&self.graph, &|n| dep_errors.contains_key(n)) {
            match action {
                Action::Stop => self.feed(&name, Event::Stop),
                Action::Start => self.feed(&name, Event::Start),
                Action::Restart => self.feed(&name, Event::Restart),
                Action::Adopt {
                    pid,
                    changed,
                    held_stopped,
                    ..
                } => {
                    let now = self.now;
                    if let Some(p) = self.procs.get_mut(&pid) {
                        p.main = true;
                    }
                    let fx = match self.units.get_mut(&name).and_then(|m| m.svc.as_mut()) {
                        Some(svc) => svc.adopt(pid, now),
                        None => Vec::new(),
                    };
                    self.perform(&name, fx);
                    if held_stopped {
                        self.feed(&name, Event::Stop);
                    } else if changed {
                        self.feed(&name, Event::Restart);
                    }
                }
                _ => {}
            }
        }
        self.settle();
    }

    fn bookkeeping(
        &mut self,
        name: &str,
        action: Action,
        unit: Option<Arc<Unit>>,
        hash: Option<String>,
    ) {
        let tracking = self.group_tracking;
        let m = self.units.entry(name.to_string()).or_insert(Managed {
            svc: None,
            hash: String::new(),
            loaded: false,
            held_stopped: false,
            removed: false,
        });
        match action {
            Action::Forget => {
                self.units.remove(name);
                return;
            }
            Action::Stop => m.removed = true,
            Action::StopLeftover { .. } | Action::Broken | Action::KeepRolledBack => {}
            Action::Keep => m.removed = false,
            Action::Hold | Action::Start | Action::Restart | Action::Adopt { .. } => {
                m.removed = false;
                if let Some(u) = unit {
                    match &mut m.svc {
                        Some(svc) => svc.set_unit(u),
                        None => {
                            let mut svc = Service::new(u);
                            svc.set_group_tracking(tracking);
                            m.svc = Some(svc);
                        }
                    }
                    m.loaded = true;
                }
                if let Some(h) = hash.clone() {
                    m.hash = h;
                }
                if let Action::Adopt { held_stopped, .. } = action {
                    m.held_stopped = held_stopped;
                }
            }
        }
        if !m.loaded
            && let Some(h) = hash
        {
            m.hash = h;
        }
    }

    /// Feeds one event to a unit's machine and performs what it answers.
    pub(super) fn feed(&mut self, name: &str, event: Event) {
        let now = self.now;
        let Some(svc) = self.units.get_mut(name).and_then(|m| m.svc.as_mut()) else {
            return;
        };
        let line = format!("{name} <- {event:?}");
        let fx = svc.on_event(event, now);
        let after = svc.status();
        self.note(format!(
            "{line} => {}/{} main={:?}",
            after.active_state, after.sub_state, after.main_pid
        ));
        self.perform(name, fx);
    }

    /// The loop's side of the effects, with the invariant checks at the point they apply.
    fn perform(&mut self, name: &str, fx: Vec<Effect>) {
        for effect in fx {
            match effect {
                Effect::Spawn { role, .. } => {
                    self.note(format!("{name} spawn {role}"));
                    let main = role == ProcessRole::Main;
                    if main {
                        let live: Vec<i32> = self
                            .procs
                            .iter()
                            .filter(|(_, p)| p.unit == name && p.main)
                            .map(|(pid, _)| *pid)
                            .collect();
                        assert!(
                            live.is_empty(),
                            "{name}: spawns a second main process while {live:?} is still there{}",
                            self.history()
                        );
                    }
                    let pid = self.fresh_pid(name, main);
                    self.feed(name, Event::Spawned { role, pid });
                }
                Effect::Signal { target, signal } => {
                    self.note(format!("{name} signal {signal} -> {target:?}"));
                    let pids: Vec<i32> = match target {
                        KillTarget::Main(pid) | KillTarget::Control(pid) => {
                            let owner = self.procs.get(&pid).map(|p| p.unit.as_str());
                            assert_eq!(
                                owner,
                                Some(name),
                                "{name}: signal {signal} to pid {pid} it does not own \
                                 (never spawned, another unit's, or already reaped){}",
                                self.history()
                            );
                            vec![pid]
                        }
                        KillTarget::Group => self
                            .procs
                            .iter()
                            .filter(|(_, p)| p.unit == name)
                            .map(|(pid, _)| *pid)
                            .collect(),
                    };
                    if pids.is_empty() && self.group_tracking {
                        self.feed(name, Event::GroupEmpty);
                    }
                    for pid in pids {
                        self.signal(pid, signal);
                    }
                }
                Effect::ReadPidFile { path } => self.pid_reads.push(format!("{name}\n{path}")),
                // Fake processes have no parent to guess by: as if ambiguous.
                Effect::GuessMainPid => self.feed(name, Event::MainPidGuessed(None)),
                Effect::RemovePidFile { .. } | Effect::Lifecycle { .. } | Effect::StatusChanged => {
                }
            }
        }
    }

    fn signal(&mut self, pid: i32, signal: i32) {
        let Some(p) = self.procs.get_mut(&pid) else {
            return;
        };
        if signal == libc::SIGKILL && !p.killed {
            p.killed = true;
            self.exits.push_back((
                pid,
                ExitStatus::Signaled {
                    signal,
                    core_dumped: false,
                },
            ));
        }
        p.signalled = true;
    }

    /// Delivers the exits that are due (SIGKILL), as the loop reaps right away.
    pub(super) fn settle(&mut self) {
        let mut rounds = 0;
        while let Some((pid, status)) = self.exits.pop_front() {
            rounds += 1;
            if rounds > 10_000 {
                panic!("the exits never settle (an effect loop?)");
            }
            self.reap(pid, status);
        }
        self.units.retain(|_, m| {
            !(m.removed
                && m.svc.as_ref().is_none_or(|s| {
                    matches!(
                        s.status().active_state,
                        ActiveState::Inactive | ActiveState::Failed
                    )
                }))
        });
    }

    pub(super) fn reap(&mut self, pid: i32, status: ExitStatus) {
        let Some(p) = self.procs.remove(&pid) else {
            return;
        };
        self.note(format!(
            "reaped {pid} ({}, main={}) {status:?}",
            p.unit, p.main
        ));
        let name = p.unit;
        self.feed(&name, Event::Exited { pid, status });
        if self.group_tracking && !self.procs.values().any(|q| q.unit == name) {
            self.feed(&name, Event::GroupEmpty);
        }
    }

    /// One process exits: which one and how, chosen by the bytes.
    pub fn exit_one(&mut self, b: &mut Bytes) {
        if self.procs.is_empty() {
            return;
        }
        let i = usize::from(b.byte()) % self.procs.len();
        let Some(pid) = self.procs.keys().nth(i).copied() else {
            return;
        };
        let status = match b.byte() % 4 {
            0 => ExitStatus::Exited(0),
            1 => ExitStatus::Exited(i32::from(b.byte())),
            2 => ExitStatus::Signaled {
                signal: b.pick(&[libc::SIGTERM, libc::SIGSEGV, libc::SIGKILL]),
                core_dumped: b.one_in(2),
            },
            _ => ExitStatus::Unknown,
        };
        self.reap(pid, status);
        self.settle();
    }

    /// An sd_notify datagram from one of the unit's processes.
    pub fn notify(&mut self, name: &str, b: &mut Bytes) {
        let senders: Vec<i32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.unit == name)
            .map(|(pid, _)| *pid)
            .collect();
        if senders.is_empty() {
            return;
        }
        let pid = senders[usize::from(b.byte()) % senders.len()];
        let text = match b.byte() % 10 {
            0 | 1 => "READY=1".to_string(),
            2 => {
                // A child of the service (or the sender itself) becomes the main process.
                let new = if b.one_in(2) {
                    self.fresh_pid(name, false)
                } else {
                    pid
                };
                format!("READY=1\nMAINPID={new}")
            }
            3 => "WATCHDOG=1".to_string(),
            4 => "WATCHDOG=trigger".to_string(),
            5 => "STOPPING=1".to_string(),
            6 => format!("EXTEND_TIMEOUT_USEC={}", b.pick(&[0, 1_000_000, u64::MAX])),
            7 => format!("WATCHDOG_USEC={}", b.pick(&[0, 1_000, u64::MAX])),
            8 => "RELOADING=1".to_string(),
            _ => String::from_utf8_lossy(&b.raw(16)).into_owned(),
        };
        let message = NotifyMessage::parse(text.as_bytes());
        self.feed(name, Event::Notify { pid, message });
        self.settle();
    }

    /// Answers the pending PID file reads: a pid forked by the service, or an error.
    pub fn answer_pid_files(&mut self, b: &mut Bytes) {
        for read in std::mem::take(&mut self.pid_reads) {
            let name = read.split('\n').next().unwrap_or_default().to_string();
            let answer = if b.one_in(3) {
                Err("no such file".to_string())
            } else {
                Ok(self.fresh_pid(&name, false))
            };
            self.feed(&name, Event::PidFile(answer));
        }
        self.settle();
    }

    /// An operator job on `name`, through the dependency graph as the loop does.
    pub fn operator(&mut self, name: &str, choice: u8) {
        if !self.units.contains_key(name) {
            return;
        }
        match choice % 4 {
            0 => {
                let names = self.graph.requirement_closure(&[name.to_string()]);
                for n in self.graph.start_order(&names) {
                    if let Some(m) = self.units.get_mut(&n) {
                        m.held_stopped = false;
                    }
                    self.feed(&n, Event::Start);
                }
            }
            1 => {
                let mut names = self.graph.stop_propagation(name);
                names.push(name.to_string());
                for n in self.graph.stop_order(&names) {
                    if let Some(m) = self.units.get_mut(&n) {
                        m.held_stopped = true;
                    }
                    self.feed(&n, Event::Stop);
                }
            }
            2 => self.feed(name, Event::Restart),
            _ => {
                if self
                    .units
                    .get(name)
                    .and_then(|m| m.svc.as_ref())
                    .is_some_and(Service::can_reload)
                {
                    self.feed(name, Event::Reload);
                }
            }
        }
        self.settle();
    }

    /// The clock moves by `d` (saturating) and every timer that is due fires.
    pub fn advance(&mut self, d: Duration) {
        self.now = crate::sys::time::later(self.now, d);
        self.fire_timers();
    }

    /// The clock jumps to the earliest deadline any service asked for.
    pub(super) fn advance_to_next_deadline(&mut self) {
        let next = self
            .units
            .values()
            .filter_map(|m| m.svc.as_ref()?.next_deadline())
            .min();
        if let Some(at) = next {
            self.now = self.now.max(at);
            self.fire_timers();
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now;
        let due: Vec<String> = self
            .units
            .iter()
            .filter(|(_, m)| {
                m.svc
                    .as_ref()
                    .and_then(Service::next_deadline)
                    .is_some_and(|at| at <= now)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            self.feed(&name, Event::Timer);
        }
        self.settle();
    }
}
