//! Which cgroup files a unit's resource settings become, and with what contents: the one
//! table of systemd's cgroup v2 and v1 mappings. No I/O: the caller says where each
//! controller lives and gives the machine's totals; [`plan`] answers with the writes in the
//! order they must happen and a warning for each setting that has no place.
//!
//! | setting | cgroup v2 | cgroup v1 |
//! | --- | --- | --- |
//! | `MemoryMin=`, `MemoryLow=`, `MemoryHigh=` | `memory.min`, `memory.low`, `memory.high` | none: "not enforced on cgroup v1" |
//! | `MemoryMax=` (`MemoryLimit=`) | `memory.max` | `memory.limit_in_bytes` |
//! | `MemorySwapMax=` | `memory.swap.max` | `memory.memsw.limit_in_bytes` = `MemoryMax=` + swap (needs `MemoryMax=`) |
//! | `CPUQuota=`, `CPUQuotaPeriodSec=` | `cpu.max` | `cpu.cfs_period_us`, `cpu.cfs_quota_us` |
//! | `CPUWeight=` (`CPUShares=`) | `cpu.weight` (`idle`: `cpu.idle`) | `cpu.shares` = weight × 1024 / 100 (`idle`: `cpu.idle`, else 2) |
//! | `TasksMax=` | `pids.max` | `pids.max` |
//! | `IOWeight=` (`BlockIOWeight=`) | `io.weight` | `blkio.weight` or `blkio.bfq.weight` = weight × 500 / 100 |
//! | `AllowedCPUs=` | `cpuset.cpus` | `cpuset.cpus` (`cpuset.mems` copied from the parent) |
//!
//! Every file of a controller the unit's cgroup uses is written at each start, set or not
//! (`max`, `-1`, the default weight), so a setting removed from the unit does not linger in
//! a cgroup that outlives one run.

use std::path::{Path, PathBuf};

use crate::unit::resources::{
    self as res, CpuWeight, DEFAULT_CPU_QUOTA_PERIOD, MemoryLimit, Resources,
};

/// A cgroup controller gitproc may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
    Io,
    Cpuset,
}

impl Controller {
    pub const ALL: [Controller; 6] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
        Controller::Io,
        Controller::Cpuset,
    ];

    /// The controller's name in cgroup v2 (`cpuacct` has none: v2's `cpu.stat` is always there).
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Memory => Some("memory"),
            Controller::Cpu => Some("cpu"),
            Controller::Cpuacct => None,
            Controller::Pids => Some("pids"),
            Controller::Io => Some("io"),
            Controller::Cpuset => Some("cpuset"),
        }
    }

    /// The controller's name in cgroup v1 (`/proc/self/cgroup`, mount options).
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Io => "blkio",
            Controller::Cpuset => "cpuset",
        }
    }
}

/// Where one controller lives for a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// Enabled in the cgroup v2 hierarchy: the unit's (v2) cgroup directory.
    V2(PathBuf),
    /// A cgroup v1 hierarchy: the unit's directory in it.
    V1(PathBuf),
}

impl Place {
    pub fn dir(&self) -> &Path {
        match self {
            Place::V2(p) | Place::V1(p) => p,
        }
    }
}

/// What [`plan`] needs to know about the machine.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Physical memory in bytes (for `MemoryMax=50%`).
    pub total_memory: u64,
    /// The kernel's task limit (for `TasksMax=10%`).
    pub kernel_tasks_max: u64,
    /// Files that exist, for the optional ones: `memory.memsw.limit_in_bytes`, `cpu.idle`,
    /// `blkio.weight`, `blkio.bfq.weight` (the caller checks the ones [`optional_files`] names).
    pub present: Vec<PathBuf>,
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The unit setting it enforces (`MemoryMax`), for the status and messages; empty for
    /// the resets of unset settings and helper files (`cpuset.mems`).
    pub key: &'static str,
    pub file: PathBuf,
    pub value: String,
}

/// The planned writes and the settings that cannot be enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub warnings: Vec<String>,
}

