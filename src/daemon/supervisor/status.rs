//! The JSON of `gitproc status --json` (systemd's property names in snake case): one object
//! per unit and the daemon's summary; and the `perf` reply.
//!
//! A service unit's object is a typed [`ServiceRow`], serialised once on the loop into the
//! reply's raw JSON: building a `serde_json::Value` tree per unit (a map insert and a
//! string allocation per key) was most of the answer's time for 100 units.

use std::borrow::Cow;

use serde::Serialize;

use super::{Supervisor, unix_of};
use crate::control::protocol::{Reply, exit};
use crate::daemon::managed::Managed;
use crate::state::format::OverrideKind;
use crate::unit::model::ServiceType;

/// One service unit of `status --json`. The fields are in alphabetical order, the order the
/// JSON has always had (it was a `BTreeMap`) and the one the CLI prints as it reads: keep
/// it so (a test checks). `Option<Option<T>>` is a key that is absent (outer `None`) or
/// `null`: absent for a unit whose file failed to load, or without a health check.
#[derive(Serialize)]
pub(crate) struct ServiceRow<'a> {
    active_state: Cow<'static, str>,
    commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<Option<&'a str>>,
    content_hash: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_pid: Option<Option<i32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Option<&'a str>>,
    error: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_main_code: Option<Option<&'static str>>,
    exec_main_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec_main_status_name: Option<Option<&'static str>>,
    failed_commit: Option<&'a str>,
    /// `null` without a health check; the other `health*` and `last_probe*` keys only with.
    health: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_connections: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_failed_probes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_probe: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_probes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_probing: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    health_since: Option<u64>,
    /// The version a failing new commit would be rolled back to (null until one has
    /// stayed up for the trial period).
    last_good_commit: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_probe: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_probe_ok: Option<Option<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_probe_output: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_probe_result: Option<Option<&'a str>>,
    main_pid: Option<i32>,
    n_restarts: u32,
    name: &'a str,
    #[serde(rename = "override")]
    operator_override: Option<&'static str>,
    path: &'a str,
    removed: bool,
    resources: Resources<'a>,
    result: Cow<'static, str>,
    since: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_text: Option<Option<String>>,
    sub_state: Cow<'static, str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    service_type: Option<ServiceType>,
}

/// `resources` of a [`ServiceRow`]: the limits written for the current run and, for a unit
/// asked for by name, what it uses now (alphabetical, as the row).
#[derive(Serialize)]
pub(crate) struct Resources<'a> {
    pub(super) cgroups_v1: &'a [std::path::PathBuf],
    pub(super) cpu_usage_nsec: Option<u64>,
    pub(super) limits: Vec<Limit<'a>>,
    pub(super) memory_current: Option<u64>,
    pub(super) tasks_current: Option<u64>,
}

#[derive(Serialize)]
pub(crate) struct Limit<'a> {
    pub(super) file: &'a std::path::Path,
    pub(super) key: &'static str,
    pub(super) value: &'a str,
}

/// What `status` shows of a unit's health check (see `Supervisor::health_view`).
pub(crate) struct HealthView<'a> {
    pub(super) state: &'static str,
    pub(super) since: u64,
    pub(super) probe: &'static str,
    pub(super) probing: bool,
    pub(super) last_at: Option<u64>,
    pub(super) last: Option<&'a crate::service::health::ProbeOutcome>,
    pub(super) probes: u64,
    pub(super) failed_probes: u64,
    pub(super) connections: u64,
}

