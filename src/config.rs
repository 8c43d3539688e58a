//! Daemon configuration: a TOML file (`--config`, default `/etc/gitproc/gitproc.toml` when it
//! exists), overridden by command-line flags. Every knob has a default, so
//! `gitproc daemon --repo URL` runs with no file at all.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::source::poll::validate_secs as validate_poll_secs;

/// Where the packaged configuration lives; read only when it exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/gitproc/gitproc.toml";

/// The whole configuration file. Unknown keys are errors: a typo must not silently fall back
/// to a default on a production machine.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Repository to follow: local path, `file://`, `https://`, `ssh://` or scp-style.
    pub repo: Option<String>,
    /// Branch to follow; `None` follows the remote's HEAD.
    pub branch: Option<String>,
    /// Directory inside the tree that holds the units.
    pub units_dir: String,
    pub state_dir: Option<PathBuf>,
    /// Start a changed unit's last good version again when its new version fails to start.
    pub rollback: bool,
    /// Overrides the detected host name (for `ConditionHost=`, `%H`, tests and simulations).
    pub hostname: Option<String>,
    /// Period of the fallback reap tick in milliseconds; 0 disables it.
    pub fallback_reap_ms: u64,
    pub poll: PollSection,
    pub state: StateSection,
    pub logs: LogsSection,
    pub control: ControlSection,
    pub signing: SigningSection,
    pub http: HttpSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            repo: None,
            branch: None,
            units_dir: ".".to_string(),
            state_dir: None,
            rollback: true,
            hostname: None,
            fallback_reap_ms: 200,
            poll: PollSection::default(),
            state: StateSection::default(),
            logs: LogsSection::default(),
            control: ControlSection::default(),
            signing: SigningSection::default(),
            http: HttpSection::default(),
        }
    }
}

/// Adaptive polling of a remote: see `source::poll`, which also validates these numbers
/// (`source::poll::validate_secs`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PollSection {
    pub min_interval_s: f64,
    pub max_interval_s: f64,
    /// Consecutive unchanged checks before the interval starts to grow.
    pub unchanged_before_growth: u32,
    pub step_s: f64,
    /// Relative jitter, 0.1 = ±10 %.
    pub jitter: f64,
}

impl Default for PollSection {
    fn default() -> Self {
        PollSection {
            min_interval_s: 10.0,
            max_interval_s: 30.0,
            unchanged_before_growth: 3,
            step_s: 5.0,
            jitter: 0.1,
        }
    }
}

/// The batched state writer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StateSection {
    pub save_interval_s: f64,
    pub save_min_gap_s: f64,
}

impl Default for StateSection {
    fn default() -> Self {
        StateSection {
            save_interval_s: 5.0,
            save_min_gap_s: 2.0,
        }
    }
}

/// Per-unit log files and their rotation; `daemon_*` for the daemon's own `--log-file`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    pub max_bytes: u64,
    pub keep: u32,
    /// Rotate `--log-file` when it would exceed this size (default 10 MiB, as unit logs).
    pub daemon_max_bytes: u64,
    /// Rotated generations of `--log-file` kept (`<file>.1` ...; default 5).
    pub daemon_keep: u32,
    /// Most bytes of log one service pipe may write per second (default 4 MiB); a faster
    /// writer is slowed down (its pipe is not read for the rest of the second), not cut.
    pub rate_bytes_per_s: u64,
}

impl Default for LogsSection {
    fn default() -> Self {
        LogsSection {
            max_bytes: 10 * 1024 * 1024,
            keep: 5,
            daemon_max_bytes: 10 * 1024 * 1024,
            daemon_keep: 5,
            rate_bytes_per_s: 4 * 1024 * 1024,
        }
    }
}

/// Who may use the control socket besides root and the daemon's own user.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// A group whose members may control the daemon (the socket becomes 0660).
    pub group: Option<String>,
}

/// Opt-in verification of commit signatures.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SigningSection {
    pub require_signed: bool,
    /// An SSH allowed-signers file (`ssh-keygen -Y verify` format).
    pub allowed_signers: Option<PathBuf>,
}

/// The optional HTTP listener (webhooks, `/metrics`, `/healthz`, `/v1/status`). Off unless
/// `listen` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// `IP:PORT` to listen on, e.g. `127.0.0.1:9420`. A host name is refused: which address
    /// it resolves to decides whether the token is needed, so it must be explicit.
    pub listen: Option<String>,
    /// The shared secret of push webhooks (`POST /hooks/git`); without it that route is 404.
    pub webhook_secret_file: Option<PathBuf>,
    /// The bearer token `/v1/*` requires. Mandatory when `listen` is not a loopback address.
    pub token_file: Option<PathBuf>,
    /// The least time between two checks that webhooks trigger (default 1 s): pushes
    /// meanwhile are coalesced into one check after the gap.
    pub webhook_min_interval_s: f64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: None,
            webhook_secret_file: None,
            token_file: None,
            webhook_min_interval_s: 1.0,
        }
    }
}