/// The controllers a unit's settings need (memory for a memory setting, pids for
/// `TasksMax=`, ...). [`accounted`] adds the ones joined for accounting alone.
pub fn wanted(r: &Resources) -> Vec<Controller> {
    let mut out = Vec::new();
    if memory_set(r) {
        out.push(Controller::Memory);
    }
    if r.tasks_max.is_some() {
        out.push(Controller::Pids);
    }
    if r.cpu_quota_per_sec.is_some() || r.cpu_weight.is_some() || r.cpu_shares.is_some() {
        out.push(Controller::Cpu);
    }
    if r.io_weight.is_some() || r.blockio_weight.is_some() {
        out.push(Controller::Io);
    }
    if r.allowed_cpus.is_some() {
        out.push(Controller::Cpuset);
    }
    out
}

/// Whether `r` sets anything the memory controller enforces.
pub fn memory_set(r: &Resources) -> bool {
    r.memory_min.is_some()
        || r.memory_low.is_some()
        || r.memory_high.is_some()
        || r.memory_max.is_some()
        || r.memory_swap_max.is_some()
}

/// Controllers a unit's cgroup joins for accounting alone (status shows their use): only
/// where joining costs nothing, in cgroup v2 (the process is cloned into the unit's
/// cgroup). Never a v1 hierarchy: moving a task into any v1 cgroup waits for an RCU grace
/// period, 10 to 15 ms on this kind of host (the child's write to `cgroup.procs`, seen
/// with strace -T), which was most of a restart. A unit without settings for a v1
/// controller stays in the daemon's cgroup there; `status` counts its tasks and memory
/// from /proc, and its CPU time from the v2 `cpu.stat`.
pub fn accounted(c: Controller, v2: bool) -> bool {
    v2 && matches!(
        c,
        Controller::Memory | Controller::Pids | Controller::Cpuacct
    )
}

/// Optional files whose presence [`plan`] needs (see [`Facts::present`]).
pub fn optional_files(place: &dyn Fn(Controller) -> Option<Place>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(Place::V1(d)) = place(Controller::Memory) {
        out.push(d.join("memory.memsw.limit_in_bytes"));
    }
    if let Some(p) = place(Controller::Cpu) {
        out.push(p.dir().join("cpu.idle"));
    }
    if let Some(Place::V1(d)) = place(Controller::Io) {
        out.push(d.join("blkio.weight"));
        out.push(d.join("blkio.bfq.weight"));
    }
    out
}

