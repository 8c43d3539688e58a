//! The typed model of a unit: everything gitproc acts on, with systemd's defaults.
//!
//! This is the contract between the parser (which fills it) and everything downstream
//! (the service state machine, the runtime, the dependency graph). Fields are named after
//! systemd's keys in snake case. Defaults live in [`defaults`], each one named once.

use std::collections::BTreeMap;
use std::time::Duration;

/// systemd's defaults, each named in one place (systemd.service(5), systemd.unit(5), systemd.kill(5)).
pub mod defaults {
    use std::time::Duration;
    /// `[X-Health]` `IntervalSec=` default.
    pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
    /// `[X-Health]` `TimeoutSec=` default.
    pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
    /// `[X-Health]` `Retries=` default.
    pub const HEALTH_RETRIES: u32 = 3;
    /// `RestartSec=` default.
    pub const RESTART_SEC: Duration = Duration::from_millis(100);
    /// `DefaultTimeoutStartSec=` of the manager.
    pub const TIMEOUT_START: Duration = Duration::from_secs(90);
    /// `DefaultTimeoutStopSec=` of the manager.
    pub const TIMEOUT_STOP: Duration = Duration::from_secs(90);
    /// `DefaultStartLimitIntervalSec=`.
    pub const START_LIMIT_INTERVAL: Duration = Duration::from_secs(10);
    /// `DefaultStartLimitBurst=`.
    pub const START_LIMIT_BURST: u32 = 5;
    /// `KillSignal=` default.
    pub const KILL_SIGNAL: i32 = libc::SIGTERM;
    /// `FinalKillSignal=` default.
    pub const FINAL_KILL_SIGNAL: i32 = libc::SIGKILL;
    /// `RuntimeDirectoryMode=` and friends default.
    pub const DIRECTORY_MODE: u32 = 0o755;
    /// `SocketMode=` default (systemd.socket(5)).
    pub const SOCKET_MODE: u32 = 0o666;
    /// `Backlog=` default: SOMAXCONN (the kernel caps it at `net.core.somaxconn`).
    pub const BACKLOG: u32 = libc::SOMAXCONN as u32;
}

/// A unit name split into its parts: `prefix@instance.service`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitName {
    /// Full name, e.g. `getty@tty1.service`.
    pub full: String,
    /// Part before `@` (or before the suffix when not a template), e.g. `getty`.
    pub prefix: String,
    /// `Some("tty1")` for an instance, `Some("")` for a template itself, `None` otherwise.
    pub instance: Option<String>,
    /// Suffix without the dot, e.g. `service`.
    pub suffix: String,
}

/// The whole unit after parsing, drop-ins applied and specifiers resolved.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Unit {
    /// Unit name (for an instance, the instance's name, not the template's).
    pub name: String,
    /// Path of the main file as given to the parser (repo-relative when read from git).
    pub path: String,
    /// Drop-in files applied, in the order applied.
    pub dropins: Vec<String>,
    pub unit: UnitSection,
    pub service: ServiceSection,
    pub install: InstallSection,
    /// `[Timer]`: set for `.timer` units only (their `service` stays at its defaults).
    pub timer: TimerSection,
    /// `[Socket]`: set for `.socket` units only (their `service` stays at its defaults).
    pub socket: SocketSection,
    /// `[X-Health]`: gitproc's health check of a service (`None` without one). An `X-`
    /// section, so systemd ignores it and the file stays valid for systemd.
    pub health: Option<HealthCheck>,
    /// `[X-*]` sections (gitproc's extensions), kept raw: section -> key -> values.
    pub extensions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UnitSection {
    pub description: Option<String>,
    pub after: Vec<String>,
    pub before: Vec<String>,
    pub requires: Vec<String>,
    pub wants: Vec<String>,
    pub binds_to: Vec<String>,
    pub part_of: Vec<String>,
    pub conflicts: Vec<String>,
    /// `OnFailure=`: units started when this one enters `failed` (or fails before an
    /// automatic restart), with `MONITOR_*` in their environment (see `service::monitor`).
    pub on_failure: Vec<String>,
    /// `OnSuccess=`: units started when this one enters `inactive` (or exits cleanly before
    /// an automatic restart).
    pub on_success: Vec<String>,
    /// The `Condition*=`/`Assert*=` lines gitproc evaluates ([`Condition::EVALUATED`]), in
    /// file order.
    pub conditions: Vec<Condition>,
    /// `Duration::ZERO` disables rate limiting.
    pub start_limit_interval: Duration,
    pub start_limit_burst: u32,
}

