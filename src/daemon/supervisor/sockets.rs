//! Socket units in the loop (systemd.socket(5), `Accept=no` only). A socket is a unit of its
//! own kind, like a timer: the loop keeps its listening fds and decides when its service
//! starts; the host work happens elsewhere.
//!
//! - Binding (unit-named paths, NSS for `SocketUser=`) is a [`Task::BindSockets`] on the
//!   spawner pool; its report brings the fds (close-on-exec, non-blocking).
//! - Readiness is watched by the [`SocketWatcher`] thread; "socket X is readable" is one
//!   more input of the select.
//!
//! Rules:
//! - a service that a socket names (`Service=`, default the same name) or that lists it in
//!   `Sockets=` is socket-activated: not started when a commit is applied; its sockets are
//!   started (listening) instead, and the first readable event starts the service;
//! - whenever such a service's main process is spawned (activation, an operator's start,
//!   a restart), it gets the fds of its sockets that are listening, as fds 3.. with
//!   `LISTEN_FDS`, `LISTEN_PID` and `LISTEN_FDNAMES` (`FileDescriptorName=`);
//! - while the service is active (or activating, or queued) the loop does not watch its
//!   sockets; when it is inactive or failed again, watching resumes, so the next
//!   connection starts it again (systemd's behaviour);
//! - a service that hit its start limit after socket activation takes its socket down:
//!   `failed` with result `service-start-limit-hit`, its fds closed;
//! - a service that `Requires=`/`Wants=`/`BindsTo=` a socket unit, or whose own sockets are
//!   down, gets them started first and waits in the start queue until they are bound;
//! - a bind that fails leaves the socket `failed` with result `resources` and the error
//!   naming the address and the errno;
//! - `gitproc stop X.socket` closes the fds (and removes unix paths with `RemoveOnStop=yes`)
//!   and holds it stopped until `gitproc start`, across daemon restarts; a service that
//!   runs keeps its own copies (as in systemd);
//! - a new version with the same sockets keeps its fds; one with other sockets is closed
//!   and bound again (when its service is not running, else once it stops);
//! - after a daemon restart the sockets are bound anew; a service adopted running keeps
//!   its own copies, and its socket binds once it stops (until then `running`, without
//!   fds of the daemon's).
//!
//! [`Task::BindSockets`]: crate::daemon::spawner::Task::BindSockets
//! [`SocketWatcher`]: crate::runtime::socket_watch::SocketWatcher

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crossbeam_channel::Sender;

use super::{Supervisor, unix_now};
use crate::control::protocol::{Reply, exit};
use crate::daemon::spawner::Task;
use crate::runtime::socket_bind::Bound;
use crate::runtime::socket_watch::Readable;
use crate::service::ServiceResult;
use crate::state::format::{Override, OverrideKind, SocketState as SocketRecord};
use crate::unit::LoadedUnit;
use crate::unit::model::{Listen, SocketSection, Unit};

/// A socket unit the loop knows.
pub(crate) struct ManagedSocket {
    unit: Arc<Unit>,
    section: Arc<SocketSection>,
    path: String,
    hash: String,
    commit: Option<String>,
    /// Why the newest version in git does not load (the previous one stays).
    load_error: Option<String>,
    operator_override: Option<Override>,
    /// The listening sockets, in `Listen*=` order; empty when not listening.
    fds: Vec<(Arc<OwnedFd>, Listen)>,
    /// The bind in flight (its task id).
    binding: Option<u64>,
    /// Bind once the service has stopped: it holds copies of the old sockets (adopted after
    /// a daemon restart, or a new version's sockets while it runs).
    deferred: bool,
    /// The watch number the watcher thread has now, if it watches.
    watched: Option<u64>,
    /// The last readable event started the service (its start-limit failure is ours).
    triggered: bool,
    result: &'static str,
    error: Option<String>,
}

impl ManagedSocket {
    fn new(unit: Arc<Unit>, l: &LoadedUnit, commit: &Option<String>) -> ManagedSocket {
        ManagedSocket {
            section: Arc::new(unit.socket.clone()),
            unit,
            path: l.path.clone(),
            hash: l.content_hash.clone(),
            commit: commit.clone(),
            load_error: None,
            operator_override: None,
            fds: Vec::new(),
            binding: None,
            deferred: false,
            watched: None,
            triggered: false,
            result: "success",
            error: None,
        }
    }

    fn service(&self) -> &str {
        &self.section.service
    }

