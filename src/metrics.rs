//! The Prometheus view of a daemon (pure): a [`Snapshot`] of facts the event loop copies
//! out in one message, rendered here into the text exposition format (version 0.0.4)
//! through `prometheus-client`'s encoders.
//!
//! The loop only copies numbers and names (a few hundred bytes per unit); all formatting
//! happens on the HTTP thread that asked, so a scrape costs the loop next to nothing.
//! Nothing is kept between scrapes: the metrics are the loop's own state at that moment
//! (`ConstGauge`/`ConstCounter` style, through a [`Collector`]), so there is no second copy
//! of supervisor state to keep in step.
//!
//! Names: `gitproc_` prefix, seconds and Unix timestamps in seconds, `_total` counters.

use std::time::Duration;

use crossbeam_channel::Sender;
use hdrhistogram::Histogram;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::service::ActiveState;

/// A request for a [`Snapshot`]: the HTTP thread sends it to the loop and waits (with a
/// deadline) on `reply`.
#[derive(Debug)]
pub struct MetricsQuery {
    pub reply: Sender<Snapshot>,
}

/// Everything `/metrics` shows, as the loop saw it when it answered.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub repo: String,
    pub branch: Option<String>,
    pub hostname: String,
    /// The commit whose units are applied.
    pub applied_commit: Option<String>,
    /// The tip the last successful check saw.
    pub fetched_commit: Option<String>,
    /// Unix seconds of the last check (successful or not) and of the last successful one.
    pub last_check_unix: Option<f64>,
    pub last_success_unix: Option<f64>,
    /// How long the applied commit has differed from the fetched tip (0 when on the tip).
    pub behind_tip: Duration,
    pub poll_interval: Duration,
    /// Whether the last check failed, and how many checks failed since the daemon started.
    pub source_error: bool,
    pub source_errors: u64,
    /// Whether the last state save failed, and how many saves failed since start.
    pub save_error: bool,
    pub save_errors: u64,
    /// Versions rolled back since start (a changed unit failed its trial).
    pub rollbacks: u64,
    pub units: Vec<UnitMetrics>,
    /// Extra daemon-level gauges other parts add (name without prefix, help, value): the
    /// rollout and freeze facts, for instance. Rendered as `gitproc_<name>`.
    pub gauges: Vec<(&'static str, &'static str, f64)>,
    /// The daemon's own latency histograms (see [`crate::perf`]), copied as they are.
    pub latencies: Vec<(&'static str, Histogram<u64>)>,
    /// Whether an operator froze this host (`gitproc freeze`); `None`: not known here.
    pub frozen: Option<bool>,
    /// The fetched commit this host holds back (its rollout wave has not come, a freeze, a
    /// halt), if any.
    pub pending: Option<PendingMetrics>,
    /// Webhook requests by outcome, counted by the HTTP listener itself (the loop leaves
    /// this empty; the listener fills it in before rendering).
    pub webhooks: Vec<(&'static str, u64)>,
}

/// A fetched commit not applied yet, and why.
#[derive(Debug, Clone, Default)]
pub struct PendingMetrics {
    pub commit: String,
    /// The rollout wave this host is in for that commit.
    pub wave: Option<String>,
    /// Why it waits (the rollout's reason: waiting for the wave's delay, halted, ...).
    pub reason: Option<String>,
    /// What holds it beyond the schedule: `freeze`, `halt`, `invalid-policy`.
    pub held_by: Option<String>,
    /// When the rollout will apply it (Unix seconds), when scheduled.
    pub apply_at_unix: Option<f64>,
}

/// One unit's row.
#[derive(Debug, Clone)]
pub struct UnitMetrics {
    pub name: String,
    pub active_state: ActiveState,
    pub restarts: u64,
    /// The main process's last exit code (or signal number when it was killed).
    pub last_exit_status: Option<i32>,
    /// The unit runs its last good version because the newest one failed its trial.
    pub rolled_back: bool,
    /// The unit failed to load (parse or dependency error): nothing of the newest version runs.
    pub load_error: bool,
    /// The health check's verdict (`starting`, `healthy`, `unhealthy`); `None`: no check.
    pub health: Option<&'static str>,
}

/// Upper bounds (seconds) of the latency histogram buckets: 100 µs .. 60 s, roughly ×2.5
/// steps, enough to tell a 1 ms apply from a 10 ms one and a slow fetch from a hung one.
pub const LATENCY_BUCKETS_S: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0, 60.0,
];