impl Default for UnitSection {
    fn default() -> Self {
        UnitSection {
            description: None,
            after: Vec::new(),
            before: Vec::new(),
            requires: Vec::new(),
            wants: Vec::new(),
            binds_to: Vec::new(),
            part_of: Vec::new(),
            conflicts: Vec::new(),
            on_failure: Vec::new(),
            on_success: Vec::new(),
            conditions: Vec::new(),
            start_limit_interval: defaults::START_LIMIT_INTERVAL,
            start_limit_burst: defaults::START_LIMIT_BURST,
        }
    }
}

/// One `Condition<Check>=` or `Assert<Check>=` line (systemd.unit(5), "Conditions and
/// Asserts"): a failed condition skips the start, a failed assert fails it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What is tested, without the family prefix: `PathExists`, `Host`, ...
    pub check: String,
    /// `Assert*=` rather than `Condition*=`.
    pub assert: bool,
    /// A leading `|`: a triggering condition (at least one of them must hold).
    pub trigger: bool,
    /// A leading `!` (after `|`): the test is negated.
    pub negate: bool,
    /// The value after the prefixes.
    pub value: String,
}

impl Condition {
    /// The checks gitproc evaluates; the other `Condition*=`/`Assert*=` keys are accepted
    /// with a "not enforced" warning at load.
    pub const EVALUATED: &'static [&'static str] = &[
        "Architecture",
        "CPUs",
        "DirectoryNotEmpty",
        "Environment",
        "FileIsExecutable",
        "FileNotEmpty",
        "Group",
        "Host",
        "KernelCommandLine",
        "Memory",
        "PathExists",
        "PathExistsGlob",
        "PathIsDirectory",
        "PathIsMountPoint",
        "PathIsReadWrite",
        "PathIsSymbolicLink",
        "Security",
        "User",
        "Virtualization",
    ];

    /// The line as written, for messages: `ConditionPathExists=|!/etc/x`.
    pub fn directive(&self) -> String {
        format!(
            "{}{}={}{}{}",
            if self.assert { "Assert" } else { "Condition" },
            self.check,
            if self.trigger { "|" } else { "" },
            if self.negate { "!" } else { "" },
            self.value
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServiceType {
    #[default]
    Simple,
    Exec,
    Forking,
    Oneshot,
    Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnWatchdog,
    OnAbort,
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillMode {
    #[default]
    ControlGroup,
    Mixed,
    Process,
    None,
}

/// `NotifyAccess=`: which processes of the service may send sd_notify messages. The sender
/// is always first proven to be a process of the service (pid, cgroup or session); this
/// narrows it further, as systemd does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyAccess {
    None,
    /// Only the main process.
    Main,
    /// The main process and the control processes (`ExecStartPre=`, `ExecReload=`, ...).
    Exec,
    /// Any process of the service.
    All,
}

/// The prefixes of an `Exec*=` line (systemd.service(5), "Command lines").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExecFlags {
    /// `-`: a failing exit code is recorded but otherwise ignored.
    pub ignore_failure: bool,
    /// `@`: the second word is passed as argv[0].
    pub custom_argv0: bool,
    /// `+`: run with full privileges (User=, Group=, ... not applied).
    pub full_privileges: bool,
    /// `!`: User=/Group= not applied by the manager (the process changes credentials itself).
    pub no_setuid: bool,
    /// `!!`: like `!`, only on systems without ambient capabilities; treated as `!`.
    pub ambient_fallback: bool,
    /// `:`: environment variables are not substituted.
    pub no_env_expansion: bool,
}

/// One `Exec*=` command line, after quoting was resolved and specifiers expanded.
///
/// Environment variable expansion (`$VAR`, `${VAR}`) needs the environment of the
/// service at spawn time; the parser already performs it against `Environment=` and
/// the `EnvironmentFile=` contents it was given, unless `no_env_expansion` is set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecCommand {
    pub flags: ExecFlags,
    /// The binary to execute (absolute path, or a bare name searched in PATH as systemd does).
    pub path: String,
    /// The full argv, argv[0] included (with `@`, the given argv[0]).
    pub argv: Vec<String>,
    /// `file:line` where it was written, for messages.
    pub origin: String,
    /// Variables left verbatim in `argv` for the runtime to substitute at spawn time
    /// (`$MAINPID`, `$EXIT_STATUS`, `PassEnvironment=` names, ...): see
    /// `crate::unit::exec::expand_runtime`. Empty for most commands.
    pub runtime_vars: Vec<String>,
}

