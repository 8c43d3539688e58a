//! The table of every key gitproc knows, per section: enforced (the typed model acts on it),
//! informational (accepted silently), or not enforced (accepted with a warning so operators
//! know gitproc will not, say, sandbox the service as systemd would). Anything else is an
//! unknown key (a warning naming key and section, as systemd does).
//!
//! The lists are sorted byte-wise for binary search (a test checks it); covering systemd's own
//! `test/fuzz/fuzz-unit-file/directives.service` is checked by `tests/it/unit_directives.rs`.
//!
//! Over 600 lines because most of it is data (tables, test vectors), kept in one place.

use super::value::limit_resource;

/// How gitproc treats a known key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Parsed into the typed model and acted on; an invalid value is an error.
    Enforced,
    /// Known and harmless to ignore (documentation, install-time hints).
    Informational,
    /// Known to systemd but not implemented by gitproc: a warning.
    NotEnforced,
}

/// How a section is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Unit,
    Service,
    Install,
    /// `[Timer]` of a `.timer` unit (systemd.timer(5)).
    Timer,
    /// `[Socket]` of a `.socket` unit (systemd.socket(5)).
    Socket,
    /// `[X-Name]`: gitproc's (and others') extensions, kept raw, never warned about.
    Extension,
    Unknown,
}

pub fn section_kind(name: &str) -> SectionKind {
    match name {
        "Unit" => SectionKind::Unit,
        "Service" => SectionKind::Service,
        "Install" => SectionKind::Install,
        "Timer" => SectionKind::Timer,
        "Socket" => SectionKind::Socket,
        n if n.starts_with("X-") => SectionKind::Extension,
        _ => SectionKind::Unknown,
    }
}

fn contains(list: &[&str], key: &str) -> bool {
    list.binary_search(&key).is_ok()
}

/// Classifies `key` in `section`; `None` is an unknown key. Keys starting with `X-` are
/// accepted silently in every section, as systemd does (systemd.unit(5)).
pub fn classify(section: SectionKind, key: &str) -> Option<Support> {
    if key.starts_with("X-") && section != SectionKind::Unknown {
        return Some(Support::Informational);
    }
    let (enforced, info, not_enforced) = match section {
        SectionKind::Unit => (UNIT_ENFORCED, UNIT_INFORMATIONAL, UNIT_NOT_ENFORCED),
        SectionKind::Service => {
            if limit_resource(key).is_some() {
                return Some(Support::Enforced);
            }
            (
                SERVICE_ENFORCED,
                SERVICE_INFORMATIONAL,
                SERVICE_NOT_ENFORCED,
            )
        }
        SectionKind::Install => (
            INSTALL_ENFORCED,
            INSTALL_INFORMATIONAL,
            INSTALL_NOT_ENFORCED,
        ),
        SectionKind::Timer => (TIMER_ENFORCED, TIMER_INFORMATIONAL, TIMER_NOT_ENFORCED),
        SectionKind::Socket => (SOCKET_ENFORCED, SOCKET_INFORMATIONAL, SOCKET_NOT_ENFORCED),
        SectionKind::Extension => return Some(Support::Informational),
        SectionKind::Unknown => return None,
    };
    if contains(enforced, key) {
        Some(Support::Enforced)
    } else if contains(info, key) {
        Some(Support::Informational)
    } else if contains(not_enforced, key) {
        Some(Support::NotEnforced)
    } else {
        None
    }
}