/// The exposition's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `snapshot` in the Prometheus text format.
pub fn render(snapshot: Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(snapshot)));
    let mut out = String::with_capacity(64 * 1024);
    // Writing into a String cannot fail; an encoder error would be a bug in a label.
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        out.push_str("# gitproc: encoding the metrics failed\n");
    }
    out
}

#[derive(Debug)]
struct Scrape(Snapshot);

fn gauge<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let none = String::new();
        let info = [
            ("version", s.version),
            ("repo", s.repo.as_str()),
            ("branch", s.branch.as_deref().unwrap_or("")),
            ("hostname", s.hostname.as_str()),
            ("commit", s.applied_commit.as_deref().unwrap_or(&none)),
            (
                "fetched_commit",
                s.fetched_commit.as_deref().unwrap_or(&none),
            ),
        ];
        enc.encode_descriptor(
            "gitproc_source",
            "The applied commit, the fetched tip and the branch followed (value 1).",
            None,
            MetricType::Info,
        )?
        .encode_info(&info)?;
        gauge(
            &mut enc,
            "gitproc_on_branch_tip",
            "1 when the applied commit is the tip the last successful check saw.",
            flag(s.applied_commit.is_some() && s.applied_commit == s.fetched_commit),
        )?;
        gauge(
            &mut enc,
            "gitproc_behind_tip_seconds",
            "How long the applied commit has differed from the fetched tip (0 on the tip).",
            s.behind_tip.as_secs_f64(),
        )?;
        if let Some(t) = s.last_check_unix {
            gauge(
                &mut enc,
                "gitproc_last_check_timestamp_seconds",
                "Unix time of the last check of the source, successful or not.",
                t,
            )?;
        }
        if let Some(t) = s.last_success_unix {
            gauge(
                &mut enc,
                "gitproc_last_successful_check_timestamp_seconds",
                "Unix time of the last successful check of the source.",
                t,
            )?;
        }
        gauge(
            &mut enc,
            "gitproc_poll_interval_seconds",
            "The current interval between two checks of the source.",
            s.poll_interval.as_secs_f64(),
        )?;
        gauge(
            &mut enc,
            "gitproc_source_error",
            "1 when the last check of the source failed.",
            flag(s.source_error),
        )?;
        counter(
            &mut enc,
            "gitproc_source_errors",
            "Checks of the source that failed since the daemon started.",
            s.source_errors,
        )?;
        gauge(
            &mut enc,
            "gitproc_save_error",
            "1 when the last save of state.json failed.",
            flag(s.save_error),
        )?;
        counter(
            &mut enc,
            "gitproc_save_errors",
            "Saves of state.json that failed since the daemon started.",
            s.save_errors,
        )?;
        counter(
            &mut enc,
            "gitproc_rollbacks",
            "Unit versions rolled back to their last good version since the daemon started.",
            s.rollbacks,
        )?;
        if let Some(frozen) = s.frozen {
            gauge(
                &mut enc,
                "gitproc_frozen",
                "1 while an operator's `gitproc freeze` holds every new commit back on this host.",
                flag(frozen),
            )?;
        }
        if let Some(p) = &s.pending {
            let labels = [
                ("commit", p.commit.as_str()),
                ("wave", p.wave.as_deref().unwrap_or("")),
                ("reason", p.reason.as_deref().unwrap_or("")),
                ("held_by", p.held_by.as_deref().unwrap_or("")),
            ];
            enc.encode_descriptor(
                "gitproc_pending_commit",
                "The fetched commit this host holds back, its rollout wave, why it waits and what holds it (value 1; absent when nothing waits).",
                None,
                MetricType::Info,
            )?
            .encode_info(&labels)?;
            if let Some(at) = p.apply_at_unix {
                gauge(
                    &mut enc,
                    "gitproc_pending_apply_timestamp_seconds",
                    "When this host's rollout wave applies the pending commit (Unix time).",
                    at,
                )?;
            }
        }
        for (name, help, value) in &s.gauges {
            gauge(&mut enc, &format!("gitproc_{name}"), help, *value)?;
        }
        if !s.webhooks.is_empty() {
            let mut m = enc.encode_descriptor(
                "gitproc_webhooks",
                "Webhook requests by result: queued (a check), coalesced (into a queued check), ignored (another branch, not a push), refused (bad or missing signature, 401), invalid (400).",
                None,
                MetricType::Counter,
            )?;
            for (result, n) in &s.webhooks {
                ConstCounter::new(*n).encode(m.encode_family(&[("result", *result)])?)?;
            }
        }
        self.encode_units(&mut enc)?;
        self.encode_latencies(&mut enc)
    }
}