/// An exit-status set such as `SuccessExitStatus=1 2 SIGKILL`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExitStatusSet {
    pub codes: Vec<i32>,
    pub signals: Vec<i32>,
}

/// `StandardOutput=` / `StandardError=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdOutput {
    /// `journal`, `syslog`, `kmsg` (and the default): gitproc's per-unit log file.
    #[default]
    Journal,
    Null,
    Inherit,
    /// `file:PATH`: opened for writing at the start (not truncated).
    File(String),
    Append(String),
    Truncate(String),
}

/// `StandardInput=`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StdInput {
    #[default]
    Null,
    /// Anything else systemd knows (tty, socket, data, file:); not enforced, stdin is /dev/null.
    Other(String),
}

/// An `EnvironmentFile=` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentFile {
    pub path: String,
    /// `-` prefix: a missing file is not an error.
    pub optional: bool,
}

/// The resources of the `Limit*=` settings, named as setrlimit(2)'s without `RLIMIT_`.
/// The one list of them: the loader's value syntax (`unit::value`) and the spawner's
/// `RLIMIT_*` constant are exhaustive matches on this enum, so a new resource cannot be
/// half-added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitResource {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

impl LimitResource {
    pub const ALL: [LimitResource; 16] = [
        LimitResource::As,
        LimitResource::Core,
        LimitResource::Cpu,
        LimitResource::Data,
        LimitResource::Fsize,
        LimitResource::Locks,
        LimitResource::Memlock,
        LimitResource::Msgqueue,
        LimitResource::Nice,
        LimitResource::Nofile,
        LimitResource::Nproc,
        LimitResource::Rss,
        LimitResource::Rtprio,
        LimitResource::Rttime,
        LimitResource::Sigpending,
        LimitResource::Stack,
    ];

