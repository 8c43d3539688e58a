//! What the processes tell the loop: exits (reaped, or seen through a pidfd for adopted
//! processes), emptied process groups, notify datagrams; and adopting a process a previous
//! daemon left running.

use std::time::Instant;

use super::{Supervisor, unix_now};
use crate::logs::collector::Stream;
use crate::runtime::notify_socket::NotifyDatagram;
use crate::service::{ActiveState, Event, ExitStatus, NotifyMessage};

/// At most this many early notify datagrams are kept (the oldest go first).
const EARLY_NOTIFY_KEPT: usize = 64;

impl Supervisor {
    pub(super) fn reap(&mut self) {
        for (pid, info) in crate::daemon::reaper::reap(&self.pids) {
            let status = if let Some(sig) = info.signal {
                ExitStatus::Signaled {
                    signal: sig,
                    core_dumped: info.core_dumped,
                }
            } else {
                ExitStatus::Exited(info.code.unwrap_or(0))
            };
            self.on_exit(pid, status);
        }
        self.check_groups();
    }

    /// Services stopping wait for their whole process group (as systemd waits for the
    /// cgroup): tell them when it has emptied. Only stopping services are checked, so the
    /// /proc scan stays off the restart path.
    fn check_groups(&mut self) {
        let stopping: Vec<String> = self
            .units
            .iter()
            .filter(|(_, m)| {
                m.service
                    .as_ref()
                    .is_some_and(|s| s.status().active_state == ActiveState::Deactivating)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in stopping {
            let empty = self.units.get_mut(&name).is_some_and(|m| {
                m.tracker.prune();
                m.tracker.members().is_empty()
            });
            if empty {
                self.feed(&name, Event::GroupEmpty);
            }
        }
    }

    pub(super) fn on_exit(&mut self, pid: i32, status: ExitStatus) {
        if self.on_probe_exit(pid, status) {
            return;
        }
        let Some(name) = self.pids.remove(&pid) else {
            // An orphaned grandchild we reaped as subreaper, or a process just spawned
            // whose report the loop has not read yet (see `spawns`).
            self.note_unclaimed_exit(pid, status);
            return;
        };
        if let Some(m) = self.units.get_mut(&name) {
            if m.main_start_time.is_some_and(|(p, _)| p == pid) {
                m.exited_at = Some(Instant::now());
            }
            m.tracker.prune();
        }
        self.check_oom(&name, pid, status);
        self.feed(&name, Event::Exited { pid, status });
    }

    pub(super) fn on_adopted_exit(&mut self, pid: i32) {
        self.on_exit(pid, ExitStatus::Unknown);
    }

    /// A datagram is accepted only from a process proven to be the unit's: a pid we track,
    /// else one in the unit's cgroup, else one in a session of the unit (credentials from
    /// the kernel, SO_PASSCRED); then `NotifyAccess=` narrows it. Anything else is dropped.
    pub(super) fn on_notify(&mut self, dgram: NotifyDatagram) {
        use crate::runtime::notify_socket::cgroup_within;
        let owner = self.pids.get(&dgram.pid).cloned().or_else(|| {
            self.units
                .iter()
                .find(|(_, m)| {
                    let in_cgroup = dgram.cgroup.as_deref().is_some_and(|cg| {
                        m.tracker
                            .cgroup()
                            .is_some_and(|u| cgroup_within(cg, u.path()))
                    });
                    let in_session = dgram
                        .session
                        .is_some_and(|s| m.tracker.sessions().contains(&s));
                    in_cgroup || in_session
                })
                .map(|(name, _)| name.clone())
        });
        let allowed = owner.as_ref().is_some_and(|name| {
            self.units
                .get(name)
                .and_then(|m| m.service.as_ref())
                .is_some_and(|s| s.notify_access_allows(dgram.pid))
        });
        // Also kept while the unit's own spawn is in flight: its main pid is not known yet,
        // so a READY=1 (even an allowed one, from a child) would find no main process.
        let spawn_pending = owner.as_ref().is_some_and(|n| self.spawns.contains_key(n));
        if (!allowed || spawn_pending) && self.spawner.is_busy() {
            if self.early_notify.len() >= EARLY_NOTIFY_KEPT {
                self.early_notify.remove(0);
            }
            self.early_notify.push(dgram);
            return;
        }
        let Some(name) = owner else {
            tracing::debug!(
                "notify message from pid {} (uid {}) that is not a process of any unit; ignored",
                dgram.pid,
                dgram.uid
            );
            return;
        };
        if !allowed {
            tracing::debug!(
                "{name}: notify message from pid {} ignored: NotifyAccess= does not allow it",
                dgram.pid
            );
            return;
        }
        let mut message = NotifyMessage::parse(&dgram.data);
        if let Some(main) = message.main_pid
            && self.pids.get(&main) != Some(&name)
            && !self.pid_trust(&name).belongs(main)
        {
            // systemd: "New main PID does not belong to service, refusing."
            let text = format!("MAINPID={main} refused: pid {main} does not belong to the service");
            tracing::warn!("{name}: {text}");
            let _ = self.logs.note(&name, &format!("gitproc: {text}"));
            message.main_pid = None;
        }
        self.feed(
            &name,
            Event::Notify {
                pid: dgram.pid,
                message,
            },
        );
    }

    /// What a main pid named by `PIDFile=` or `MAINPID=` must belong to (see
    /// [`crate::runtime::main_pid`]).
    pub(super) fn pid_trust(&self, name: &str) -> crate::runtime::main_pid::PidTrust {
        let Some(m) = self.units.get(name) else {
            return Default::default();
        };
        let user = m
            .service
            .as_ref()
            .and_then(|s| s.unit().service.user.clone());
        crate::runtime::main_pid::PidTrust {
            cgroup: m.tracker.cgroup().map(|c| c.path().to_path_buf()),
            sessions: m.tracker.sessions().to_vec(),
            runs_as_root: nix::unistd::geteuid().is_root()
                && user.is_none_or(|u| u == "root" || u == "0"),
        }
    }

    /// Where the guess of a `Type=forking` main process looks (see
    /// [`crate::runtime::main_pid::guess_main_pid`]): the unit's cgroup and sessions, the
    /// markers of this run's processes, and the pids that are already something else.
    pub(super) fn guess_scope(&self, name: &str) -> crate::runtime::main_pid::GuessScope {
        use crate::daemon::discovery::{STATE_VAR, UNIT_VAR};
        let Some(m) = self.units.get(name) else {
            return Default::default();
        };
        crate::runtime::main_pid::GuessScope {
            trust: self.pid_trust(name),
            markers: vec![
                (UNIT_VAR.to_string(), name.to_string()),
                (STATE_VAR.to_string(), self.settings.instance.clone()),
                ("INVOCATION_ID".to_string(), m.invocation_id.clone()),
            ],
            known: m
                .service
                .as_ref()
                .and_then(|s| s.status().control_pid)
                .into_iter()
                .collect(),
        }
    }

    /// A main pid the service did not spawn directly (read from `PIDFile=`, or guessed):
    /// record its start time, so it is signalled only while it is that process, and watch
    /// it by pidfd when it is not our child (its exit would not reach `waitpid`).
    pub(super) fn record_main(&mut self, name: &str, pid: i32, start_time: Option<u64>) {
        let Some(start_time) = start_time
            .or_else(|| crate::state::identity::ProcessIdentity::read(pid).map(|id| id.start_time))
        else {
            return; // gone already: the machine learns it from the reaper
        };
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        m.main_start_time = Some((pid, start_time));
        self.pids.insert(pid, name.to_string());
        let our_child = crate::sys::procstat::read_stat(pid)
            .is_ok_and(|st| st.ppid == std::process::id() as i32);
        if !our_child && let Err(err) = self.pidfds.watch(pid, start_time) {
            tracing::warn!("{name}: cannot watch main pid {pid}: {err}");
        }
    }

    /// Hands the datagrams kept while a spawn was in flight to [`Self::on_notify`] again, in
    /// the order received, now that one more process is known.
    pub(super) fn replay_early_notify(&mut self) {
        for dgram in std::mem::take(&mut self.early_notify) {
            self.on_notify(dgram);
        }
    }

    pub(in crate::daemon) fn adopt(&mut self, name: &str, pid: i32, start_time: u64) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        let Some(svc) = m.service.as_mut() else {
            return;
        };
        let effects = svc.adopt(pid, Instant::now());
        m.main_start_time = Some((pid, start_time));
        m.tracker.add_session(pid);
        m.since_unix = Some(unix_now());
        self.pids.insert(pid, name.to_string());
        if let Err(err) = self.pidfds.watch(pid, start_time) {
            tracing::warn!("{name}: cannot watch adopted pid {pid}: {err}");
        }
        // Its output pipes outlived the previous daemon (see `ChildCtx::run`): read them on.
        use crate::runtime::spawn::{OutputTarget, reopen_log_pipes};
        let unit = &svc.unit().service;
        let stdout = OutputTarget::stdout_of(unit) == OutputTarget::Pipe;
        let stderr = OutputTarget::stderr_of(unit) == OutputTarget::Pipe;
        for (fd, is_stderr) in reopen_log_pipes(pid, stdout, stderr) {
            let stream = if is_stderr {
                Stream::Stderr
            } else {
                Stream::Stdout
            };
            let _ = self.logs.add(name, fd, stream);
        }
        tracing::info!("Adopted {name} (pid {pid}) from the previous daemon");
        for effect in effects {
            if let Some(ev) = self.perform(name, effect) {
                self.feed(name, ev);
            }
        }
        // An adopted run with a health check is probed afresh (health is not persisted).
        self.sync_health(name);
        self.reindex(name);
        self.dirty = true;
    }
}