/// Every key of a section, for tests and documentation.
pub fn all_keys(section: SectionKind) -> Vec<(&'static str, Support)> {
    let (e, i, n): (&[&'static str], &[&'static str], &[&'static str]) = match section {
        SectionKind::Unit => (UNIT_ENFORCED, UNIT_INFORMATIONAL, UNIT_NOT_ENFORCED),
        SectionKind::Service => (
            SERVICE_ENFORCED,
            SERVICE_INFORMATIONAL,
            SERVICE_NOT_ENFORCED,
        ),
        SectionKind::Install => (
            INSTALL_ENFORCED,
            INSTALL_INFORMATIONAL,
            INSTALL_NOT_ENFORCED,
        ),
        SectionKind::Timer => (TIMER_ENFORCED, TIMER_INFORMATIONAL, TIMER_NOT_ENFORCED),
        SectionKind::Socket => (SOCKET_ENFORCED, SOCKET_INFORMATIONAL, SOCKET_NOT_ENFORCED),
        _ => (&[], &[], &[]),
    };
    let mut out: Vec<(&'static str, Support)> = Vec::new();
    out.extend(e.iter().map(|k| (*k, Support::Enforced)));
    out.extend(i.iter().map(|k| (*k, Support::Informational)));
    out.extend(n.iter().map(|k| (*k, Support::NotEnforced)));
    out
}

/// [Unit] keys gitproc acts on.
const UNIT_ENFORCED: &[&str] = &[
    "After",
    "AssertArchitecture",
    "AssertCPUs",
    "AssertDirectoryNotEmpty",
    "AssertEnvironment",
    "AssertFileIsExecutable",
    "AssertFileNotEmpty",
    "AssertGroup",
    "AssertHost",
    "AssertKernelCommandLine",
    "AssertMemory",
    "AssertPathExists",
    "AssertPathExistsGlob",
    "AssertPathIsDirectory",
    "AssertPathIsMountPoint",
    "AssertPathIsReadWrite",
    "AssertPathIsSymbolicLink",
    "AssertSecurity",
    "AssertUser",
    "AssertVirtualization",
    "Before",
    "BindTo",
    "BindsTo",
    "ConditionArchitecture",
    "ConditionCPUs",
    "ConditionDirectoryNotEmpty",
    "ConditionEnvironment",
    "ConditionFileIsExecutable",
    "ConditionFileNotEmpty",
    "ConditionGroup",
    "ConditionHost",
    "ConditionKernelCommandLine",
    "ConditionMemory",
    "ConditionPathExists",
    "ConditionPathExistsGlob",
    "ConditionPathIsDirectory",
    "ConditionPathIsMountPoint",
    "ConditionPathIsReadWrite",
    "ConditionPathIsSymbolicLink",
    "ConditionSecurity",
    "ConditionUser",
    "ConditionVirtualization",
    "Conflicts",
    "Description",
    "OnFailure",
    "OnSuccess",
    "PartOf",
    "Requires",
    "StartLimitBurst",
    "StartLimitInterval",
    "StartLimitIntervalSec",
    "Wants",
];

/// [Unit] keys accepted silently: they carry no behaviour gitproc lacks.
const UNIT_INFORMATIONAL: &[&str] = &["DefaultDependencies", "Documentation", "SourcePath"];

/// [Unit] keys systemd knows and gitproc accepts with a "not enforced" warning.
const UNIT_NOT_ENFORCED: &[&str] = &[
    "AllowIsolate",
    "AssertACPower",
    "AssertCPUFeature",
    "AssertCPUPressure",
    "AssertCapability",
    "AssertControlGroupController",
    "AssertCredential",
    "AssertFirstBoot",
    "AssertIOPressure",
    "AssertKernelVersion",
    "AssertMemoryPressure",
    "AssertNeedsUpdate",
    "AssertOSRelease",
    "AssertPathIsEncrypted",
    "AssertVersion",
    "BPFProgram",
    "CollectMode",
    "ConditionACPower",
    "ConditionCPUFeature",
    "ConditionCPUPressure",
    "ConditionCapability",
    "ConditionControlGroupController",
    "ConditionCredential",
    "ConditionFirmware",
    "ConditionFirstBoot",
    "ConditionIOPressure",
    "ConditionKernelVersion",
    "ConditionMemoryPressure",
    "ConditionNeedsUpdate",
    "ConditionOSRelease",
    "ConditionPathIsEncrypted",
    "ConditionVersion",
    "ExecSearchPath",
    "FailureAction",
    "FailureActionExitStatus",
    "IgnoreOnIsolate",
    "IgnoreOnSnapshot",
    "JobRunningTimeoutSec",
    "JobTimeoutAction",
    "JobTimeoutRebootArgument",
    "JobTimeoutSec",
    "JoinsNamespaceOf",
    "OnFailureIsolate",
    "OnFailureJobMode",
    "OnSuccessJobMode",
    "PropagateReloadFrom",
    "PropagateReloadTo",
    "PropagatesReloadTo",
    "PropagatesStopTo",
    "RebootArgument",
    "RefuseManualStart",
    "RefuseManualStop",
    "ReloadPropagatedFrom",
    "RequiresMountsFor",
    "RequiresOverridable",
    "Requisite",
    "RequisiteOverridable",
    "SocketBindAllow",
    "SocketBindDeny",
    "StartLimitAction",
    "StopPropagatedFrom",
    "StopWhenUnneeded",
    "SuccessAction",
    "SuccessActionExitStatus",
    "SurviveFinalKillSignal",
    "Upholds",
    "WantsMountsFor",
];

/// [Service] keys gitproc acts on.
const SERVICE_ENFORCED: &[&str] = &[
    "AllowedCPUs",
    "AmbientCapabilities",
    "BlockIOWeight",
    "CPUQuota",
    "CPUQuotaPeriodSec",
    "CPUShares",
    "CPUWeight",
    "CapabilityBoundingSet",
    "Environment",
    "EnvironmentFile",
    "ExecCondition",
    "ExecReload",
    "ExecStart",
    "ExecStartPost",
    "ExecStartPre",
    "ExecStop",
    "ExecStopPost",
    "FinalKillSignal",
    "Group",
    "GuessMainPID",
    "IOWeight",
    "IgnoreSIGPIPE",
    "KillMode",
    "KillSignal",
    "LimitAS",
    "LimitCORE",
    "LimitCPU",
    "LimitDATA",
    "LimitFSIZE",
    "LimitLOCKS",
    "LimitMEMLOCK",
    "LimitMSGQUEUE",
    "LimitNICE",
    "LimitNOFILE",
    "LimitNPROC",
    "LimitRSS",
    "LimitRTPRIO",
    "LimitRTTIME",
    "LimitSIGPENDING",
    "LimitSTACK",
    "LogsDirectory",
    "LogsDirectoryMode",
    "MemoryHigh",
    "MemoryLimit",
    "MemoryLow",
    "MemoryMax",
    "MemoryMin",
    "MemorySwapMax",
    "Nice",
    "NoNewPrivileges",
    "NotifyAccess",
    "OOMScoreAdjust",
    "PIDFile",
    "PassEnvironment",
    "PermissionsStartOnly",
    "RemainAfterExit",
    "Restart",
    "RestartForceExitStatus",
    "RestartMaxDelaySec",
    "RestartPreventExitStatus",
    "RestartSec",
    "RestartSteps",
    "RootDirectory",
    "RuntimeDirectory",
    "RuntimeDirectoryMode",
    "SendSIGHUP",
    "SendSIGKILL",
    "Sockets",
    "StandardError",
    "StandardInput",
    "StandardOutput",
    "StartLimitBurst",
    "StartLimitInterval",
    "StartLimitIntervalSec",
    "StateDirectory",
    "StateDirectoryMode",
    "SuccessExitStatus",
    "SupplementaryGroups",
    "SyslogIdentifier",
    "TasksMax",
    "TimeoutSec",
    "TimeoutStartSec",
    "TimeoutStopSec",
    "Type",
    "UMask",
    "UnsetEnvironment",
    "User",
    "WatchdogSec",
    "WorkingDirectory",
];

/// [Service] keys accepted silently: they carry no behaviour gitproc lacks.
/// The accounting switches: gitproc accounts memory, tasks and CPU time wherever it has a
/// cgroup for them (systemd's defaults on a current system).
const SERVICE_INFORMATIONAL: &[&str] = &["CPUAccounting", "MemoryAccounting", "TasksAccounting"];

/// [Service] keys systemd knows and gitproc accepts with a "not enforced" warning.
const SERVICE_NOT_ENFORCED: &[&str] = &[
    "AllowedMemoryNodes",
    "AppArmorProfile",
    "BindLogSockets",
    "BindPaths",
    "BindReadOnlyPaths",
    "BlockIOAccounting",
    "BlockIODeviceWeight",
    "BlockIOReadBandwidth",
    "BlockIOWriteBandwidth",
    "BusName",
    "BusPolicy",
    "CPUAffinity",
    "CPUSchedulingPolicy",
    "CPUSchedulingPriority",
    "CPUSchedulingResetOnFork",
    "CacheDirectory",
    "CacheDirectoryMode",
    "Capabilities",
    "ConfigurationDirectory",
    "ConfigurationDirectoryMode",
    "CoredumpFilter",
    "CoredumpReceive",
    "DefaultMemoryLow",
    "DefaultMemoryMin",
    "DefaultStartupMemoryLow",
    "Delegate",
    "DelegateSubgroup",
    "DeviceAllow",
    "DevicePolicy",
    "DisableControllers",
    "DynamicUser",
    "ExecPaths",
    "ExecSearchPath",
    "ExitType",
    "ExtensionDirectories",
    "ExtensionImagePolicy",
    "ExtensionImages",
    "FailureAction",
    "FileDescriptorStoreMax",
    "FileDescriptorStorePreserve",
    "IOAccounting",
    "IODeviceLatencyTargetSec",
    "IODeviceWeight",
    "IOReadBandwidthMax",
    "IOReadIOPSMax",
    "IOSchedulingClass",
    "IOSchedulingPriority",
    "IOWriteBandwidthMax",
    "IOWriteIOPSMax",
    "IPAccounting",
    "IPAddressAllow",
    "IPAddressDeny",
    "IPCNamespacePath",
    "IPEgressFilterPath",
    "IPIngressFilterPath",
    "ImportCredential",
    "InaccessibleDirectories",
    "InaccessiblePaths",
    "KeyringMode",
    "LoadCredential",
    "LoadCredentialEncrypted",
    "LockPersonality",
    "LogExtraFields",
    "LogFilterPatterns",
    "LogLevelMax",
    "LogNamespace",
    "LogRateLimitBurst",
    "LogRateLimitIntervalSec",
    "ManagedOOMMemoryPressure",
    "ManagedOOMMemoryPressureDurationSec",
    "ManagedOOMMemoryPressureLimit",
    "ManagedOOMPreference",
    "ManagedOOMSwap",
    "MemoryDenyWriteExecute",
    "MemoryKSM",
    "MemoryPressureThresholdSec",
    "MemoryPressureWatch",
    "MemoryZSwapMax",
    "MemoryZSwapWriteback",
    "MountAPIVFS",
    "MountFlags",
    "MountImagePolicy",
    "MountImages",
    "NFTSet",
    "NUMAMask",
    "NUMAPolicy",
    "NetClass",
    "NetworkNamespacePath",
    "NoExecPaths",
    "NonBlocking",
    "OOMPolicy",
    "OpenFile",
    "PAMName",
    "Personality",
    "PrivateDevices",
    "PrivateIPC",
    "PrivateMounts",
    "PrivateNetwork",
    "PrivatePIDs",
    "PrivateTmp",
    "PrivateUsers",
    "PrivateUsersEx",
    "ProcSubset",
    "ProtectClock",
    "ProtectControlGroups",
    "ProtectHome",
    "ProtectHostname",
    "ProtectHostnameEx",
    "ProtectKernelLogs",
    "ProtectKernelModules",
    "ProtectKernelTunables",
    "ProtectProc",
    "ProtectSystem",
    "ReadOnlyDirectories",
    "ReadOnlyPaths",
    "ReadWriteDirectories",
    "ReadWritePaths",
    "RebootArgument",
    "ReloadSignal",
    "RemoveIPC",
    "RestartKillSignal",
    "RestartMode",
    "RestrictAddressFamilies",
    "RestrictFileSystems",
    "RestrictNamespaces",
    "RestrictNetworkInterfaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "RootDirectoryStartOnly",
    "RootEphemeral",
    "RootHash",
    "RootHashSignature",
    "RootImage",
    "RootImageOptions",
    "RootImagePolicy",
    "RootVerity",
    "RuntimeDirectoryPreserve",
    "RuntimeMaxSec",
    "RuntimeRandomizedExtraSec",
    "SELinuxContext",
    "SecureBits",
    "SetCredential",
    "SetCredentialEncrypted",
    "SetLoginEnvironment",
    "Slice",
    "SmackProcessLabel",
    "StandardInputData",
    "StandardInputText",
    "StartLimitAction",
    "StartupAllowedCPUs",
    "StartupAllowedMemoryNodes",
    "StartupBlockIOWeight",
    "StartupCPUShares",
    "StartupCPUWeight",
    "StartupIOWeight",
    "StartupMemoryHigh",
    "StartupMemoryLow",
    "StartupMemoryMax",
    "StartupMemorySwapMax",
    "StartupMemoryZSwapMax",
    "SuccessAction",
    "SurviveFinalKillSignal",
    "SysVStartPriority",
    "SyslogFacility",
    "SyslogLevel",
    "SyslogLevelPrefix",
    "SystemCallArchitectures",
    "SystemCallErrorNumber",
    "SystemCallFilter",
    "SystemCallLog",
    "TTYColumns",
    "TTYPath",
    "TTYReset",
    "TTYRows",
    "TTYVHangup",
    "TTYVTDisallocate",
    "TemporaryFileSystem",
    "TimeoutAbortSec",
    "TimeoutCleanSec",
    "TimeoutStartFailureMode",
    "TimeoutStopFailureMode",
    "TimerSlackNSec",
    "USBFunctionDescriptors",
    "USBFunctionStrings",
    "UtmpIdentifier",
    "UtmpMode",
    "WatchdogSignal",
];

/// [Install] keys gitproc acts on.
const INSTALL_ENFORCED: &[&str] = &["Alias", "RequiredBy", "WantedBy"];

/// [Install] keys accepted silently: they carry no behaviour gitproc lacks.
const INSTALL_INFORMATIONAL: &[&str] = &["Also", "DefaultInstance", "UpheldBy"];

/// [Install] keys systemd knows and gitproc accepts with a "not enforced" warning.
const INSTALL_NOT_ENFORCED: &[&str] = &[];

/// [Timer] keys gitproc acts on (systemd.timer(5)).
const TIMER_ENFORCED: &[&str] = &[
    "AccuracySec",
    "FixedRandomDelay",
    "OnActiveSec",
    "OnBootSec",
    "OnCalendar",
    "OnStartupSec",
    "OnUnitActiveSec",
    "OnUnitInactiveSec",
    "Persistent",
    "RandomizedDelaySec",
    "RemainAfterElapse",
    "Unit",
];

/// [Timer] keys accepted silently.
const TIMER_INFORMATIONAL: &[&str] = &[];

/// [Timer] keys systemd knows and gitproc accepts with a warning: gitproc does not wake a
/// suspended machine, and reacts to no clock or time-zone change events.
const TIMER_NOT_ENFORCED: &[&str] = &[
    "OnClockChange",
    "OnTimezoneChange",
    "RandomizedOffsetSec",
    "WakeSystem",
];

/// [Socket] keys gitproc acts on (systemd.socket(5)). `Accept=` is enforced as "no": `yes`
/// is an error (one service per connection is not implemented).
const SOCKET_ENFORCED: &[&str] = &[
    "Accept",
    "Backlog",
    "BindIPv6Only",
    "DirectoryMode",
    "FileDescriptorName",
    "FreeBind",
    "ListenDatagram",
    "ListenSequentialPacket",
    "ListenStream",
    "RemoveOnStop",
    "ReusePort",
    "Service",
    "SocketGroup",
    "SocketMode",
    "SocketUser",
];

/// [Socket] keys accepted silently.
/// `[X-Health]`, gitproc's health check (an `X-` section: systemd ignores it). Every key is
/// enforced; another key in the section is warned about like any unknown key.
pub const HEALTH_KEYS: &[&str] = &[
    "Exec",
    "ExpectBody",
    "ExpectStatus",
    "HTTP",
    "IntervalSec",
    "OnUnhealthy",
    "ReadyOnHealthy",
    "Retries",
    "StartPeriodSec",
    "SuccessThreshold",
    "TCP",
    "TimeoutSec",
];

/// The extension section gitproc reads itself (see [`HEALTH_KEYS`]).
pub const HEALTH_SECTION: &str = "X-Health";

const SOCKET_INFORMATIONAL: &[&str] = &[];

/// [Socket] keys systemd knows and gitproc accepts with a warning: other socket kinds
/// (FIFOs, netlink, message queues, USB functions), per-socket options, the socket's own
/// commands, and the trigger and poll limits.
const SOCKET_NOT_ENFORCED: &[&str] = &[
    "BindToDevice",
    "Broadcast",
    "DeferAcceptSec",
    "DeferTrigger",
    "DeferTriggerMaxSec",
    "ExecStartPost",
    "ExecStartPre",
    "ExecStopPost",
    "ExecStopPre",
    "FlushPending",
    "IPTOS",
    "IPTTL",
    "KeepAlive",
    "KeepAliveIntervalSec",
    "KeepAliveProbes",
    "KeepAliveTimeSec",
    "ListenFIFO",
    "ListenMessageQueue",
    "ListenNetlink",
    "ListenSpecial",
    "ListenUSBFunction",
    "Mark",
    "MaxConnections",
    "MaxConnectionsPerSource",
    "MessageQueueMaxMessages",
    "MessageQueueMessageSize",
    "NoDelay",
    "PassCredentials",
    "PassFileDescriptorsToExec",
    "PassPIDFD",
    "PassPacketInfo",
    "PassSecurity",
    "PipeSize",
    "PollLimitBurst",
    "PollLimitIntervalSec",
    "Priority",
    "ReceiveBuffer",
    "SELinuxContextFromNet",
    "SendBuffer",
    "SmackLabel",
    "SmackLabelIPIn",
    "SmackLabelIPOut",
    "SocketProtocol",
    "Symlinks",
    "TCPCongestion",
    "TimeoutSec",
    "Timestamping",
    "Transparent",
    "TriggerLimitBurst",
    "TriggerLimitIntervalSec",
    "Writable",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_disjoint() {
        let all = [
            UNIT_ENFORCED,
            UNIT_INFORMATIONAL,
            UNIT_NOT_ENFORCED,
            SERVICE_ENFORCED,
            SERVICE_INFORMATIONAL,
            SERVICE_NOT_ENFORCED,
            INSTALL_ENFORCED,
            INSTALL_INFORMATIONAL,
            INSTALL_NOT_ENFORCED,
            TIMER_ENFORCED,
            TIMER_INFORMATIONAL,
            TIMER_NOT_ENFORCED,
            SOCKET_ENFORCED,
            SOCKET_INFORMATIONAL,
            SOCKET_NOT_ENFORCED,
        ];
        for list in all {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "not sorted: {list:?}");
        }
        for sec in [
            SectionKind::Unit,
            SectionKind::Service,
            SectionKind::Install,
            SectionKind::Timer,
            SectionKind::Socket,
        ] {
            let keys = all_keys(sec);
            let mut names: Vec<&str> = keys.iter().map(|(k, _)| *k).collect();
            names.sort_unstable();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "a key is in two lists of {sec:?}");
        }
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(SectionKind::Service, "ExecStart"),
            Some(Support::Enforced)
        );
        assert_eq!(
            classify(SectionKind::Service, "LimitNOFILE"),
            Some(Support::Enforced)
        );
        assert_eq!(
            classify(SectionKind::Service, "ProtectSystem"),
            Some(Support::NotEnforced)
        );
        assert_eq!(
            classify(SectionKind::Service, "PrivateTmp"),
            Some(Support::NotEnforced)
        );
        assert_eq!(
            classify(SectionKind::Service, "SystemCallFilter"),
            Some(Support::NotEnforced)
        );
        assert_eq!(
            classify(SectionKind::Service, "CapabilityBoundingSet"),
            Some(Support::Enforced)
        );
        assert_eq!(
            classify(SectionKind::Unit, "Documentation"),
            Some(Support::Informational)
        );
        assert_eq!(classify(SectionKind::Unit, "ExecStart"), None);
        assert_eq!(classify(SectionKind::Service, "Frobnicate"), None);
        assert_eq!(
            classify(SectionKind::Service, "X-Frobnicate"),
            Some(Support::Informational)
        );
        assert_eq!(
            classify(SectionKind::Extension, "Anything"),
            Some(Support::Informational)
        );
        assert_eq!(section_kind("X-Health"), SectionKind::Extension);
        assert!(
            HEALTH_KEYS.windows(2).all(|w| w[0] < w[1]),
            "HEALTH_KEYS unsorted"
        );
        assert_eq!(section_kind("Socket"), SectionKind::Socket);
        assert_eq!(section_kind("Path"), SectionKind::Unknown);
    }
}
