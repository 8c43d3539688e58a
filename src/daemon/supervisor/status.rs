//! The JSON of `gitproc status --json` (systemd's property names in snake case): one object
//! per unit and the daemon's summary; and the `perf` reply.

use super::{Supervisor, unix_of};
use crate::control::protocol::{Reply, exit};
use crate::daemon::managed::Managed;
use crate::state::format::OverrideKind;

pub(crate) fn unit_json(name: &str, m: &Managed) -> serde_json::Value {
    let mut v = serde_json::json!({
        "name": name,
        "path": m.path,
        "commit": m.commit,
        "content_hash": m.hash,
        "error": m.load_error,
        "failed_commit": m.failed_commit,
        // The version a failing new commit would be rolled back to (null until one has
        // stayed up for the trial period).
        "last_good_commit": m.last_good.as_ref().and_then(|g| g.commit.clone()),
        "override": m.operator_override.as_ref().map(|o| match o.kind {
            OverrideKind::Stopped => "stopped",
            OverrideKind::Started => "started",
        }),
        "since": m.since_unix,
        "removed": m.removed,
    });
    match &m.service {
        Some(svc) => {
            let st = svc.status();
            // A start refused by an `Assert*=` (its message starts so) is failed with result
            // "assert"; by a `Condition*=`, inactive: the unit is not for this host.
            let refused = m
                .condition_failed
                .as_ref()
                .filter(|_| st.active_state == crate::service::ActiveState::Inactive);
            let assert = refused.is_some_and(|why| why.starts_with("Assert"));
            let (active, sub) = match refused {
                Some(_) if assert => ("failed".to_string(), "failed".to_string()),
                Some(_) => ("inactive".to_string(), "condition".to_string()),
                None => (st.active_state.to_string(), st.sub_state.to_string()),
            };
            v["description"] = serde_json::json!(svc.unit().unit.description);
            v["active_state"] = serde_json::json!(active);
            v["sub_state"] = serde_json::json!(sub);
            v["result"] = if assert {
                serde_json::json!("assert")
            } else {
                serde_json::json!(st.result.to_string())
            };
            v["main_pid"] = serde_json::json!(st.main_pid);
            v["control_pid"] = serde_json::json!(st.control_pid);
            v["n_restarts"] = serde_json::json!(st.n_restarts);
            v["exec_main_status"] = serde_json::json!(st.exec_main_status);
            // systemd's name of an exit status (217 -> USER), for exits only.
            v["exec_main_status_name"] = serde_json::json!(
                st.exec_main_status
                    .filter(|_| st.exec_main_code == Some("exited"))
                    .and_then(crate::service::exit_code::name)
            );
            v["exec_main_code"] = serde_json::json!(st.exec_main_code);
            v["status_text"] = serde_json::json!(st.status_text);
            v["condition"] = serde_json::json!(m.condition_failed);
            v["type"] = serde_json::json!(svc.unit().service.service_type);
            if m.load_error.is_none()
                && let Some(err) = &st.error
            {
                v["error"] = serde_json::json!(err);
            }
        }
        None => {
            v["active_state"] = serde_json::json!("failed");
            v["sub_state"] = serde_json::json!("dead");
            v["result"] = serde_json::json!("resources");
            v["main_pid"] = serde_json::Value::Null;
            v["n_restarts"] = serde_json::json!(0);
            v["exec_main_status"] = serde_json::Value::Null;
        }
    }
    v
}

impl Supervisor {
    pub(super) fn status_reply(&self, names: &[String]) -> Reply {
        let mut units: Vec<serde_json::Value> = self
            .units
            .iter()
            .filter(|(name, _)| names.is_empty() || names.contains(name))
            .map(|(name, m)| {
                let mut v = unit_json(name, m);
                // Current use costs a few cgroupfs reads per unit (most of the answer's
                // time for 100 units): only for the units asked for by name, as
                // `systemctl status UNIT` shows it; the overview lists the limits only.
                v["resources"] = self.resources_json(name, m, !names.is_empty());
                self.health_json(name, &mut v);
                v
            })
            .collect();
        units.extend(self.timers_json(names));
        units.extend(self.sockets_json(names));
        // Not `json!`: it serialises each argument into a new tree, which for `units` is a
        // deep copy of the whole answer (a fifth of its time with 100 units).
        let mut data = serde_json::Map::new();
        data.insert("daemon".into(), self.daemon_json());
        data.insert("units".into(), serde_json::Value::Array(units));
        let data = serde_json::Value::Object(data);
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !self.units.contains_key(*n) && !self.has_timer(n) && !self.has_socket(n))
            .collect();
        if let Some(name) = missing.first() {
            return Reply::partial(
                exit::NO_SUCH_UNIT,
                format!("Unit {name} could not be found."),
                data,
            );
        }
        Reply::ok(data)
    }

    fn daemon_json(&self) -> serde_json::Value {
        let s = &self.source;
        let w = self.writer.stats();
        serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "repo": self.settings.repo,
            "branch": self.settings.branch,
            "state_dir": self.settings.state_dir,
            "commit": s.applied_commit,
            "commit_subject": s.subject,
            "commit_time": s.commit_time,
            "fetched_commit": s.fetched_tip,
            "verified_commit": s.verified_commit,
            "last_check": s.last_check.map(unix_of),
            "next_check": s.next_check.map(unix_of),
            "poll_interval_s": s.poll_interval.as_secs_f64(),
            "source_error": s.error,
            // The last failed state save and when the failures began; null once a save
            // succeeds again.
            "save_error": w.last_error,
            "save_error_since": w.last_error_since.map(unix_of),
            "shutting_down": self.shutting_down,
            // Rollouts: the identity waves are computed from, the fetched commit waiting
            // for this host's wave (or a thaw), and the operator's freeze.
            "hostname": self.settings.host.hostname,
            "pending": self.pending_json(),
            "frozen": self.freeze_json(),
        })
    }

    pub(super) fn perf_json(&self) -> serde_json::Value {
        let w = self.writer.stats();
        serde_json::json!({
            "operations": self.perf.stats(),
            // Per-unit health probe latencies and failure counts.
            "probes": self.perf.probe_stats(),
            "state_writer": {
                "saves": w.saves,
                "forced_saves": w.forced_saves,
                "failures": w.failures,
                "last_duration_us": w.last_duration.map(|d| d.as_micros() as u64),
                "last_bytes": w.last_bytes,
                "last_error": w.last_error,
                "last_error_since": w.last_error_since.map(unix_of),
            },
            "units": self.units.len(),
        })
    }
}