impl Scrape {
    fn encode_units(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let units = &self.0.units;
        // One series per unit, for its current state only: the six 0/1 series per unit of
        // the usual enum style would be 6,000 series per 1,000-unit host. Queries select by
        // the label (`gitproc_unit_state{state="failed"}`); a state change ends the old
        // series (Prometheus marks it stale) and starts the new one.
        let mut m = enc.encode_descriptor(
            "gitproc_unit_state",
            "The unit's current active state (systemd's ActiveState=), as the state label; always 1.",
            None,
            MetricType::Gauge,
        )?;
        for u in units {
            let labels = [
                ("unit", u.name.as_str()),
                ("state", u.active_state.as_str()),
            ];
            m.encode_family(&labels)?.encode_gauge(&1i64)?;
        }
        let mut m = enc.encode_descriptor(
            "gitproc_unit_restarts",
            "Automatic restarts of the unit (systemd's NRestarts=).",
            None,
            MetricType::Counter,
        )?;
        for u in units {
            ConstCounter::new(u.restarts).encode(m.encode_family(&[("unit", u.name.as_str())])?)?;
        }
        let mut m = enc.encode_descriptor(
            "gitproc_unit_last_exit_status",
            "Exit code of the unit's last main process (the signal number if it was killed).",
            None,
            MetricType::Gauge,
        )?;
        for u in units {
            if let Some(code) = u.last_exit_status {
                m.encode_family(&[("unit", u.name.as_str())])?
                    .encode_gauge(&i64::from(code))?;
            }
        }
        // Marks, present only on the units that carry them (sparse, like the state).
        let mut m = enc.encode_descriptor(
            "gitproc_unit_rolled_back",
            "Present (1) on units that run their last good version because the newest failed.",
            None,
            MetricType::Gauge,
        )?;
        for u in units.iter().filter(|u| u.rolled_back) {
            m.encode_family(&[("unit", u.name.as_str())])?
                .encode_gauge(&1i64)?;
        }
        let mut m = enc.encode_descriptor(
            "gitproc_unit_load_error",
            "Present (1) on units whose newest version failed to load (parse or dependency error).",
            None,
            MetricType::Gauge,
        )?;
        for u in units.iter().filter(|u| u.load_error) {
            m.encode_family(&[("unit", u.name.as_str())])?
                .encode_gauge(&1i64)?;
        }
        if units.iter().any(|u| u.health.is_some()) {
            let mut m = enc.encode_descriptor(
                "gitproc_unit_health",
                "The unit's health check verdict as the health label (starting, healthy, unhealthy); always 1, units with a check only.",
                None,
                MetricType::Gauge,
            )?;
            for u in units {
                if let Some(health) = u.health {
                    m.encode_family(&[("unit", u.name.as_str()), ("health", health)])?
                        .encode_gauge(&1i64)?;
                }
            }
        }
        Ok(())
    }

