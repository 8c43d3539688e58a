//! Control requests and operator jobs (`start`, `stop`, `restart`, `reload`): the override
//! an operator leaves, the forced save before the answer, and the replies that wait until
//! the units have settled (the loop never blocks on a client).

use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::{JobSave, Supervisor, Waiter, unix_now};
use crate::control::protocol::{JobRequest, Reply, Verb, exit};
use crate::control::server::{ControlRequest, Peer};
use crate::service::{ActiveState, Event, Service};
use crate::state::StateError;
use crate::state::format::{Override, OverrideKind};

/// Most a blocking job waits before answering "still running" (the job goes on).
const JOB_WAIT_LIMIT: Duration = Duration::from_secs(600);

impl Supervisor {
    pub(super) fn on_control(&mut self, req: ControlRequest) {
        let ControlRequest {
            verb,
            peer,
            peer_name,
            reply,
        } = req;
        let answer = match verb {
            Verb::Ping => Reply::ok(serde_json::json!({"pong": true})),
            Verb::Status { units } => self.status_reply(&units),
            Verb::Perf => Reply::ok(self.perf_json()),
            Verb::Freeze { reason } => return self.freeze(reason, by(peer, peer_name), reply),
            Verb::Thaw => return self.thaw(by(peer, peer_name), reply),
            Verb::Sync => {
                let token = self.next_token;
                self.next_token += 1;
                self.syncs.insert(token, reply);
                self.request_check(Some(token));
                return;
            }
            Verb::Start(job) => return self.job(job, JobKind::Start, by(peer, peer_name), reply),
            Verb::Stop(job) => return self.job(job, JobKind::Stop, by(peer, peer_name), reply),
            Verb::Restart(job) => {
                return self.job(job, JobKind::Restart, by(peer, peer_name), reply);
            }
            Verb::Reload(job) => return self.job(job, JobKind::Reload, by(peer, peer_name), reply),
        };
        let _ = reply.send(answer);
    }

    /// `by`: the operator's user name (looked up by the control server, off the loop).
    fn job(&mut self, job: JobRequest, kind: JobKind, by: String, reply: Sender<Reply>) {
        if self.shutting_down {
            let _ = reply.send(Reply::error(exit::FAILURE, "the daemon is shutting down"));
            return;
        }
        if job.units.iter().any(|u| u.ends_with(".timer")) {
            return self.timer_job(&job.units, kind.verb(), by, reply);
        }
        if job.units.iter().any(|u| u.ends_with(".socket")) {
            return self.socket_job(&job.units, kind.verb(), by, reply);
        }
        let unknown: Vec<&String> = job
            .units
            .iter()
            .filter(|u| self.units.get(*u).is_none_or(|m| m.service.is_none()))
            .collect();
        if let Some(name) = unknown.first() {
            let why = match self.units.get(*name).and_then(|m| m.load_error.clone()) {
                Some(err) => format!("Unit {name} failed to load: {err}"),
                None => format!("Unit {name} not found."),
            };
            let _ = reply.send(Reply::error(exit::NO_SUCH_UNIT, why));
            return;
        }
        if let JobKind::Reload = kind
            && let Some(name) = job.units.iter().find(|u| {
                self.units
                    .get(*u)
                    .and_then(|m| m.service.as_ref())
                    .is_some_and(|s| !s.can_reload())
            })
        {
            let _ = reply.send(Reply::error(
                1,
                format!("Job for {name} failed: it has no ExecReload= to reload with."),
            ));
            return;
        }
        for name in &job.units {
            let Some(m) = self.units.get_mut(name) else {
                continue;
            };
            match kind {
                JobKind::Start | JobKind::Restart => {
                    if m.operator_override.is_some() {
                        m.operator_override = None;
                    }
                    tracing::info!("operator {by} asked to {} {name}", kind.verb());
                }
                JobKind::Stop => {
                    m.operator_override = Some(Override {
                        kind: OverrideKind::Stopped,
                        by: by.clone(),
                        at: unix_now(),
                    });
                    tracing::info!(
                        "operator {by} stopped {name}; it stays stopped until `gitproc start`"
                    );
                }
                JobKind::Reload => {}
            }
            self.start_queue.retain(|n| n != name);
            match kind {
                JobKind::Start => {
                    if !self.is_running(name) {
                        self.queue_start(name);
                    }
                }
                JobKind::Stop => {
                    self.propagate_stop(name);
                    self.feed(name, Event::Stop)
                }
                JobKind::Restart => {
                    if self.is_running(name) {
                        self.feed(name, Event::Restart);
                        self.propagate_restart(name);
                    } else {
                        self.queue_start(name)
                    }
                }
                JobKind::Reload => self.feed(name, Event::Reload),
            }
        }
        self.process_queues();
        // Operator start/stop is durable before we answer: the answer goes out once the
        // forced save that follows it is on disk, its result coming back through the loop's
        // select (`job_saved`); the loop never waits for the fsync. A blocking job is saved
        // when its units have settled, so that the state on disk is the one answered.
        let waiter = Waiter {
            units: job.units.clone(),
            stopping: matches!(kind, JobKind::Stop),
            reply,
            deadline: Instant::now() + JOB_WAIT_LIMIT,
        };
        if job.wait {
            self.dirty = true;
            self.waiters.push(waiter);
            self.settle_waiters(Instant::now());
        } else {
            let answer = Reply::ok(serde_json::json!({
                "queued": job.units,
            }));
            self.answer_after_save(format!("operator {}", kind.verb()), waiter.reply, answer);
        }
    }