impl HttpSection {
    /// The listen address, when the listener is on; `validate` has checked it parses.
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.as_deref().and_then(|a| a.parse().ok())
    }

    /// Why this section cannot be used; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        finite_secs("webhook_min_interval_s", self.webhook_min_interval_s, true)?;
        let Some(listen) = &self.listen else {
            for (key, set) in [
                ("webhook_secret_file", self.webhook_secret_file.is_some()),
                ("token_file", self.token_file.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "{key} is set but listen is not: set listen = \"127.0.0.1:9420\" to turn the listener on"
                    ));
                }
            }
            return Ok(());
        };
        let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
            format!("listen = {listen:?} is not an IP:PORT address (e.g. \"127.0.0.1:9420\" or \"[::1]:9420\")")
        })?;
        if !addr.ip().is_loopback() && self.token_file.is_none() {
            return Err(format!(
                "listen = {listen:?} is not a loopback address: set token_file (the bearer token /v1/* then requires), or listen on 127.0.0.1"
            ));
        }
        Ok(())
    }
}

/// Errors name the file and what is wrong in it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// Parses configuration text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| ConfigError::Parse {
            path: path.to_path_buf(),
            message: err.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Loads the explicit file, else the default file when it exists, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None => {
                let default = PathBuf::from(DEFAULT_CONFIG_PATH);
                if !default.exists() {
                    return Ok(Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Config::parse(&text, &path)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |message: String| {
            Err(ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            })
        };
        let p = &self.poll;
        if let Err(message) =
            validate_poll_secs(p.min_interval_s, p.max_interval_s, p.step_s, p.jitter)
        {
            return bad(format!("[poll] {message}"));
        }
        let s = &self.state;
        for (key, value, zero_ok) in [
            ("save_interval_s", s.save_interval_s, false),
            ("save_min_gap_s", s.save_min_gap_s, true),
        ] {
            if let Err(message) = finite_secs(key, value, zero_ok) {
                return bad(format!("[state] {message}"));
            }
        }
        if self.logs.keep == 0 || self.logs.max_bytes < 4096 {
            return bad("[logs] keep must be >= 1 and max_bytes >= 4096".into());
        }
        if self.logs.daemon_keep == 0 || self.logs.daemon_max_bytes < 4096 {
            return bad("[logs] daemon_keep must be >= 1 and daemon_max_bytes >= 4096".into());
        }
        if self.logs.rate_bytes_per_s < 4096 {
            return bad("[logs] rate_bytes_per_s must be >= 4096".into());
        }
        if self.signing.require_signed && self.signing.allowed_signers.is_none() {
            return bad(
                "[signing] require_signed = true needs allowed_signers = \"/path/to/allowed_signers\""
                    .into(),
            );
        }
        if let Err(message) = self.http.check() {
            return bad(format!("[http] {message}"));
        }
        Ok(())
    }

    /// The fallback reap period; `None` when disabled.
    pub fn fallback_reap(&self) -> Option<Duration> {
        (self.fallback_reap_ms > 0).then(|| Duration::from_millis(self.fallback_reap_ms))
    }
}

/// The longest interval a config number gives: a year. Longer ones are clamped to it.
const MAX_CONFIG_SECS: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a seconds value of `key` cannot be used: NaN, infinite, negative, or zero where zero
/// makes no sense. The message names the key and the value (`validate` adds the section).
fn finite_secs(key: &str, value: f64, zero_ok: bool) -> Result<(), String> {
    let least = if zero_ok { ">= 0" } else { "> 0" };
    if !value.is_finite() || value < 0.0 || (!zero_ok && value == 0.0) {
        return Err(format!(
            "{key} ({value}) must be a finite number of seconds {least}"
        ));
    }
    Ok(())
}