    /// `NOFILE` for `LimitNOFILE=`: the key of [`ServiceSection::limits`].
    pub fn name(self) -> &'static str {
        match self {
            LimitResource::As => "AS",
            LimitResource::Core => "CORE",
            LimitResource::Cpu => "CPU",
            LimitResource::Data => "DATA",
            LimitResource::Fsize => "FSIZE",
            LimitResource::Locks => "LOCKS",
            LimitResource::Memlock => "MEMLOCK",
            LimitResource::Msgqueue => "MSGQUEUE",
            LimitResource::Nice => "NICE",
            LimitResource::Nofile => "NOFILE",
            LimitResource::Nproc => "NPROC",
            LimitResource::Rss => "RSS",
            LimitResource::Rtprio => "RTPRIO",
            LimitResource::Rttime => "RTTIME",
            LimitResource::Sigpending => "SIGPENDING",
            LimitResource::Stack => "STACK",
        }
    }

    /// The resource a [`ServiceSection::limits`] key names.
    pub fn from_name(name: &str) -> Option<LimitResource> {
        LimitResource::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// A resource limit: `LimitNOFILE=1024:4096` -> soft 1024, hard 4096. `None` is infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RLimit {
    pub soft: Option<u64>,
    pub hard: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSection {
    pub service_type: ServiceType,
    pub exec_condition: Vec<ExecCommand>,
    pub exec_start_pre: Vec<ExecCommand>,
    /// More than one only for `Type=oneshot`.
    pub exec_start: Vec<ExecCommand>,
    pub exec_start_post: Vec<ExecCommand>,
    pub exec_reload: Vec<ExecCommand>,
    pub exec_stop: Vec<ExecCommand>,
    pub exec_stop_post: Vec<ExecCommand>,
    pub remain_after_exit: bool,
    pub pid_file: Option<String>,
    /// `NotifyAccess=` as written; `None` takes systemd's default, see
    /// [`ServiceSection::effective_notify_access`].
    pub notify_access: Option<NotifyAccess>,
    /// `GuessMainPID=` (default yes): for `Type=forking` without `PIDFile=`, take the single
    /// remaining process of the service as its main process once the forking parent exited.
    pub guess_main_pid: bool,
    /// `PermissionsStartOnly=` (deprecated in systemd, still in Debian's units): every
    /// command but `ExecStart=` runs as if prefixed with `+` (the loader sets their
    /// `full_privileges`).
    pub permissions_start_only: bool,
    pub restart: RestartPolicy,
    /// `Duration::MAX` is infinity: the restart is never due (`sys::time::deadline` is `None`).
    pub restart_sec: Duration,
    /// `RestartSteps=`: 0 means no backoff.
    pub restart_steps: u32,
    /// `RestartMaxDelaySec=`: `None` is infinity (backoff only applies when set).
    pub restart_max_delay: Option<Duration>,
    pub success_exit_status: ExitStatusSet,
    pub restart_prevent_exit_status: ExitStatusSet,
    pub restart_force_exit_status: ExitStatusSet,
    /// `None` is infinity.
    pub timeout_start: Option<Duration>,
    /// `None` is infinity.
    pub timeout_stop: Option<Duration>,
    /// `None` (or zero) disables the watchdog.
    pub watchdog: Option<Duration>,
    pub kill_mode: KillMode,
    pub kill_signal: i32,
    pub final_kill_signal: i32,
    pub send_sigkill: bool,
    pub send_sighup: bool,
    /// `WorkingDirectory=`; `~` means the user's home; see `working_directory_optional`.
    pub working_directory: Option<String>,
    /// `-` prefix on WorkingDirectory=: a missing directory is not an error.
    pub working_directory_optional: bool,
    /// Accepted with a warning: gitproc does not chroot.
    pub root_directory: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub supplementary_groups: Vec<String>,
    pub umask: u32,
    /// `Environment=` assignments in order (later ones win).
    pub environment: Vec<(String, String)>,
    pub environment_files: Vec<EnvironmentFile>,
    /// The variables read from `environment_files` at load time, in order (later wins; they
    /// override `environment`). `$VAR` in `Exec*=` was expanded with these, so the runtime
    /// should export these same values for argv and the environment to agree.
    pub environment_from_files: Vec<(String, String)>,
    pub pass_environment: Vec<String>,
    pub unset_environment: Vec<String>,
    /// `Limit*=` keyed by [`LimitResource::name`], e.g. `NOFILE`.
    pub limits: BTreeMap<String, RLimit>,
    /// `MemoryMax=`, `CPUQuota=`, `TasksMax=`, ... (systemd.resource-control(5)).
    pub resources: super::resources::Resources,
    pub nice: Option<i32>,
    pub oom_score_adjust: Option<i32>,
    pub no_new_privileges: bool,
    /// `IgnoreSIGPIPE=` (default yes, as systemd): SIGPIPE is ignored in the new process.
    pub ignore_sigpipe: bool,
    /// `AmbientCapabilities=` as a mask of capability numbers (see [`crate::unit::capability`]):
    /// raised in the ambient set, so that a `User=` service keeps them across execve.
    pub ambient_capabilities: u64,
    /// `CapabilityBoundingSet=`: the capabilities kept in the bounding set; `None` when not
    /// set (the bounding set is left alone).
    pub capability_bounding_set: Option<u64>,
    pub runtime_directory: Vec<String>,
    pub runtime_directory_mode: u32,
    pub state_directory: Vec<String>,
    pub state_directory_mode: u32,
    pub logs_directory: Vec<String>,
    pub logs_directory_mode: u32,
    pub standard_input: StdInput,
    pub standard_output: StdOutput,
    /// `None` means "same as standard output" (systemd's `inherit` default for stderr).
    pub standard_error: Option<StdOutput>,
    pub syslog_identifier: Option<String>,
    /// `Sockets=`: socket units whose listening fds this service is also given (beyond
    /// those whose `Service=` names it).
    pub sockets: Vec<String>,
}

impl Default for ServiceSection {
    fn default() -> Self {
        ServiceSection {
            service_type: ServiceType::Simple,
            exec_condition: Vec::new(),
            exec_start_pre: Vec::new(),
            exec_start: Vec::new(),
            exec_start_post: Vec::new(),
            exec_reload: Vec::new(),
            exec_stop: Vec::new(),
            exec_stop_post: Vec::new(),
            remain_after_exit: false,
            pid_file: None,
            notify_access: None,
            guess_main_pid: true,
            permissions_start_only: false,
            restart: RestartPolicy::No,
            restart_sec: defaults::RESTART_SEC,
            restart_steps: 0,
            restart_max_delay: None,
            success_exit_status: ExitStatusSet::default(),
            restart_prevent_exit_status: ExitStatusSet::default(),
            restart_force_exit_status: ExitStatusSet::default(),
            timeout_start: Some(defaults::TIMEOUT_START),
            timeout_stop: Some(defaults::TIMEOUT_STOP),
            watchdog: None,
            kill_mode: KillMode::ControlGroup,
            kill_signal: defaults::KILL_SIGNAL,
            final_kill_signal: defaults::FINAL_KILL_SIGNAL,
            send_sigkill: true,
            send_sighup: false,
            working_directory: None,
            working_directory_optional: false,
            root_directory: None,
            user: None,
            group: None,
            supplementary_groups: Vec::new(),
            umask: 0o022,
            environment: Vec::new(),
            environment_files: Vec::new(),
            environment_from_files: Vec::new(),
            pass_environment: Vec::new(),
            unset_environment: Vec::new(),
            limits: BTreeMap::new(),
            resources: Default::default(),
            nice: None,
            oom_score_adjust: None,
            no_new_privileges: false,
            ignore_sigpipe: true,
            ambient_capabilities: 0,
            capability_bounding_set: None,
            runtime_directory: Vec::new(),
            runtime_directory_mode: defaults::DIRECTORY_MODE,
            state_directory: Vec::new(),
            state_directory_mode: defaults::DIRECTORY_MODE,
            logs_directory: Vec::new(),
            logs_directory_mode: defaults::DIRECTORY_MODE,
            standard_input: StdInput::Null,
            standard_output: StdOutput::Journal,
            standard_error: None,
            syslog_identifier: None,
            sockets: Vec::new(),
        }
    }
}

impl ServiceSection {
    /// systemd's default: `main` for `Type=notify` or when `WatchdogSec=` is set (the service
    /// is expected to talk), `none` otherwise.
    pub fn effective_notify_access(&self) -> NotifyAccess {
        self.notify_access.unwrap_or(
            if self.service_type == ServiceType::Notify || self.watchdog.is_some() {
                NotifyAccess::Main
            } else {
                NotifyAccess::None
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstallSection {
    pub wanted_by: Vec<String>,
    pub required_by: Vec<String>,
    pub alias: Vec<String>,
}

/// `[Timer]` (systemd.timer(5)) of a `.timer` unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TimerSection {
    /// What the timer starts: `Unit=`, else the service of the same name (for
    /// `backup@db.timer`, `backup@db.service`). Filled in by the loader's rules.
    pub unit: String,
    /// The schedule, as the pure [`crate::timer::schedule`] computes with it.
    pub settings: crate::timer::schedule::TimerSettings,
}

/// The socket type of a `Listen*=` line (systemd.socket(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// `ListenStream=`: SOCK_STREAM.
    Stream,
    /// `ListenDatagram=`: SOCK_DGRAM.
    Datagram,
    /// `ListenSequentialPacket=`: SOCK_SEQPACKET (AF_UNIX only, as in systemd).
    SequentialPacket,
}

impl SocketType {
    /// The key that names it, and systemd's `list-sockets` word for it.
    pub fn key(self) -> &'static str {
        match self {
            SocketType::Stream => "ListenStream",
            SocketType::Datagram => "ListenDatagram",
            SocketType::SequentialPacket => "ListenSequentialPacket",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            SocketType::Stream => "Stream",
            SocketType::Datagram => "Datagram",
            SocketType::SequentialPacket => "SequentialPacket",
        }
    }
}

/// Where a socket listens: systemd's address forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddress {
    /// A bare port: every address, IPv6 and IPv4 both (`[::]:port` without
    /// `IPV6_V6ONLY`, or `0.0.0.0:port` where the host has no IPv6).
    AnyPort(u16),
    /// `1.2.3.4:port` or `[::1]:port`.
    Inet(core::net::SocketAddr),
    /// `/absolute/path`: a unix socket in the file system.
    Unix(String),
    /// `@name`: a unix socket in the abstract namespace.
    Abstract(String),
}

impl std::fmt::Display for ListenAddress {
    /// As systemd's `list-sockets` shows it: `[::]:80`, `127.0.0.1:80`, `/run/x`, `@x`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddress::AnyPort(p) => write!(f, "[::]:{p}"),
            ListenAddress::Inet(a) => write!(f, "{a}"),
            ListenAddress::Unix(p) => f.write_str(p),
            ListenAddress::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

/// One `Listen*=` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Listen {
    pub socket_type: SocketType,
    pub address: ListenAddress,
}

/// `[Socket]` (systemd.socket(5)) of a `.socket` unit. Only `Accept=no` exists here: the
/// listening sockets themselves are handed to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSection {
    /// In file order; the service gets them as fds 3, 4, ... in this order.
    pub listen: Vec<Listen>,
    pub socket_mode: u32,
    pub directory_mode: u32,
    pub socket_user: Option<String>,
    pub socket_group: Option<String>,
    pub backlog: u32,
    pub reuse_port: bool,
    pub free_bind: bool,
    /// `BindIPv6Only=`: whether an IPv6 socket also accepts IPv4 (`IPV6_V6ONLY`).
    pub bind_ipv6_only: BindIpv6Only,
    /// `Service=`, else the service of the same name. Filled in by the loader's rules.
    pub service: String,
    /// `FileDescriptorName=`, else the socket unit's full name (as systemd). Filled in by the
    /// loader's rules.
    pub file_descriptor_name: String,
    pub remove_on_stop: bool,
}