    /// Forces a save of the current state and sends `answer` once it is on disk.
    pub(super) fn answer_after_save(&mut self, what: String, reply: Sender<Reply>, answer: Reply) {
        self.writer.submit(self.persisted());
        self.dirty = false;
        self.job_saves.push(JobSave {
            saved: self.writer.flush_async(),
            what,
            reply,
            answer,
        });
    }

    /// The forced save of an operator job is on disk (or failed): answer the job.
    pub(super) fn job_saved(&mut self, save: JobSave, result: Result<(), StateError>) {
        let mut answer = save.answer;
        if let Err(err) = result {
            tracing::error!("state save after {} failed: {err}", save.what);
            answer.warning = Some(save_warning(&err.to_string()));
        }
        let _ = save.reply.send(answer);
    }

    /// At shutdown: answers the jobs whose save is still on its way (the final save has
    /// been flushed by then, so these channels have their answer).
    pub(super) fn drain_job_saves(&mut self) {
        for save in std::mem::take(&mut self.job_saves) {
            let result = save
                .saved
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or(Err(StateError::WriterGone));
            self.job_saved(save, result);
        }
    }

    /// Answers operators whose jobs have finished.
    pub(super) fn settle_waiters(&mut self, now: Instant) {
        let waiters = std::mem::take(&mut self.waiters);
        for w in waiters {
            let states: Vec<(String, Option<crate::service::Status>)> = w
                .units
                .iter()
                .map(|u| {
                    (
                        u.clone(),
                        self.units
                            .get(u)
                            .and_then(|m| m.service.as_ref())
                            .map(Service::status),
                    )
                })
                .collect();
            let settled = states.iter().all(|(name, st)| match st {
                None => true,
                Some(st) => {
                    let queued = self.start_queue.contains(name);
                    if w.stopping {
                        matches!(st.active_state, ActiveState::Inactive | ActiveState::Failed)
                    } else {
                        !queued
                            && !matches!(
                                st.active_state,
                                ActiveState::Activating
                                    | ActiveState::Deactivating
                                    | ActiveState::Reloading
                            )
                    }
                }
            });
            if !settled && now < w.deadline {
                self.waiters.push(w);
                continue;
            }
            let failed: Vec<String> = states
                .iter()
                .filter(|(name, st)| {
                    let held = self
                        .units
                        .get(name)
                        .is_some_and(|m| m.condition_failed.is_some());
                    match st {
                        None => true,
                        Some(st) if w.stopping => st.active_state == ActiveState::Activating,
                        Some(st) => {
                            let reached = matches!(
                                st.active_state,
                                ActiveState::Active | ActiveState::Reloading
                            ) || (st.active_state == ActiveState::Inactive
                                && st.result == crate::service::ServiceResult::Success);
                            !held && !reached
                        }
                    }
                })
                .map(|(name, _)| name.clone())
                .collect();
            let data = serde_json::json!({ "units": w.units, "failed": failed });
            let reply = if !settled {
                Reply::partial(
                    exit::FAILURE,
                    "timed out waiting for the job; it continues in the background",
                    data,
                )
            } else if failed.is_empty() {
                Reply::ok(data)
            } else {
                Reply::partial(
                    exit::FAILURE,
                    format!(
                        "Job for {} failed. See `gitproc status {}` and `gitproc logs {}` for details.",
                        failed.join(", "),
                        failed[0],
                        failed[0]
                    ),
                    data,
                )
            };
            let what = format!("operator job on {}", w.units.join(", "));
            self.answer_after_save(what, w.reply, reply);
        }
    }
}

/// Who asked, as overrides and log lines name them.
fn by(peer: Peer, name: Option<String>) -> String {
    name.unwrap_or_else(|| format!("uid {}", peer.uid))
}

#[derive(Debug, Clone, Copy)]
enum JobKind {
    Start,
    Stop,
    Restart,
    Reload,
}

impl JobKind {
    fn verb(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
            JobKind::Reload => "reload",
        }
    }
}

/// What an operator is told when the save that makes a job durable failed.
fn save_warning(err: &str) -> String {
    format!(
        "the state could not be saved: {err} (the change is in effect but will not survive a daemon restart; `gitproc status` shows the save error until a save succeeds)"
    )
}
