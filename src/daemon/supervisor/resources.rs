//! Resource control in the loop: what a spawn job carries for `runtime::resources`, what
//! the loop keeps of its answer (the limits written, the OOM counter), the OOM check at a
//! main exit, the `resources` object of `status`, and the removal of a stopped unit's
//! cgroup v1 directories. The loop itself only computes paths and reads a few cgroupfs
//! files; creating directories and writing limits happen on the spawner pool.

use std::sync::Arc;

use super::Supervisor;
use crate::daemon::managed::Managed;
use crate::daemon::spawner::Task;
use crate::runtime::resources::{Prepared, ResourceRoots, UnitCgroups};
use crate::service::{Event, ExitStatus};
use crate::unit::model::Unit;

impl Supervisor {
    fn unit_cgroups(&self, name: &str, m: &Managed) -> UnitCgroups {
        let v2 = m.tracker.cgroup().map(|c| c.path());
        self.resource_roots.unit(name, v2)
    }

    /// What a spawn of `name` needs for resource control; `None` when there is nothing to
    /// do (no cgroup hierarchy to use and no setting that would need one).
    pub(super) fn resource_job(
        &self,
        name: &str,
        unit: &Arc<Unit>,
    ) -> Option<(ResourceRoots, UnitCgroups)> {
        let m = self.units.get(name)?;
        let cgroups = self.unit_cgroups(name, m);
        if cgroups == UnitCgroups::default() && unit.service.resources.is_empty() {
            return None;
        }
        Some((self.resource_roots.clone(), cgroups))
    }

    /// The spawner prepared the cgroups of `name`'s main process: keep the limits and the
    /// OOM counter, and say in the unit's log what is not enforced.
    pub(super) fn resources_prepared(&mut self, name: &str, prepared: Prepared) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        m.limits = prepared.applied;
        m.oom_kills = prepared.oom_kills;
        m.v1_cgroups = prepared.join;
        for warning in &prepared.warnings {
            tracing::warn!("{name}: {warning}");
            let _ = self.logs.note(name, &format!("gitproc: {warning}"));
        }
    }

    /// A commit changed only the resource settings of `name`: as systemd's daemon-reload,
    /// they are written in place, without a restart. `false` when the unit is not running
    /// (the caller restarts it as for any change).
    pub(in crate::daemon) fn update_resources_live(&mut self, name: &str) -> bool {
        if !self.is_running(name) {
            return false;
        }
        let Some(m) = self.units.get(name) else {
            return false;
        };
        let Some(svc) = m.service.as_ref() else {
            return false;
        };
        let task = Task::UpdateResources {
            roots: self.resource_roots.clone(),
            cgroups: self.unit_cgroups(name, m),
            resources: Box::new(svc.unit().service.resources.clone()),
            pids: m.tracker.members(),
            joined: m.v1_cgroups.clone(),
        };
        let line = "only resource settings changed: limits rewritten in place, no restart";
        tracing::info!("{name}: {line}");
        let _ = self.logs.note(name, &format!("gitproc: {line}"));
        self.spawner.submit(name, task);
        true
    }

    /// The answer to [`Self::update_resources_live`]: the limits now in force.
    pub(super) fn resources_updated(&mut self, name: &str, prepared: Prepared) {
        let Some(m) = self.units.get_mut(name) else {
            return;
        };
        m.limits = prepared.applied;
        for dir in prepared.join {
            if !m.v1_cgroups.contains(&dir) {
                m.v1_cgroups.push(dir);
            }
        }
        for warning in &prepared.warnings {
            tracing::warn!("{name}: {warning}");
            let _ = self.logs.note(name, &format!("gitproc: {warning}"));
        }
    }

    /// Before a main process's exit reaches its machine: a process killed by a signal while
    /// the unit's memory cgroup counted a new OOM kill was the OOM killer's (systemd's
    /// result `oom-kill`). One small cgroupfs read, only for signal deaths.
    pub(super) fn check_oom(&mut self, name: &str, pid: i32, status: ExitStatus) {
        if !matches!(status, ExitStatus::Signaled { signal, .. } if signal == libc::SIGKILL) {
            return;
        }
        let Some(m) = self.units.get(name) else {
            return;
        };
        let is_main = m
            .service
            .as_ref()
            .is_some_and(|s| s.status().main_pid == Some(pid));
        let Some(before) = m.oom_kills.filter(|_| is_main) else {
            return;
        };
        let now = self.unit_cgroups(name, m).oom_kills();
        if now.is_some_and(|n| n > before) {
            tracing::warn!("{name}: main process {pid} was killed by the OOM killer");
            if let Some(m) = self.units.get_mut(name) {
                m.oom_kills = now;
            }
            self.feed(name, Event::OomKilled { pid });
        }
    }

    /// At shutdown, after every unit stopped: every unit's v1 directories, then gitproc's.
    pub(super) fn remove_all_cgroups(&self) {
        for (name, m) in &self.units {
            self.unit_cgroups(name, m).remove();
        }
        self.resource_roots.remove();
    }

    /// `status`: the limits written for the current run and what the unit uses now.
    pub(super) fn resources_row<'a>(
        &self,
        name: &str,
        m: &'a Managed,
        with_usage: bool,
    ) -> super::status::Resources<'a> {
        let running = with_usage
            && m.service.as_ref().is_some_and(|s| {
                !matches!(
                    s.status().active_state,
                    crate::service::ActiveState::Inactive | crate::service::ActiveState::Failed
                )
            });
        let usage = if running {
            self.unit_cgroups(name, m)
                .usage(m.tracker.cgroup().map(|c| c.path()))
        } else {
            Default::default()
        };
        super::status::Resources {
            cgroups_v1: &m.v1_cgroups,
            cpu_usage_nsec: usage.cpu_usage_ns,
            limits: m
                .limits
                .iter()
                .map(|w| super::status::Limit {
                    file: &w.file,
                    key: w.key,
                    value: &w.value,
                })
                .collect(),
            memory_current: usage.memory_bytes,
            tasks_current: usage.tasks,
        }
    }
}