/// The writes for `r`, given where each controller lives (`None`: nowhere writable).
pub fn plan(r: &Resources, place: &dyn Fn(Controller) -> Option<Place>, facts: &Facts) -> Plan {
    let mut p = Plan::default();
    let present = |f: &Path| facts.present.iter().any(|x| x == f);
    let bytes = |m: Option<MemoryLimit>| m.and_then(|m| m.resolve(facts.total_memory));
    let v2_bytes = |m: Option<MemoryLimit>| bytes(m).map_or("max".to_string(), |b| b.to_string());
    let mut w =
        |key: &'static str, file: PathBuf, value: String| p.writes.push(Write { key, file, value });
    let mut warnings: Vec<String> = Vec::new();
    let nowhere = |what: &str, c: Controller| {
        format!(
            "{what} is not enforced by gitproc: no writable {} cgroup for the unit",
            c.v1_name()
        )
    };

    // Memory.
    let memory_keys = [
        ("MemoryMin", r.memory_min),
        ("MemoryLow", r.memory_low),
        ("MemoryHigh", r.memory_high),
        ("MemoryMax", r.memory_max),
        ("MemorySwapMax", r.memory_swap_max),
    ];
    match place(Controller::Memory) {
        Some(Place::V2(d)) => {
            w(
                "MemoryMin",
                d.join("memory.min"),
                bytes(r.memory_min).unwrap_or(0).to_string(),
            );
            w(
                "MemoryLow",
                d.join("memory.low"),
                bytes(r.memory_low).unwrap_or(0).to_string(),
            );
            w("MemoryHigh", d.join("memory.high"), v2_bytes(r.memory_high));
            w("MemoryMax", d.join("memory.max"), v2_bytes(r.memory_max));
            w(
                "MemorySwapMax",
                d.join("memory.swap.max"),
                v2_bytes(r.memory_swap_max),
            );
        }
        Some(Place::V1(d)) => {
            for (key, v) in &memory_keys[..3] {
                if v.is_some() {
                    warnings.push(format!(
                        "{key}= is not enforced on cgroup v1 (no equivalent)"
                    ));
                }
            }
            let memsw = d.join("memory.memsw.limit_in_bytes");
            let has_memsw = present(&memsw);
            // memsw (memory + swap) may never be below the memory limit: lift it first.
            if has_memsw {
                w("", memsw.clone(), "-1".into());
            }
            let max = bytes(r.memory_max);
            w(
                "MemoryMax",
                d.join("memory.limit_in_bytes"),
                max.map_or("-1".to_string(), |b| b.to_string()),
            );
            match (r.memory_swap_max, max) {
                (None, _) => {}
                (Some(_), _) if !has_memsw => warnings.push(
                    "MemorySwapMax= is not enforced: the kernel has no memory.memsw.limit_in_bytes (swap accounting is off)"
                        .into(),
                ),
                (Some(swap), Some(max)) => {
                    if let Some(swap) = bytes(Some(swap)) {
                        w("MemorySwapMax", memsw, max.saturating_add(swap).to_string());
                    }
                }
                (Some(_), None) => warnings.push(
                    "MemorySwapMax= is not enforced on cgroup v1 without MemoryMax= (v1 limits memory and swap together)"
                        .into(),
                ),
            }
        }
        None => {
            for (key, v) in memory_keys {
                if v.is_some() {
                    warnings.push(nowhere(&format!("{key}="), Controller::Memory));
                }
            }
        }
    }

    // CPU.
    let period = r.cpu_quota_period.unwrap_or(DEFAULT_CPU_QUOTA_PERIOD);
    let (quota_us, period_us) = match r.cpu_quota_per_sec {
        Some(q) => {
            let (q, p) = res::cpu_quota_us(q, period);
            (Some(q), p)
        }
        None => (None, res::cpu_quota_us(Default::default(), period).1),
    };
    let weight_v2 = match (r.cpu_weight, r.cpu_shares) {
        (Some(CpuWeight::Weight(w)), _) => Some(w),
        (Some(CpuWeight::Idle), _) => None,
        (None, Some(s)) => Some(res::cpu_shares_to_weight(s)),
        (None, None) => None,
    };
    let idle = r.cpu_weight == Some(CpuWeight::Idle);
    match place(Controller::Cpu) {
        Some(Place::V2(d)) => {
            let quota = quota_us.map_or("max".to_string(), |q| q.to_string());
            w(
                "CPUQuota",
                d.join("cpu.max"),
                format!("{quota} {period_us}"),
            );
            if present(&d.join("cpu.idle")) {
                let key = if idle { "CPUWeight" } else { "" };
                w(key, d.join("cpu.idle"), if idle { "1" } else { "0" }.into());
            }
            if !idle {
                w(
                    "CPUWeight",
                    d.join("cpu.weight"),
                    weight_v2.unwrap_or(100).to_string(),
                );
            }
        }
        Some(Place::V1(d)) => {
            w("", d.join("cpu.cfs_quota_us"), "-1".into());
            w("", d.join("cpu.cfs_period_us"), period_us.to_string());
            if let Some(q) = quota_us {
                w("CPUQuota", d.join("cpu.cfs_quota_us"), q.to_string());
            }
            let has_idle = present(&d.join("cpu.idle"));
            if has_idle {
                let key = if idle { "CPUWeight" } else { "" };
                w(key, d.join("cpu.idle"), if idle { "1" } else { "0" }.into());
            }
            let shares = match (r.cpu_weight, r.cpu_shares) {
                (Some(CpuWeight::Weight(w)), _) => res::cpu_weight_to_shares(w),
                (Some(CpuWeight::Idle), _) => 2,
                (None, Some(s)) => s,
                (None, None) => 1024,
            };
            if !(idle && has_idle) {
                let key = if r.cpu_weight.is_none() && r.cpu_shares.is_some() {
                    "CPUShares"
                } else {
                    "CPUWeight"
                };
                w(key, d.join("cpu.shares"), shares.to_string());
            }
        }
        None => {
            if r.cpu_quota_per_sec.is_some() {
                warnings.push(nowhere("CPUQuota=", Controller::Cpu));
            }
            if r.cpu_weight.is_some() || r.cpu_shares.is_some() {
                warnings.push(nowhere("CPUWeight=", Controller::Cpu));
            }
        }
    }

    // Tasks.
    let tasks = r
        .tasks_max
        .and_then(|t| t.resolve(facts.kernel_tasks_max))
        .map_or("max".to_string(), |n| n.to_string());
    match place(Controller::Pids) {
        Some(p) => w("TasksMax", p.dir().join("pids.max"), tasks),
        None if r.tasks_max.is_some() => warnings.push(nowhere("TasksMax=", Controller::Pids)),
        None => {}
    }

    // IO.
    if r.io_weight.is_some() || r.blockio_weight.is_some() {
        let key = if r.io_weight.is_some() {
            "IOWeight"
        } else {
            "BlockIOWeight"
        };
        match place(Controller::Io) {
            Some(Place::V2(d)) => {
                let weight = r
                    .io_weight
                    .or(r.blockio_weight.map(res::blkio_weight_to_io))
                    .unwrap_or(100);
                w(key, d.join("io.weight"), format!("default {weight}"));
            }
            Some(Place::V1(d)) => {
                let weight = r
                    .blockio_weight
                    .filter(|_| r.io_weight.is_none())
                    .or(r.io_weight.map(res::io_weight_to_blkio))
                    .unwrap_or(500);
                let file = [d.join("blkio.weight"), d.join("blkio.bfq.weight")]
                    .into_iter()
                    .find(|f| present(f));
                match file {
                    Some(f) => w(key, f, weight.to_string()),
                    None => warnings.push(format!(
                        "{key}= is not enforced: the blkio cgroup has no weight file (no CFQ/BFQ I/O scheduler)"
                    )),
                }
            }
            None => warnings.push(nowhere(&format!("{key}="), Controller::Io)),
        }
    }

    // CPU set.
    if let Some(cpus) = &r.allowed_cpus {
        match place(Controller::Cpuset) {
            Some(p) => w(
                "AllowedCPUs",
                p.dir().join("cpuset.cpus"),
                res::format_cpu_set(cpus),
            ),
            None => warnings.push(nowhere("AllowedCPUs=", Controller::Cpuset)),
        }
    }
    p.warnings = warnings;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unit::resources::assign;

    fn resources(lines: &[(&str, &str)]) -> Resources {
        let mut r = Resources::default();
        for (k, v) in lines {
            assert_eq!(assign(&mut r, k, v), Ok(true), "{k}={v}");
        }
        r
    }

    fn v1(c: Controller) -> Option<Place> {
        Some(Place::V1(PathBuf::from(format!("/cg/{}/u", c.v1_name()))))
    }

    fn value(p: &Plan, file: &str) -> Option<String> {
        p.writes
            .iter()
            .rev()
            .find(|w| w.file == Path::new(file))
            .map(|w| w.value.clone())
    }

    #[test]
    fn v1_mapping() {
        let r = resources(&[
            ("MemoryMax", "32M"),
            ("MemoryHigh", "16M"),
            ("CPUQuota", "20%"),
            ("CPUWeight", "50"),
            ("TasksMax", "5"),
            ("IOWeight", "200"),
            ("AllowedCPUs", "0"),
        ]);
        let facts = Facts {
            total_memory: 1 << 30,
            kernel_tasks_max: 1000,
            present: vec![PathBuf::from("/cg/blkio/u/blkio.bfq.weight")],
        };
        let p = plan(&r, &v1, &facts);
        assert_eq!(
            value(&p, "/cg/memory/u/memory.limit_in_bytes").as_deref(),
            Some("33554432")
        );
        assert_eq!(
            value(&p, "/cg/cpu/u/cpu.cfs_quota_us").as_deref(),
            Some("20000")
        );
        assert_eq!(
            value(&p, "/cg/cpu/u/cpu.cfs_period_us").as_deref(),
            Some("100000")
        );
        assert_eq!(value(&p, "/cg/cpu/u/cpu.shares").as_deref(), Some("512"));
        assert_eq!(value(&p, "/cg/pids/u/pids.max").as_deref(), Some("5"));
        assert_eq!(
            value(&p, "/cg/blkio/u/blkio.bfq.weight").as_deref(),
            Some("1000")
        );
        assert_eq!(value(&p, "/cg/cpuset/u/cpuset.cpus").as_deref(), Some("0"));
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("MemoryHigh= is not enforced on cgroup v1"));
        // The quota is lifted before the period changes (the kernel checks the pair).
        let quota_first = p
            .writes
            .iter()
            .position(|w| w.file.ends_with("cpu.cfs_quota_us"))
            .unwrap_or(usize::MAX);
        let period = p
            .writes
            .iter()
            .position(|w| w.file.ends_with("cpu.cfs_period_us"))
            .unwrap_or(0);
        assert!(quota_first < period);
    }

    #[test]
    fn unset_settings_reset_the_files_of_joined_controllers() {
        let p = plan(&Resources::default(), &v1, &Facts::default());
        assert_eq!(
            value(&p, "/cg/memory/u/memory.limit_in_bytes").as_deref(),
            Some("-1")
        );
        assert_eq!(value(&p, "/cg/pids/u/pids.max").as_deref(), Some("max"));
        assert_eq!(value(&p, "/cg/cpu/u/cpu.shares").as_deref(), Some("1024"));
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn v2_mapping_and_percentages() {
        let r = resources(&[
            ("MemoryMax", "50%"),
            ("MemoryLow", "1M"),
            ("CPUQuota", "150%"),
            ("CPUShares", "2048"),
            ("TasksMax", "10%"),
            ("BlockIOWeight", "1000"),
        ]);
        let v2 = |_c| Some(Place::V2(PathBuf::from("/u")));
        let facts = Facts {
            total_memory: 1 << 30,
            kernel_tasks_max: 1000,
            present: Vec::new(),
        };
        let p = plan(&r, &v2, &facts);
        assert_eq!(value(&p, "/u/memory.max").as_deref(), Some("536870912"));
        assert_eq!(value(&p, "/u/memory.low").as_deref(), Some("1048576"));
        assert_eq!(value(&p, "/u/memory.high").as_deref(), Some("max"));
        assert_eq!(value(&p, "/u/cpu.max").as_deref(), Some("150000 100000"));
        assert_eq!(value(&p, "/u/cpu.weight").as_deref(), Some("200"));
        assert_eq!(value(&p, "/u/pids.max").as_deref(), Some("100"));
        assert_eq!(value(&p, "/u/io.weight").as_deref(), Some("default 200"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn nowhere_to_write_is_a_warning_per_setting() {
        let r = resources(&[("MemoryMax", "1G"), ("TasksMax", "5"), ("CPUQuota", "20%")]);
        let p = plan(&r, &|_| None, &Facts::default());
        assert!(p.writes.is_empty());
        assert_eq!(p.warnings.len(), 3, "{:?}", p.warnings);
        assert!(p.warnings.iter().all(|w| w.contains("not enforced")));
        assert!(p.warnings[0].starts_with("MemoryMax="));
    }

    #[test]
    fn swap_on_v1_adds_to_the_memory_limit() {
        let r = resources(&[("MemoryMax", "1M"), ("MemorySwapMax", "1M")]);
        let facts = Facts {
            present: vec![PathBuf::from("/cg/memory/u/memory.memsw.limit_in_bytes")],
            ..Facts::default()
        };
        let p = plan(&r, &v1, &facts);
        assert_eq!(
            value(&p, "/cg/memory/u/memory.memsw.limit_in_bytes").as_deref(),
            Some("2097152")
        );
        assert_eq!(wanted(&r), vec![Controller::Memory]);
    }

    #[test]
    fn v1_hierarchies_are_joined_only_for_their_settings() {
        assert_eq!(
            wanted(&resources(&[("TasksMax", "5")])),
            vec![Controller::Pids]
        );
        assert!(wanted(&resources(&[])).is_empty());
        assert!(accounted(Controller::Memory, true) && !accounted(Controller::Memory, false));
        assert!(!accounted(Controller::Pids, false) && !accounted(Controller::Cpu, true));
    }
}
