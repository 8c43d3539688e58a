//! Which virtualization this host runs under, as systemd names it (`systemd-detect-virt`),
//! for `ConditionVirtualization=`. Read once at daemon start (a few small files), then
//! kept: a host does not change containers under a running daemon.
//!
//! As systemd does, a container wins over a VM (a docker container on a VM is `docker`).
//! Containers are told by `/run/systemd/container`, `container=` in PID 1's environment,
//! `/proc/vz` (OpenVZ), a WSL kernel, `/run/.containerenv` (podman) and `/.dockerenv`
//! (docker); VMs by the DMI vendor and product strings, `/sys/hypervisor/type` (Xen) and
//! the `hypervisor` CPU flag (`vm-other` when nothing names the hypervisor). No cpuid and
//! no device probing: it must stay cheap and never block.

/// The container ids systemd knows; any other `container=` value is `container-other`.
const CONTAINERS: &[&str] = &[
    "openvz",
    "lxc",
    "lxc-libvirt",
    "systemd-nspawn",
    "docker",
    "podman",
    "rkt",
    "wsl",
    "proot",
    "pouch",
];

/// DMI vendor/product prefixes and the VM id systemd gives them.
const DMI_VENDORS: &[(&str, &str)] = &[
    ("KVM", "kvm"),
    ("OpenStack", "kvm"),
    ("KubeVirt", "kvm"),
    ("Amazon EC2", "amazon"),
    ("QEMU", "qemu"),
    ("VMware", "vmware"),
    ("VMW", "vmware"),
    ("innotek GmbH", "oracle"),
    ("VirtualBox", "oracle"),
    ("Oracle Corporation", "oracle"),
    ("Xen", "xen"),
    ("Bochs", "bochs"),
    ("Parallels", "parallels"),
    ("BHYVE", "bhyve"),
    ("Hyper-V", "microsoft"),
    ("Apple Virtualization", "apple"),
    ("Google Compute Engine", "google"),
];

/// The detected virtualization: `None` on bare metal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Virtualization {
    /// systemd's id: `kvm`, `docker`, `vm-other`, ... (`None`: no virtualization).
    pub id: Option<String>,
    /// The id names a container (else a VM).
    pub container: bool,
}

/// What detection reads, gathered first so the decision is a pure function (tested).
#[derive(Debug, Clone, Default)]
struct Probe {
    run_systemd_container: Option<String>,
    pid1_container_env: Option<String>,
    openvz: bool,
    osrelease: String,
    containerenv: bool,
    dockerenv: bool,
    dmi: Vec<String>,
    hypervisor_type: Option<String>,
    cpu_hypervisor_flag: bool,
}

impl Virtualization {
    /// Reads the host (see the module doc).
    pub fn detect() -> Virtualization {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let exists = |p: &str| std::path::Path::new(p).exists();
        let pid1_container_env = std::fs::read("/proc/1/environ").ok().and_then(|env| {
            env.split(|&b| b == 0).find_map(|e| {
                e.strip_prefix(b"container=")
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        });
        let dmi = [
            "product_name",
            "sys_vendor",
            "board_vendor",
            "bios_vendor",
            "product_version",
        ]
        .iter()
        .filter_map(|f| read(&format!("/sys/class/dmi/id/{f}")))
        .collect();
        let cpu_hypervisor_flag = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|t| {
            t.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|w| w == "hypervisor"))
        });
        classify(&Probe {
            run_systemd_container: read("/run/systemd/container"),
            pid1_container_env,
            openvz: exists("/proc/vz") && !exists("/proc/bc"),
            osrelease: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
            containerenv: exists("/run/.containerenv"),
            dockerenv: exists("/.dockerenv"),
            dmi,
            hypervisor_type: read("/sys/hypervisor/type"),
            cpu_hypervisor_flag,
        })
    }

    /// Whether `ConditionVirtualization=value` holds (before its `!`): a boolean (any
    /// virtualization), `vm`, `container`, `private-users` (a user namespace), or an id.
    pub fn matches(&self, value: &str) -> bool {
        if value == "private-users" {
            return in_user_namespace();
        }
        if let Ok(b) = crate::unit::value::parse_bool(value) {
            return b == self.id.is_some();
        }
        match value {
            "vm" => self.id.is_some() && !self.container,
            "container" => self.id.is_some() && self.container,
            _ => self.id.as_deref() == Some(value),
        }
    }

    /// The id for messages: `none` on bare metal.
    pub fn name(&self) -> &str {
        self.id.as_deref().unwrap_or("none")
    }
}