/// `BindIPv6Only=` (systemd.socket(5)): `default` leaves `IPV6_V6ONLY` as the host's
/// `net.ipv6.bindv6only` says, `both` clears it (IPv4 too), `ipv6-only` sets it, so that
/// `[::]:111` and `0.0.0.0:111` can both be bound, as Debian's rpcbind.socket does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindIpv6Only {
    #[default]
    Default,
    Both,
    Ipv6Only,
}

impl Default for SocketSection {
    fn default() -> Self {
        SocketSection {
            listen: Vec::new(),
            socket_mode: defaults::SOCKET_MODE,
            directory_mode: defaults::DIRECTORY_MODE,
            socket_user: None,
            socket_group: None,
            backlog: defaults::BACKLOG,
            reuse_port: false,
            free_bind: false,
            bind_ipv6_only: BindIpv6Only::Default,
            service: String::new(),
            file_descriptor_name: String::new(),
            remove_on_stop: false,
        }
    }
}

/// What a health probe checks (one per unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthProbe {
    /// `Exec=`: a command run like the unit's own processes; exit 0 is healthy.
    Exec(ExecCommand),
    /// `HTTP=`: a GET over one kept-alive HTTP/1.1 connection.
    Http(HttpProbe),
    /// `TCP=host:port`: the connection succeeds.
    Tcp { host: String, port: u16 },
}