    fn held_stopped(&self) -> bool {
        matches!(&self.operator_override, Some(o) if o.kind == OverrideKind::Stopped)
    }

    fn is_up(&self) -> bool {
        !self.fds.is_empty() || self.binding.is_some() || self.deferred
    }
}

/// Whether two versions listen on the same sockets in the same way (then the fds stay).
fn same_sockets(a: &SocketSection, b: &SocketSection) -> bool {
    a.listen == b.listen
        && a.backlog == b.backlog
        && a.reuse_port == b.reuse_port
        && a.free_bind == b.free_bind
        && a.bind_ipv6_only == b.bind_ipv6_only
        && a.socket_mode == b.socket_mode
        && a.directory_mode == b.directory_mode
        && a.socket_user == b.socket_user
        && a.socket_group == b.socket_group
}

impl Supervisor {
    /// The services some loaded socket activates (its `Service=`), and those that list a
    /// loaded socket in `Sockets=`: not started when a commit is applied.
    pub(in crate::daemon) fn socket_activated(
        sockets: &BTreeMap<String, LoadedUnit>,
        services: &BTreeMap<String, Arc<Unit>>,
    ) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = sockets
            .values()
            .filter_map(|s| s.unit.as_ref())
            .map(|u| u.socket.service.clone())
            .collect();
        for (name, u) in services {
            if u.service.sockets.iter().any(|s| sockets.contains_key(s)) {
                out.insert(name.clone());
            }
        }
        out
    }

    /// Takes in the sockets of a new unit set: adds and starts new ones (unless an
    /// operator holds them stopped), updates changed ones, closes removed ones.
    pub(in crate::daemon) fn apply_sockets(
        &mut self,
        loaded: BTreeMap<String, LoadedUnit>,
        restored: Option<&BTreeMap<String, SocketRecord>>,
        commit: &Option<String>,
    ) {
        let gone: Vec<String> = self
            .sockets
            .keys()
            .filter(|n| !loaded.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            tracing::info!("{name}: removed from the repository; its sockets are closed");
            self.close_socket(&name);
            self.sockets.remove(&name);
            self.dirty = true;
        }
        self.broken_sockets.retain(|n, _| loaded.contains_key(n));
        for (name, l) in loaded {
            let Some(unit) = l.unit.clone() else {
                let error = l
                    .diagnostics
                    .iter()
                    .find(|d| d.is_error())
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "failed to load".into());
                tracing::error!("{name}: new version not applied: {error}");
                match self.sockets.get_mut(&name) {
                    Some(s) => s.load_error = Some(error),
                    None => {
                        self.broken_sockets.insert(name, error);
                    }
                }
                continue;
            };
            self.broken_sockets.remove(&name);
            let unit = Arc::new(unit);
            let service_missing = self
                .units
                .get(&unit.socket.service)
                .is_none_or(|m| m.service.is_none());
            let missing_error = service_missing.then(|| {
                format!(
                    "Service=: {} is not a unit of the repository; the socket is not started",
                    unit.socket.service
                )
            });
            match self.sockets.get_mut(&name) {
                Some(s) => {
                    s.load_error = None;
                    if s.hash == l.content_hash {
                        continue;
                    }
                    let rebind = !same_sockets(&s.section, &unit.socket);
                    tracing::info!(
                        "{name}: changed{}",
                        if rebind {
                            "; its sockets are bound again"
                        } else {
                            " (same sockets: they stay open)"
                        }
                    );
                    s.section = Arc::new(unit.socket.clone());
                    s.unit = unit;
                    s.hash = l.content_hash;
                    s.path = l.path;
                    s.commit = commit.clone();
                    if let Some(e) = missing_error {
                        tracing::error!("{name}: {e}");
                        self.close_socket(&name);
                        if let Some(s) = self.sockets.get_mut(&name) {
                            s.result = "resources";
                            s.error = Some(e);
                        }
                    } else if rebind && self.sockets.get(&name).is_some_and(|s| s.is_up()) {
                        self.close_socket(&name);
                        self.start_socket(&name);
                    }
                }
                None => {
                    let mut s = ManagedSocket::new(unit, &l, commit);
                    let old = restored.and_then(|r| r.get(&name));
                    s.operator_override = old.and_then(|o| o.operator_override.clone());
                    let held = s.held_stopped();
                    self.sockets.insert(name.clone(), s);
                    if let Some(e) = missing_error {
                        tracing::error!("{name}: {e}");
                        if let Some(s) = self.sockets.get_mut(&name) {
                            s.result = "resources";
                            s.error = Some(e);
                        }
                    } else if held {
                        tracing::info!("{name}: held stopped by an operator; not started");
                    } else {
                        self.start_socket(&name);
                    }
                }
            }
            self.dirty = true;
        }
    }

    /// Starts listening: a bind on the spawner pool, or, while the service runs with
    /// copies of earlier sockets, once it stops.
    fn start_socket(&mut self, name: &str) {
        let Some(s) = self.sockets.get(name) else {
            return;
        };
        if s.is_up() {
            return;
        }
        let service = s.service().to_string();
        let service_runs = self.is_running(&service);
        let id = self.next_task_id;
        let Some(s) = self.sockets.get_mut(name) else {
            return;
        };
        s.result = "success";
        s.error = None;
        s.triggered = false;
        if service_runs {
            tracing::info!("{name}: {service} runs with sockets of its own; binding once it stops");
            s.deferred = true;
        } else {
            self.next_task_id += 1;
            s.binding = Some(id);
            let socket = Arc::clone(&s.section);
            self.spawner.submit(name, Task::BindSockets { id, socket });
        }
        self.dirty = true;
    }

    /// Stops listening: unwatched, fds closed (the watcher drops its copies as it takes the
    /// command), unix paths removed with `RemoveOnStop=yes`.
    fn close_socket(&mut self, name: &str) {
        let Some(s) = self.sockets.get_mut(name) else {
            return;
        };
        if s.watched.take().is_some() {
            let _ = self.socket_watcher.as_ref().map(|w| w.unwatch(name));
        }
        let had = !s.fds.is_empty();
        s.fds.clear();
        s.binding = None;
        s.deferred = false;
        if had && s.section.remove_on_stop {
            let socket = Arc::clone(&s.section);
            self.spawner
                .submit(name, Task::RemoveSocketPaths { socket });
        }
        self.dirty = true;
    }

    /// The report of a [`Task::BindSockets`].
    pub(super) fn on_sockets_bound(
        &mut self,
        name: &str,
        id: u64,
        result: Result<Vec<Bound>, String>,
    ) {
        let Some(s) = self.sockets.get_mut(name) else {
            return;
        };
        if s.binding != Some(id) {
            return; // stopped or replaced meanwhile: the fds close here
        }
        s.binding = None;
        match result {
            Ok(bound) => {
                let list: Vec<String> =
                    bound.iter().map(|b| b.listen.address.to_string()).collect();
                tracing::info!("{name}: listening on {}", list.join(", "));
                s.fds = bound
                    .into_iter()
                    .map(|b| (Arc::new(b.fd), b.listen))
                    .collect();
            }
            Err(e) => {
                tracing::error!("{name}: failed to listen: {e}");
                s.result = "resources";
                s.error = Some(e);
            }
        }
        self.dirty = true;
    }

    /// "Socket X is readable": starts its service, unless it is already on its way.
    pub(super) fn on_socket_readable(&mut self, r: Readable) {
        let Some(s) = self.sockets.get_mut(&r.unit) else {
            return;
        };
        if s.watched != Some(r.generation) {
            return; // an older watch, unwatched since
        }
        s.watched = None;
        let service = s.service().to_string();
        if self.service_busy(&service) {
            return;
        }
        match self.units.get(&service) {
            Some(m) if m.service.is_some() && !m.held_stopped() => {
                tracing::info!("{}: incoming traffic; starting {service}", r.unit);
                if let Some(s) = self.sockets.get_mut(&r.unit) {
                    s.triggered = true;
                }
                self.queue_start(&service);
            }
            _ => tracing::warn!(
                "{}: incoming traffic, but {service} is not a loaded service; not started",
                r.unit
            ),
        }
        self.dirty = true;
    }

    /// One step of every socket: bind the deferred ones whose service stopped, watch
    /// exactly those that listen while their service is down, fail those whose service
    /// hit its start limit after activation.
    pub(super) fn tick_sockets(&mut self) {
        if self.sockets.is_empty() {
            return;
        }
        let names: Vec<String> = self.sockets.keys().cloned().collect();
        for name in names {
            let Some(s) = self.sockets.get(&name) else {
                continue;
            };
            let service = s.service().to_string();
            let busy = self.service_busy(&service);
            let held = self.units.get(&service).is_some_and(|m| m.held_stopped());
            let limit_hit = self
                .units
                .get(&service)
                .and_then(|m| m.service.as_ref())
                .is_some_and(|svc| svc.status().result == ServiceResult::StartLimitHit);
            if s.deferred && !busy {
                if let Some(s) = self.sockets.get_mut(&name) {
                    s.deferred = false;
                }
                self.start_socket(&name);
                continue;
            }
            if s.triggered && !busy && limit_hit && !s.fds.is_empty() {
                tracing::error!(
                    "{name}: {service} hit its start limit; the socket stops listening (result service-start-limit-hit)"
                );
                self.close_socket(&name);
                if let Some(s) = self.sockets.get_mut(&name) {
                    s.result = "service-start-limit-hit";
                    s.error = Some(format!("{service} hit its start limit"));
                }
                continue;
            }
            let want = !s.fds.is_empty() && !busy && !held;
            match (want, s.watched.is_some()) {
                (true, false) => {
                    let generation = self.next_task_id;
                    self.next_task_id += 1;
                    let fds: Vec<Arc<OwnedFd>> =
                        s.fds.iter().map(|(fd, _)| Arc::clone(fd)).collect();
                    let ok = self
                        .socket_watcher
                        .as_ref()
                        .is_some_and(|w| w.watch(&name, generation, fds).is_ok());
                    if let Some(s) = self.sockets.get_mut(&name) {
                        if ok {
                            s.watched = Some(generation);
                            if !busy && s.triggered && !limit_hit {
                                s.triggered = false;
                            }
                        } else if s.error.is_none() {
                            tracing::error!("{name}: the socket watcher is not running");
                            s.error = Some("the socket watcher is not running".into());
                        }
                    }
                }
                (false, true) => {
                    let _ = self.socket_watcher.as_ref().map(|w| w.unwatch(&name));
                    if let Some(s) = self.sockets.get_mut(&name) {
                        s.watched = None;
                    }
                }
                _ => {}
            }
        }
    }

    /// The sockets whose fds `service`'s main process gets: those naming it in `Service=`,
    /// then those of its `Sockets=`; only the ones listening now.
    pub(super) fn listen_fds_for(&self, service: &str) -> Vec<(Arc<OwnedFd>, String)> {
        let own = self
            .sockets
            .iter()
            .filter(|(_, s)| s.service() == service)
            .map(|(n, _)| n.clone());
        let listed = self
            .units
            .get(service)
            .and_then(|m| m.service.as_ref())
            .map(|svc| svc.unit().service.sockets.clone())
            .unwrap_or_default();
        let mut names: Vec<String> = own.collect();
        for n in listed {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
            .iter()
            .filter_map(|n| self.sockets.get(n))
            .flat_map(|s| {
                s.fds
                    .iter()
                    .map(|(fd, _)| (Arc::clone(fd), s.section.file_descriptor_name.clone()))
            })
            .collect()
    }

    /// The socket units a service's start depends on: its own (`Service=`, `Sockets=`) and
    /// those its `Requires=`/`Wants=`/`BindsTo=` name.
    fn sockets_of(&self, service: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .sockets
            .iter()
            .filter(|(_, s)| s.service() == service)
            .map(|(n, _)| n.clone())
            .collect();
        if let Some(u) = self
            .units
            .get(service)
            .and_then(|m| m.service.as_ref())
            .map(|svc| Arc::clone(svc.unit()))
        {
            let named = u
                .service
                .sockets
                .iter()
                .chain(&u.unit.requires)
                .chain(&u.unit.wants)
                .chain(&u.unit.binds_to);
            for n in named {
                if self.sockets.contains_key(n) && !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// A service about to be queued: its sockets are started first (unless held stopped).
    pub(super) fn start_sockets_of(&mut self, service: &str) {
        for name in self.sockets_of(service) {
            if self.sockets.get(&name).is_some_and(|s| !s.held_stopped()) {
                self.start_socket(&name);
            }
        }
    }

    /// Whether a queued service still waits for one of its sockets to be bound.
    pub(super) fn waits_for_sockets(&self, service: &str) -> bool {
        self.sockets_of(service)
            .iter()
            .any(|n| self.sockets.get(n).is_some_and(|s| s.binding.is_some()))
    }

    /// `gitproc start|stop|restart NAME.socket`; answered after the override is saved.
    pub(super) fn socket_job(
        &mut self,
        units: &[String],
        verb: &str,
        by: String,
        reply: Sender<Reply>,
    ) {
        if let Some(name) = units.iter().find(|u| !u.ends_with(".socket")) {
            let _ = reply.send(Reply::error(
                exit::USAGE,
                format!("{name}: give sockets and other units in separate commands"),
            ));
            return;
        }
        if let Some(name) = units.iter().find(|u| !self.sockets.contains_key(*u)) {
            let why = match self.broken_sockets.get(name) {
                Some(err) => format!("Unit {name} failed to load: {err}"),
                None => format!("Unit {name} not found."),
            };
            let _ = reply.send(Reply::error(exit::NO_SUCH_UNIT, why));
            return;
        }
        if verb == "reload" {
            let _ = reply.send(Reply::error(exit::FAILURE, "sockets cannot be reloaded"));
            return;
        }
        for name in units {
            tracing::info!("operator {by} asked to {verb} {name}");
            if verb == "stop" || verb == "restart" {
                if let Some(service) = self.sockets.get(name).map(|s| s.service().to_string())
                    && self.is_running(&service)
                {
                    tracing::warn!(
                        "{name}: stopped, but {service} still runs and keeps its copies of the sockets"
                    );
                }
                self.close_socket(name);
            }
            let Some(s) = self.sockets.get_mut(name) else {
                continue;
            };
            if verb == "stop" {
                s.operator_override = Some(Override {
                    kind: OverrideKind::Stopped,
                    by: by.clone(),
                    at: unix_now(),
                });
                s.result = "success";
                s.error = None;
            } else {
                s.operator_override = None;
                self.start_socket(name);
            }
        }
        self.dirty = true;
        let answer = Reply::ok(serde_json::json!({ "units": units, "failed": [] }));
        self.answer_after_save(format!("operator {verb}"), reply, answer);
    }

    /// What `state.json` keeps of the sockets: operator stops.
    pub(super) fn persisted_sockets(&self) -> BTreeMap<String, SocketRecord> {
        self.sockets
            .iter()
            .filter(|(_, s)| s.operator_override.is_some())
            .map(|(name, s)| {
                let record = SocketRecord {
                    operator_override: s.operator_override.clone(),
                };
                (name.clone(), record)
            })
            .collect()
    }

    /// The `status` rows of the sockets (named ones only, unless `names` is empty).
    pub(super) fn sockets_json(&self, names: &[String]) -> Vec<serde_json::Value> {
        let wanted = |n: &String| names.is_empty() || names.contains(n);
        let mut rows: Vec<serde_json::Value> = self
            .sockets
            .iter()
            .filter(|(n, _)| wanted(n))
            .map(|(name, s)| {
                let busy = self.service_busy(s.service());
                let (active, sub) = if !s.fds.is_empty() || s.deferred {
                    (
                        "active",
                        if busy || s.deferred {
                            "running"
                        } else {
                            "listening"
                        },
                    )
                } else if s.binding.is_some() {
                    ("activating", "start")
                } else if s.result != "success" {
                    ("failed", "failed")
                } else {
                    ("inactive", "dead")
                };
                let listen: Vec<serde_json::Value> = s
                    .section
                    .listen
                    .iter()
                    .map(|l| {
                        serde_json::json!({
                            "type": l.socket_type.word(),
                            "address": l.address.to_string(),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "name": name,
                    "kind": "socket",
                    "path": s.path,
                    "commit": s.commit,
                    "content_hash": s.hash,
                    "description": s.unit.unit.description,
                    "error": s.load_error.clone().or_else(|| s.error.clone()),
                    "override": s.operator_override.as_ref().map(|o| match o.kind {
                        OverrideKind::Stopped => "stopped",
                        OverrideKind::Started => "started",
                    }),
                    "active_state": active,
                    "sub_state": sub,
                    "result": s.result,
                    "triggers": s.service(),
                    "listen": listen,
                    "file_descriptor_name": s.section.file_descriptor_name,
                })
            })
            .collect();
        rows.extend(
            self.broken_sockets
                .iter()
                .filter(|(n, _)| wanted(n))
                .map(|(name, err)| {
                    serde_json::json!({
                        "name": name,
                        "kind": "socket",
                        "active_state": "failed",
                        "sub_state": "failed",
                        "result": "resources",
                        "error": err,
                        "listen": [],
                    })
                }),
        );
        rows
    }

    pub(super) fn has_socket(&self, name: &str) -> bool {
        self.sockets.contains_key(name) || self.broken_sockets.contains_key(name)
    }
}