    fn encode_latencies(&self, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut m = enc.encode_descriptor(
            "gitproc_operation_duration_seconds",
            "Latency of the daemon's own operations (fetch, parse, apply, spawn, save, ...).",
            None,
            MetricType::Histogram,
        )?;
        for (op, h) in &self.0.latencies {
            let (buckets, sum) = buckets(h);
            m.encode_family(&[("op", *op)])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    sum,
                    h.len(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

/// The per-bucket counts (not cumulative: the encoder adds them up) of a microsecond
/// histogram over [`LATENCY_BUCKETS_S`], and the sum in seconds. HDR histograms keep values
/// to 2 significant digits, so a value is counted in a bucket and the sum to within 1 %.
fn buckets(h: &Histogram<u64>) -> (Vec<(f64, u64)>, f64) {
    let mut counts = vec![0u64; LATENCY_BUCKETS_S.len()];
    let mut sum_us = 0f64;
    for v in h.iter_recorded() {
        let us = h.highest_equivalent(v.value_iterated_to());
        let n = v.count_at_value();
        sum_us += us as f64 * n as f64;
        let secs = us as f64 / 1e6;
        // Above the last bound: only in +Inf, which the encoder derives from the count.
        if let Some(i) = LATENCY_BUCKETS_S.iter().position(|&le| secs <= le) {
            counts[i] += n;
        }
    }
    let buckets = LATENCY_BUCKETS_S.iter().copied().zip(counts).collect();
    (buckets, sum_us / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, state: ActiveState) -> UnitMetrics {
        UnitMetrics {
            name: name.into(),
            active_state: state,
            restarts: 2,
            last_exit_status: Some(1),
            rolled_back: false,
            load_error: false,
            health: None,
        }
    }

    #[test]
    fn renders_daemon_and_unit_families() {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 2).unwrap();
        h.record(800).unwrap(); // 0.8 ms
        h.record(20_000).unwrap(); // 20 ms
        let text = render(Snapshot {
            version: "0.1.0",
            repo: "https://example.invalid/r.git".into(),
            branch: Some("main".into()),
            applied_commit: Some("abc".into()),
            fetched_commit: Some("abc".into()),
            poll_interval: Duration::from_secs(10),
            units: vec![unit("web.service", ActiveState::Failed)],
            latencies: vec![("apply", h)],
            ..Snapshot::default()
        });
        assert!(
            text.contains("# TYPE gitproc_source_info gauge\n"),
            "{text}"
        );
        assert!(text.contains("commit=\"abc\""), "{text}");
        assert!(text.contains("gitproc_on_branch_tip 1\n"), "{text}");
        assert!(text.contains("gitproc_poll_interval_seconds 10"), "{text}");
        assert!(
            text.contains("gitproc_unit_state{unit=\"web.service\",state=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("gitproc_unit_state{unit=\"web.service\",state=\"active\"}"),
            "{text}"
        );
        assert!(text.contains("gitproc_unit_restarts_total{unit=\"web.service\"} 2\n"));
        assert!(
            text.contains(
                "gitproc_operation_duration_seconds_bucket{op=\"apply\",le=\"0.001\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "gitproc_operation_duration_seconds_bucket{op=\"apply\",le=\"0.025\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("gitproc_operation_duration_seconds_count{op=\"apply\"} 2\n"));
        assert!(
            !text.contains("gitproc_unit_health"),
            "no health family without health"
        );
    }

    #[test]
    fn rollout_facts_render_only_when_known() {
        let text = render(Snapshot::default());
        assert!(!text.contains("gitproc_frozen"), "{text}");
        assert!(!text.contains("gitproc_pending"), "{text}");
        let text = render(Snapshot {
            frozen: Some(true),
            pending: Some(PendingMetrics {
                commit: "def".into(),
                wave: Some("canary".into()),
                reason: Some("waiting".into()),
                held_by: Some("freeze".into()),
                apply_at_unix: Some(1_700_000_000.0),
            }),
            ..Snapshot::default()
        });
        assert!(text.contains("gitproc_frozen 1\n"), "{text}");
        assert!(
            text.contains("gitproc_pending_commit_info{commit=\"def\",wave=\"canary\",reason=\"waiting\",held_by=\"freeze\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gitproc_pending_apply_timestamp_seconds 1700000000"),
            "{text}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(Snapshot {
            repo: "a\"b\\c\nd".into(),
            ..Snapshot::default()
        });
        assert!(text.contains(r#"repo="a\"b\\c\nd""#), "{text}");
    }
}