impl HealthProbe {
    /// The kind, for messages (`HTTP`, `TCP`, `Exec`).
    pub fn kind(&self) -> &'static str {
        match self {
            HealthProbe::Exec(_) => "Exec",
            HealthProbe::Http(_) => "HTTP",
            HealthProbe::Tcp { .. } => "TCP",
        }
    }
}

/// `HTTP=http://host:port/path` with `ExpectStatus=` and `ExpectBody=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// The URL as written.
    pub url: String,
    pub host: String,
    pub port: u16,
    /// Path and query, `/` when the URL has none.
    pub path: String,
    /// Inclusive ranges of accepted status codes (default 200-399).
    pub expect_status: Vec<(u16, u16)>,
    /// A substring the body must contain.
    pub expect_body: Option<String>,
}

/// `OnUnhealthy=`: what an unhealthy service gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnhealthy {
    /// Restart through the normal restart path (result `health`, counts against the start
    /// limit).
    #[default]
    Restart,
    /// Stop it: `failed` with result `health`.
    Stop,
    /// Only report it (status, log, perf).
    None,
}

/// `[X-Health]` after parsing; defaults in [`defaults`] (`HEALTH_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub probe: HealthProbe,
    /// `IntervalSec=`: from the end of one probe to the start of the next.
    pub interval: Duration,
    /// `TimeoutSec=`: a probe that takes longer fails.
    pub timeout: Duration,
    /// `StartPeriodSec=`: failures within this time of the start do not count.
    pub start_period: Duration,
    /// `Retries=`: consecutive failures that make the unit unhealthy.
    pub retries: u32,
    /// `SuccessThreshold=`: consecutive successes that make it healthy.
    pub success_threshold: u32,
    pub on_unhealthy: OnUnhealthy,
    /// `ReadyOnHealthy=`: the unit stays `activating` until its first healthy probe.
    pub ready_on_healthy: bool,
}
