//! Resource control (systemd.resource-control(5)): the values of `MemoryMax=`, `CPUQuota=`,
//! `TasksMax=`, ... in systemd's syntax, and the arithmetic systemd uses to turn them into
//! cgroup file contents (v2 and v1). Pure: a percentage of physical memory or of the
//! kernel's task limit stays a percentage here and is resolved by the runtime, which knows
//! the machine (`runtime::resources`).

use std::time::Duration;

/// A memory setting: bytes, a share of physical memory, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLimit {
    Bytes(u64),
    /// Hundredths of a percent (`50%` is 5000, `12.5%` is 1250) of physical memory.
    Permyriad(u32),
    Infinity,
}

impl MemoryLimit {
    /// The byte count, given the machine's physical memory; `None` is "no limit".
    pub fn resolve(self, total_memory: u64) -> Option<u64> {
        match self {
            MemoryLimit::Bytes(b) => Some(b),
            MemoryLimit::Permyriad(p) => {
                Some((u128::from(total_memory) * u128::from(p) / 10_000) as u64)
            }
            MemoryLimit::Infinity => None,
        }
    }
}

/// `TasksMax=`: a count, a share of the kernel's limit, or no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TasksLimit {
    Count(u64),
    Permyriad(u32),
    Infinity,
}

impl TasksLimit {
    /// The count, given the kernel's limit (`min(pid_max, threads-max)`); `None`: no limit.
    pub fn resolve(self, kernel_max: u64) -> Option<u64> {
        match self {
            TasksLimit::Count(n) => Some(n),
            TasksLimit::Permyriad(p) => {
                Some((u128::from(kernel_max) * u128::from(p) / 10_000) as u64)
            }
            TasksLimit::Infinity => None,
        }
    }
}

/// `CPUWeight=`: 1..10000 or `idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuWeight {
    Weight(u64),
    Idle,
}

/// Everything of resource control a service asked for; `None` fields are unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub memory_min: Option<MemoryLimit>,
    pub memory_low: Option<MemoryLimit>,
    pub memory_high: Option<MemoryLimit>,
    /// `MemoryMax=`, or the legacy `MemoryLimit=` (systemd maps it to the same limit).
    pub memory_max: Option<MemoryLimit>,
    pub memory_swap_max: Option<MemoryLimit>,
    /// `CPUQuota=` as CPU time per second of wall time (`20%` is 200 ms).
    pub cpu_quota_per_sec: Option<Duration>,
    /// `CPUQuotaPeriodSec=` (default [`DEFAULT_CPU_QUOTA_PERIOD`]).
    pub cpu_quota_period: Option<Duration>,
    pub cpu_weight: Option<CpuWeight>,
    /// The legacy `CPUShares=` (2..262144), written as is on cgroup v1.
    pub cpu_shares: Option<u64>,
    pub tasks_max: Option<TasksLimit>,
    pub io_weight: Option<u64>,
    /// The legacy `BlockIOWeight=` (10..1000), written as is on cgroup v1.
    pub blockio_weight: Option<u64>,
    /// `AllowedCPUs=` as inclusive ranges, sorted and merged.
    pub allowed_cpus: Option<Vec<(u32, u32)>>,
}

impl Resources {
    /// Whether the unit asked for any resource control at all.
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }
}

/// systemd's default `CPUQuotaPeriodSec=`.
pub const DEFAULT_CPU_QUOTA_PERIOD: Duration = Duration::from_millis(100);

/// The keys this module parses, with the legacy names systemd still maps.
pub const KEYS: &[&str] = &[
    "AllowedCPUs",
    "BlockIOWeight",
    "CPUQuota",
    "CPUQuotaPeriodSec",
    "CPUShares",
    "CPUWeight",
    "IOWeight",
    "MemoryHigh",
    "MemoryLimit",
    "MemoryLow",
    "MemoryMax",
    "MemoryMin",
    "MemorySwapMax",
    "TasksMax",
];