impl<'a> ServiceRow<'a> {
    pub(crate) fn new(
        name: &'a str,
        m: &'a Managed,
        resources: Resources<'a>,
        health: Option<HealthView<'a>>,
    ) -> ServiceRow<'a> {
        let mut row = ServiceRow {
            active_state: "failed".into(),
            commit: m.commit.as_deref(),
            condition: None,
            content_hash: m.hash.as_deref(),
            control_pid: None,
            description: None,
            error: m.load_error.as_deref().map(Cow::Borrowed),
            exec_main_code: None,
            exec_main_status: None,
            exec_main_status_name: None,
            failed_commit: m.failed_commit.as_deref(),
            health: None,
            health_connections: None,
            health_failed_probes: None,
            health_probe: None,
            health_probes: None,
            health_probing: None,
            health_since: None,
            last_good_commit: m.last_good.as_ref().and_then(|g| g.commit.as_deref()),
            last_probe: None,
            last_probe_ok: None,
            last_probe_output: None,
            last_probe_result: None,
            main_pid: None,
            n_restarts: 0,
            name,
            operator_override: m.operator_override.as_ref().map(|o| match o.kind {
                OverrideKind::Stopped => "stopped",
                OverrideKind::Started => "started",
            }),
            path: &m.path,
            removed: m.removed,
            resources,
            // A unit whose file failed to load has no service: failed for lack of one.
            result: "resources".into(),
            since: m.since_unix,
            status_text: None,
            sub_state: "dead".into(),
            service_type: None,
        };
        if let Some(svc) = &m.service {
            let st = svc.status();
            // A start refused by an `Assert*=` (its message starts so) is failed with result
            // "assert"; by a `Condition*=`, inactive: the unit is not for this host.
            let refused = m
                .condition_failed
                .as_ref()
                .filter(|_| st.active_state == crate::service::ActiveState::Inactive);
            let assert = refused.is_some_and(|why| why.starts_with("Assert"));
            (row.active_state, row.sub_state) = match refused {
                Some(_) if assert => ("failed".into(), "failed".into()),
                Some(_) => ("inactive".into(), "condition".into()),
                None => (
                    st.active_state.to_string().into(),
                    st.sub_state.to_string().into(),
                ),
            };
            row.result = if assert {
                "assert".into()
            } else {
                st.result.to_string().into()
            };
            row.description = Some(svc.unit().unit.description.as_deref());
            row.main_pid = st.main_pid;
            row.control_pid = Some(st.control_pid);
            row.n_restarts = st.n_restarts;
            row.exec_main_status = st.exec_main_status;
            // systemd's name of an exit status (217 -> USER), for exits only.
            row.exec_main_status_name = Some(
                st.exec_main_status
                    .filter(|_| st.exec_main_code == Some("exited"))
                    .and_then(crate::service::exit_code::name),
            );
            row.exec_main_code = Some(st.exec_main_code);
            row.condition = Some(m.condition_failed.as_deref());
            row.service_type = Some(svc.unit().service.service_type);
            if m.load_error.is_none() {
                row.error = st.error.map(Cow::Owned);
            }
            row.status_text = Some(st.status_text);
        }
        if let Some(h) = health {
            row.health = Some(h.state);
            row.health_since = Some(h.since);
            row.health_probe = Some(h.probe);
            row.health_probing = Some(h.probing);
            row.last_probe = Some(h.last_at);
            row.last_probe_result = Some(h.last.map(|o| o.summary.as_str()));
            row.last_probe_ok = Some(h.last.map(|o| o.ok));
            row.last_probe_output = Some(h.last.map(|o| o.output.as_str()));
            row.health_probes = Some(h.probes);
            row.health_failed_probes = Some(h.failed_probes);
            row.health_connections = Some(h.connections);
        }
        row
    }
}

/// The `units` array of a status answer: each service's [`ServiceRow`], made as it is
/// written, then the timers' and sockets' objects.
struct Units<'a> {
    supervisor: &'a Supervisor,
    /// The units asked for; empty for all.
    names: &'a [String],
    others: Vec<serde_json::Value>,
}

impl Serialize for Units<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let sup = self.supervisor;
        let mut seq = s.serialize_seq(None)?;
        for (name, m) in &sup.units {
            if !self.names.is_empty() && !self.names.contains(name) {
                continue;
            }
            // Current use costs a few cgroupfs reads per unit (most of the answer's time
            // for 100 units): only for the units asked for by name, as `systemctl status
            // UNIT` shows it; the overview lists the limits only.
            let resources = sup.resources_row(name, m, !self.names.is_empty());
            seq.serialize_element(&ServiceRow::new(name, m, resources, sup.health_view(name)))?;
        }
        for other in &self.others {
            seq.serialize_element(other)?;
        }
        seq.end()
    }
}