fn classify(p: &Probe) -> Virtualization {
    let container = |id: &str| Virtualization {
        id: Some(if CONTAINERS.contains(&id) {
            id.to_string()
        } else {
            "container-other".to_string()
        }),
        container: true,
    };
    let vm = |id: &str| Virtualization {
        id: Some(id.to_string()),
        container: false,
    };
    if p.openvz {
        return container("openvz");
    }
    if p.osrelease.contains("Microsoft") || p.osrelease.contains("WSL") {
        return container("wsl");
    }
    let named = p
        .run_systemd_container
        .as_deref()
        .or(p.pid1_container_env.as_deref())
        .filter(|s| !s.is_empty());
    if let Some(name) = named {
        return container(name);
    }
    if p.containerenv {
        return container("podman");
    }
    if p.dockerenv {
        return container("docker");
    }
    for s in &p.dmi {
        if let Some((_, id)) = DMI_VENDORS.iter().find(|(v, _)| s.starts_with(v)) {
            return vm(id);
        }
    }
    if p.hypervisor_type.as_deref() == Some("xen") {
        return vm("xen");
    }
    if p.cpu_hypervisor_flag {
        return vm("vm-other");
    }
    Virtualization::default()
}

/// Whether the daemon runs in a user namespace other than the initial one (its uid map is
/// not the identity over the whole range).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f != ["0", "0", "4294967295"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_wins_over_the_vm_it_runs_on() {
        let p = Probe {
            dockerenv: true,
            cpu_hypervisor_flag: true,
            dmi: vec!["QEMU".into()],
            ..Probe::default()
        };
        let v = classify(&p);
        assert_eq!(v.id.as_deref(), Some("docker"));
        assert!(v.matches("container") && v.matches("docker") && v.matches("yes"));
        assert!(!v.matches("vm") && !v.matches("no") && !v.matches("qemu"));
    }

    #[test]
    fn containers_are_named_by_systemd_or_pid1() {
        let named = |s: &str| Probe {
            run_systemd_container: Some(s.into()),
            ..Probe::default()
        };
        assert_eq!(classify(&named("lxc")).id.as_deref(), Some("lxc"));
        assert_eq!(
            classify(&named("something")).id.as_deref(),
            Some("container-other")
        );
        let env = Probe {
            pid1_container_env: Some("systemd-nspawn".into()),
            ..Probe::default()
        };
        assert_eq!(classify(&env).id.as_deref(), Some("systemd-nspawn"));
        let podman = Probe {
            containerenv: true,
            ..Probe::default()
        };
        assert_eq!(classify(&podman).id.as_deref(), Some("podman"));
    }

    #[test]
    fn vms_by_dmi_xen_or_the_cpu_flag() {
        let dmi = |s: &str| Probe {
            dmi: vec![s.into()],
            cpu_hypervisor_flag: true,
            ..Probe::default()
        };
        assert_eq!(classify(&dmi("KVM")).id.as_deref(), Some("kvm"));
        assert_eq!(
            classify(&dmi("VMware Virtual Platform")).id.as_deref(),
            Some("vmware")
        );
        assert_eq!(classify(&dmi("Dell Inc.")).id.as_deref(), Some("vm-other"));
        let v = classify(&dmi("QEMU"));
        assert!(v.matches("vm") && v.matches("qemu") && v.matches("true"));
        assert!(!v.matches("container"));
        let xen = Probe {
            hypervisor_type: Some("xen".into()),
            ..Probe::default()
        };
        assert_eq!(classify(&xen).id.as_deref(), Some("xen"));
    }

    #[test]
    fn bare_metal_is_none() {
        let v = classify(&Probe {
            dmi: vec!["Dell Inc.".into()],
            ..Probe::default()
        });
        assert_eq!(v, Virtualization::default());
        assert!(v.matches("no") && v.matches("false"));
        assert!(!v.matches("yes") && !v.matches("vm") && !v.matches("container"));
        assert_eq!(v.name(), "none");
    }
}