/// Applies one `key=value` to `r`. An empty value resets the setting, as systemd does.
/// Returns `Ok(false)` when `key` is not a resource-control key.
pub fn assign(r: &mut Resources, key: &str, v: &str) -> Result<bool, String> {
    let v = v.trim();
    let empty = v.is_empty();
    match key {
        "MemoryMin" => r.memory_min = (!empty).then(|| parse_memory(key, v)).transpose()?,
        "MemoryLow" => r.memory_low = (!empty).then(|| parse_memory(key, v)).transpose()?,
        "MemoryHigh" => r.memory_high = (!empty).then(|| parse_memory(key, v)).transpose()?,
        "MemoryMax" | "MemoryLimit" => {
            r.memory_max = (!empty).then(|| parse_memory(key, v)).transpose()?
        }
        "MemorySwapMax" => {
            r.memory_swap_max = (!empty).then(|| parse_memory(key, v)).transpose()?
        }
        "CPUQuota" => r.cpu_quota_per_sec = (!empty).then(|| parse_cpu_quota(v)).transpose()?,
        "CPUQuotaPeriodSec" => {
            r.cpu_quota_period = (!empty).then(|| parse_quota_period(v)).transpose()?
        }
        "CPUWeight" => r.cpu_weight = (!empty).then(|| parse_cpu_weight(v)).transpose()?,
        "CPUShares" => {
            r.cpu_shares = (!empty)
                .then(|| parse_ranged(key, v, 2, 262_144))
                .transpose()?
        }
        "TasksMax" => r.tasks_max = (!empty).then(|| parse_tasks(v)).transpose()?,
        "IOWeight" => {
            r.io_weight = (!empty)
                .then(|| parse_ranged(key, v, 1, 10_000))
                .transpose()?
        }
        "BlockIOWeight" => {
            r.blockio_weight = (!empty)
                .then(|| parse_ranged(key, v, 10, 1000))
                .transpose()?
        }
        "AllowedCPUs" => r.allowed_cpus = (!empty).then(|| parse_cpu_set(v)).transpose()?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// A percentage with up to two decimals (`50%`, `12.5%`, `0.25%`) in hundredths of a
/// percent; `None` when `s` does not end in `%`.
fn parse_permyriad(s: &str) -> Option<Result<u64, ()>> {
    let num = s.strip_suffix('%')?;
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 2 {
        return Some(Err(()));
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err(()));
    }
    let Ok(int) = int.parse::<u64>() else {
        return Some(Err(()));
    };
    let frac: u64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<u64>().map_or(0, |f| f * 10),
        _ => frac.parse::<u64>().unwrap_or(0),
    };
    Some(
        int.checked_mul(100)
            .and_then(|i| i.checked_add(frac))
            .ok_or(()),
    )
}

/// `MemoryMax=` and friends: bytes with an optional K, M, G, T, P, E suffix (base 1024),
/// a percentage of physical memory (at most 100%), or `infinity`.
pub fn parse_memory(key: &str, s: &str) -> Result<MemoryLimit, String> {
    let err = || {
        format!(
            "invalid {key}= {s:?}: expected bytes with an optional K, M, G or T suffix, a percentage or infinity"
        )
    };
    if s == "infinity" {
        return Ok(MemoryLimit::Infinity);
    }
    if let Some(p) = parse_permyriad(s) {
        let p = p.map_err(|_| err())?;
        if p > 10_000 {
            return Err(format!("invalid {key}= {s:?}: a percentage above 100%"));
        }
        return Ok(MemoryLimit::Permyriad(p as u32));
    }
    super::value::parse_size(s)
        .map(MemoryLimit::Bytes)
        .map_err(|_| err())
}

/// `CPUQuota=NN%`: the share of one CPU's time (may exceed 100% on several CPUs).
pub fn parse_cpu_quota(s: &str) -> Result<Duration, String> {
    let err = || format!("invalid CPUQuota= {s:?}: expected a percentage such as 20% or 150%");
    let p = parse_permyriad(s).ok_or_else(err)?.map_err(|_| err())?;
    if p == 0 {
        return Err(format!("invalid CPUQuota= {s:?}: must be above 0%"));
    }
    // 100% is one second of CPU time per second; 1/100 % is 100 µs.
    Ok(Duration::from_micros(p.saturating_mul(100)))
}

/// `CPUQuotaPeriodSec=`: a time span, clamped by the runtime to 1 ms..1 s as systemd does.
fn parse_quota_period(s: &str) -> Result<Duration, String> {
    match super::value::parse_timespan(s, 1_000_000)? {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "invalid CPUQuotaPeriodSec= {s:?}: expected a time span above 0"
        )),
    }
}

fn parse_cpu_weight(s: &str) -> Result<CpuWeight, String> {
    if s == "idle" {
        return Ok(CpuWeight::Idle);
    }
    parse_ranged("CPUWeight", s, 1, 10_000).map(CpuWeight::Weight)
}

fn parse_ranged(key: &str, s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid {key}= {s:?}: expected a number from {lo} to {hi}"
        )),
    }
}