/// Seconds from a config number, clamped to 0 ..= a year. Saturating even for values that
/// `validate` rejects (NaN is 0), so no config number can panic the daemon.
pub fn secs(value: f64) -> Duration {
    crate::sys::time::secs_f64(value).min(MAX_CONFIG_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config = Config::parse("", Path::new("x.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.poll.min_interval_s, 10.0);
        assert_eq!(config.state.save_interval_s, 5.0);
        assert_eq!(config.fallback_reap(), Some(Duration::from_millis(200)));
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = Config::parse("[poll]\nmin_intervall_s = 3\n", Path::new("/etc/g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/g.toml"), "{err}");
        assert!(err.contains("min_intervall_s"), "{err}");
    }

    #[test]
    fn inconsistent_poll_bounds_are_rejected() {
        let err = Config::parse(
            "[poll]\nmin_interval_s = 40\nmax_interval_s = 30\n",
            Path::new("g.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("min_interval_s"), "{err}");
    }

    #[test]
    fn non_finite_or_negative_poll_numbers_name_the_key() {
        for (text, key) in [
            ("step_s = nan", "step_s"),
            ("step_s = -1", "step_s"),
            ("max_interval_s = inf", "max_interval_s"),
            ("jitter = -0.1", "jitter"),
            ("jitter = 0.5", "jitter"),
        ] {
            let err = Config::parse(&format!("[poll]\n{text}\n"), Path::new("g.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("[poll] {key}")), "{text}: {err}");
        }
    }

    #[test]
    fn non_finite_negative_or_zero_state_numbers_name_the_key() {
        for (text, key) in [
            ("save_interval_s = nan", "save_interval_s"),
            ("save_interval_s = inf", "save_interval_s"),
            ("save_interval_s = -inf", "save_interval_s"),
            ("save_interval_s = 0", "save_interval_s"),
            ("save_interval_s = -1", "save_interval_s"),
            ("save_min_gap_s = nan", "save_min_gap_s"),
            ("save_min_gap_s = inf", "save_min_gap_s"),
            ("save_min_gap_s = -0.5", "save_min_gap_s"),
        ] {
            let err = Config::parse(&format!("[state]\n{text}\n"), Path::new("g.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("[state] {key}")), "{text}: {err}");
        }
        let ok = Config::parse("[state]\nsave_min_gap_s = 0\n", Path::new("g.toml"));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn config_seconds_saturate() {
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(-5.0), Duration::ZERO);
        assert_eq!(secs(f64::INFINITY), Duration::from_secs(365 * 24 * 3600));
        assert_eq!(secs(1e300), Duration::from_secs(365 * 24 * 3600));
        assert_eq!(secs(2.5), Duration::from_millis(2500));
    }

    #[test]
    fn signing_needs_allowed_signers() {
        let err = Config::parse("[signing]\nrequire_signed = true\n", Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed_signers"), "{err}");
    }

    #[test]
    fn http_is_off_by_default_and_validated() {
        assert_eq!(Config::default().http.listen_addr(), None);
        let ok =
            Config::parse("[http]\nlisten = \"127.0.0.1:9420\"\n", Path::new("g.toml")).unwrap();
        assert_eq!(
            ok.http.listen_addr(),
            Some("127.0.0.1:9420".parse().unwrap())
        );
        for (text, key) in [
            ("listen = \"localhost:9420\"", "listen"),
            ("listen = \"127.0.0.1\"", "listen"),
            ("listen = \"0.0.0.0:9420\"", "token_file"),
            ("token_file = \"/t\"", "token_file"),
            ("webhook_secret_file = \"/s\"", "webhook_secret_file"),
            ("webhook_min_interval_s = -1", "webhook_min_interval_s"),
        ] {
            let err = Config::parse(&format!("[http]\n{text}\n"), Path::new("g.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("[http]") && err.contains(key), "{text}: {err}");
        }
        let off_loopback = "[http]\nlisten = \"0.0.0.0:9420\"\ntoken_file = \"/t\"\n";
        assert!(Config::parse(off_loopback, Path::new("g.toml")).is_ok());
    }

    #[test]
    fn full_file_parses() {
        let text = r#"
repo = "https://example.invalid/ops/units.git"
branch = "main"
units_dir = "units"
rollback = false
fallback_reap_ms = 0
[poll]
min_interval_s = 5
max_interval_s = 60
[logs]
max_bytes = 1048576
keep = 3
daemon_max_bytes = 65536
daemon_keep = 2
[control]
group = "ops"
"#;
        let config = Config::parse(text, Path::new("g.toml")).unwrap();
        assert_eq!(config.branch.as_deref(), Some("main"));
        assert!(!config.rollback);
        assert_eq!(config.fallback_reap(), None);
        assert_eq!(config.control.group.as_deref(), Some("ops"));
        assert_eq!(config.logs.daemon_max_bytes, 65536);
        assert_eq!(config.logs.daemon_keep, 2);
    }
}