impl Supervisor {
    pub(super) fn status_reply(&self, names: &[String]) -> Reply {
        #[derive(Serialize)]
        struct Data<'a> {
            daemon: serde_json::Value,
            units: Units<'a>,
        }
        let mut others = self.timers_json(names);
        others.extend(self.sockets_json(names));
        let data = Data {
            daemon: self.daemon_json(),
            units: Units {
                supervisor: self,
                names,
                others,
            },
        };
        let data = match serde_json::value::to_raw_value(&data) {
            Ok(raw) => raw,
            // Not reachable for these types (string keys, finite numbers); said, not hidden.
            Err(e) => return Reply::error(exit::FAILURE, format!("status: {e}")),
        };
        let missing: Vec<&String> = names
            .iter()
            .filter(|n| !self.units.contains_key(*n) && !self.has_timer(n) && !self.has_socket(n))
            .collect();
        if let Some(name) = missing.first() {
            return Reply::partial_raw(
                exit::NO_SUCH_UNIT,
                format!("Unit {name} could not be found."),
                data,
            );
        }
        Reply::ok_raw(data)
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
            // The C allocator's totals: a leak grows `in_use_bytes`; memory freed but
            // kept shows as `free_bytes` (null where the C library does not tell).
            "allocator": crate::sys::malloc::stats(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::kill::ProcessTracker;
    use crate::service::Service;
    use crate::service::health::ProbeOutcome;

    /// The object's keys in the order they were written.
    fn keys(json: &str) -> Vec<String> {
        struct Keys(Vec<String>);
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = a.next_key::<String>()? {
                    a.next_value::<serde::de::IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        impl<'de> serde::Deserialize<'de> for Keys {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
                d.deserialize_map(Visit)
            }
        }
        serde_json::from_str::<Keys>(json).expect("an object").0
    }

    fn no_resources() -> Resources<'static> {
        Resources {
            cgroups_v1: &[],
            cpu_usage_nsec: None,
            limits: Vec::new(),
            memory_current: None,
            tasks_current: None,
        }
    }

    fn assert_sorted(json: &str) -> Vec<String> {
        let k = keys(json);
        let mut sorted = k.clone();
        sorted.sort();
        assert_eq!(k, sorted, "keys out of alphabetical order: {json}");
        k
    }

    #[test]
    fn a_unit_that_failed_to_load_has_the_short_row_in_key_order() {
        let mut m = Managed::new(None, "units/a.service".into(), ProcessTracker::new(None));
        m.load_error = Some("units/a.service:3: bad".into());
        let json = serde_json::to_string(&ServiceRow::new("a.service", &m, no_resources(), None))
            .expect("serialise");
        let k = assert_sorted(&json);
        assert_eq!(
            k.join(" "),
            "active_state commit content_hash error exec_main_status failed_commit health \
             last_good_commit main_pid n_restarts name override path removed resources result \
             since sub_state"
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["active_state"], "failed");
        assert_eq!(v["result"], "resources");
        assert_eq!(v["error"], "units/a.service:3: bad");
        assert!(v["health"].is_null());
    }

    #[test]
    fn a_service_with_a_health_check_has_every_key_in_key_order() {
        let service = Service::new(Arc::new(crate::unit::model::Unit::default()));
        let m = Managed::new(
            Some(service),
            "units/b.service".into(),
            ProcessTracker::new(None),
        );
        let outcome = ProbeOutcome::new(true, "HTTP 200", "ok");
        let health = HealthView {
            state: "healthy",
            since: 7,
            probe: "HTTP",
            probing: true,
            last_at: Some(8),
            last: Some(&outcome),
            probes: 3,
            failed_probes: 1,
            connections: 1,
        };
        let limit_file = std::path::PathBuf::from("/sys/fs/cgroup/memory/x/memory.limit_in_bytes");
        let resources = Resources {
            limits: vec![Limit {
                file: &limit_file,
                key: "MemoryMax",
                value: "1048576",
            }],
            ..no_resources()
        };
        let json =
            serde_json::to_string(&ServiceRow::new("b.service", &m, resources, Some(health)))
                .expect("serialise");
        let k = assert_sorted(&json);
        assert_eq!(
            k.join(" "),
            "active_state commit condition content_hash control_pid description error \
             exec_main_code exec_main_status exec_main_status_name failed_commit health \
             health_connections health_failed_probes health_probe health_probes health_probing \
             health_since last_good_commit last_probe last_probe_ok last_probe_output \
             last_probe_result main_pid n_restarts name override path removed resources result \
             since status_text sub_state type"
        );
        let v: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(v["active_state"], "inactive");
        assert_eq!(v["type"], "simple");
        assert_eq!(v["last_probe_result"], "HTTP 200");
        assert_eq!(v["health_connections"], 1);
        // Nested objects as written, not as a (sorted) tree would print them.
        type Raw = Box<serde_json::value::RawValue>;
        let fields: std::collections::BTreeMap<String, Raw> =
            serde_json::from_str(&json).expect("JSON");
        assert_sorted(fields["resources"].get());
        let resources: std::collections::BTreeMap<String, Raw> =
            serde_json::from_str(fields["resources"].get()).expect("JSON");
        let limits: Vec<Raw> = serde_json::from_str(resources["limits"].get()).expect("JSON");
        assert_eq!(assert_sorted(limits[0].get()), ["file", "key", "value"]);
    }
}