/// `TasksMax=N`, `N%` (of the kernel's limit) or `infinity`.
pub fn parse_tasks(s: &str) -> Result<TasksLimit, String> {
    let err = || format!("invalid TasksMax= {s:?}: expected a number, a percentage or infinity");
    if s == "infinity" {
        return Ok(TasksLimit::Infinity);
    }
    if let Some(p) = parse_permyriad(s) {
        let p = p.map_err(|_| err())?;
        if p == 0 || p > 10_000 {
            return Err(format!(
                "invalid TasksMax= {s:?}: a percentage must be above 0% and at most 100%"
            ));
        }
        return Ok(TasksLimit::Permyriad(p as u32));
    }
    match s.parse::<u64>() {
        Ok(0) => Err(format!("invalid TasksMax= {s:?}: must be at least 1")),
        Ok(n) => Ok(TasksLimit::Count(n)),
        Err(_) => Err(err()),
    }
}

/// The most CPUs `AllowedCPUs=` may name (systemd's CPU set limit is 8192 too).
const MAX_CPU: u32 = 8191;

/// `AllowedCPUs=0-3,5` (commas or spaces between items): sorted, merged ranges.
pub fn parse_cpu_set(s: &str) -> Result<Vec<(u32, u32)>, String> {
    let err = |item: &str| {
        format!("invalid AllowedCPUs= {s:?}: {item:?} is not a CPU number or range (0-{MAX_CPU})")
    };
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for item in s.split([',', ' ', '\t']).filter(|i| !i.is_empty()) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        let (a, b) = match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(a), Ok(b)) if a <= b && b <= MAX_CPU => (a, b),
            _ => return Err(err(item)),
        };
        ranges.push((a, b));
    }
    if ranges.is_empty() {
        return Err(format!("invalid AllowedCPUs= {s:?}: no CPU named"));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

/// A CPU set in the kernel's list format (`0-3,5`), as `cpuset.cpus` takes it.
pub fn format_cpu_set(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPU quota per period for `cpu.max` / `cpu.cfs_quota_us`, in µs, as systemd computes
/// it: the period clamped to 1 ms..1 s, the quota at least 1 ms.
pub fn cpu_quota_us(per_sec: Duration, period: Duration) -> (u64, u64) {
    let period_us = period.as_micros().clamp(1_000, 1_000_000) as u64;
    let quota = per_sec.as_micros().saturating_mul(u128::from(period_us)) / 1_000_000;
    (quota.max(1_000).min(u128::from(u64::MAX)) as u64, period_us)
}

/// systemd's `CPUWeight=` to cgroup v1 `cpu.shares`: weight × 1024 / 100, in 2..262144.
pub fn cpu_weight_to_shares(weight: u64) -> u64 {
    (weight.saturating_mul(1024) / 100).clamp(2, 262_144)
}

/// systemd's `CPUShares=` to cgroup v2 `cpu.weight`: shares × 100 / 1024, in 1..10000.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    (shares.saturating_mul(100) / 1024).clamp(1, 10_000)
}

/// systemd's `IOWeight=` to cgroup v1 `blkio.weight`: weight × 500 / 100, in 10..1000.
pub fn io_weight_to_blkio(weight: u64) -> u64 {
    (weight.saturating_mul(500) / 100).clamp(10, 1000)
}

/// systemd's `BlockIOWeight=` to cgroup v2 `io.weight`: weight × 100 / 500, in 1..10000.
pub fn blkio_weight_to_io(weight: u64) -> u64 {
    (weight.saturating_mul(100) / 500).clamp(1, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values() {
        let m = |s| parse_memory("MemoryMax", s);
        assert_eq!(m("32M"), Ok(MemoryLimit::Bytes(32 << 20)));
        assert_eq!(m("1G"), Ok(MemoryLimit::Bytes(1 << 30)));
        assert_eq!(m("2T"), Ok(MemoryLimit::Bytes(2 << 40)));
        assert_eq!(m("4096"), Ok(MemoryLimit::Bytes(4096)));
        assert_eq!(m("512K"), Ok(MemoryLimit::Bytes(512 << 10)));
        assert_eq!(m("infinity"), Ok(MemoryLimit::Infinity));
        assert_eq!(m("50%"), Ok(MemoryLimit::Permyriad(5000)));
        assert_eq!(m("12.5%"), Ok(MemoryLimit::Permyriad(1250)));
        assert!(m("101%").is_err());
        assert!(m("12.345%").is_err());
        assert!(m("-1").is_err());
        assert!(m("1X").is_err());
        assert!(m("%").is_err());
        assert_eq!(MemoryLimit::Permyriad(2500).resolve(4 << 30), Some(1 << 30));
        assert_eq!(MemoryLimit::Infinity.resolve(4 << 30), None);
    }

    #[test]
    fn cpu_quota_and_period() {
        assert_eq!(parse_cpu_quota("20%"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_cpu_quota("150%"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_cpu_quota("0.5%"), Ok(Duration::from_millis(5)));
        assert!(parse_cpu_quota("0%").is_err());
        assert!(parse_cpu_quota("20").is_err());
        let (q, p) = cpu_quota_us(Duration::from_millis(200), DEFAULT_CPU_QUOTA_PERIOD);
        assert_eq!((q, p), (20_000, 100_000));
        let (q, p) = cpu_quota_us(Duration::from_millis(1500), DEFAULT_CPU_QUOTA_PERIOD);
        assert_eq!((q, p), (150_000, 100_000));
        // Quota at least 1 ms, period clamped to 1 ms..1 s.
        assert_eq!(
            cpu_quota_us(Duration::from_millis(1), DEFAULT_CPU_QUOTA_PERIOD),
            (1_000, 100_000)
        );
        assert_eq!(
            cpu_quota_us(Duration::from_millis(500), Duration::from_secs(5)),
            (500_000, 1_000_000)
        );
        let mut r = Resources::default();
        assert_eq!(assign(&mut r, "CPUQuotaPeriodSec", "10ms"), Ok(true));
        assert_eq!(r.cpu_quota_period, Some(Duration::from_millis(10)));
        assert!(assign(&mut r, "CPUQuotaPeriodSec", "0").is_err());
    }

    #[test]
    fn weights_and_conversions() {
        assert_eq!(parse_cpu_weight("idle"), Ok(CpuWeight::Idle));
        assert_eq!(parse_cpu_weight("100"), Ok(CpuWeight::Weight(100)));
        assert!(parse_cpu_weight("0").is_err());
        assert!(parse_cpu_weight("10001").is_err());
        assert_eq!(cpu_weight_to_shares(100), 1024);
        assert_eq!(cpu_weight_to_shares(1), 10);
        assert_eq!(cpu_weight_to_shares(10_000), 102_400);
        assert_eq!(cpu_shares_to_weight(1024), 100);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(io_weight_to_blkio(100), 500);
        assert_eq!(io_weight_to_blkio(1), 10);
        assert_eq!(io_weight_to_blkio(10_000), 1000);
        assert_eq!(blkio_weight_to_io(500), 100);
    }

    #[test]
    fn tasks_values() {
        assert_eq!(parse_tasks("5"), Ok(TasksLimit::Count(5)));
        assert_eq!(parse_tasks("infinity"), Ok(TasksLimit::Infinity));
        assert_eq!(parse_tasks("15%"), Ok(TasksLimit::Permyriad(1500)));
        assert!(parse_tasks("0").is_err());
        assert!(parse_tasks("many").is_err());
        assert!(parse_tasks("150%").is_err());
        assert_eq!(
            TasksLimit::Permyriad(1000).resolve(4_194_304),
            Some(419_430)
        );
    }

    #[test]
    fn cpu_sets() {
        assert_eq!(parse_cpu_set("0-3,5"), Ok(vec![(0, 3), (5, 5)]));
        assert_eq!(parse_cpu_set("5 0-3 2"), Ok(vec![(0, 3), (5, 5)]));
        assert_eq!(parse_cpu_set("0,1,2"), Ok(vec![(0, 2)]));
        assert!(parse_cpu_set("3-1").is_err());
        assert!(parse_cpu_set("a").is_err());
        assert!(parse_cpu_set(",").is_err());
        assert!(parse_cpu_set("9000").is_err());
        assert_eq!(format_cpu_set(&[(0, 3), (5, 5)]), "0-3,5");
    }

    #[test]
    fn assign_resets_and_maps_legacy_names() {
        let mut r = Resources::default();
        assert_eq!(assign(&mut r, "MemoryLimit", "1G"), Ok(true));
        assert_eq!(r.memory_max, Some(MemoryLimit::Bytes(1 << 30)));
        assert_eq!(assign(&mut r, "MemoryMax", ""), Ok(true));
        assert_eq!(r.memory_max, None);
        assert_eq!(assign(&mut r, "CPUShares", "512"), Ok(true));
        assert_eq!(r.cpu_shares, Some(512));
        assert!(assign(&mut r, "CPUShares", "1").is_err());
        assert_eq!(assign(&mut r, "BlockIOWeight", "300"), Ok(true));
        assert!(assign(&mut r, "IOWeight", "0").is_err());
        assert_eq!(assign(&mut r, "ExecStart", "x"), Ok(false));
        assert!(KEYS.windows(2).all(|w| w[0] < w[1]), "KEYS sorted");
    }
}
