//! systemd's vocabulary for the state of a service: `ActiveState`, `SubState` and `Result`.
//!
//! Operators already know these words from `systemctl status`, so gitproc uses them
//! verbatim: the same spelling in `Display`, `FromStr` and serde (kebab-case).

use std::fmt;
use std::str::FromStr;

/// A word that is not part of one of the vocabularies below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{word}`; expected one of: {expected}")]
pub struct UnknownWord {
    /// Which vocabulary was asked (`active state`, `sub state`, `result`).
    pub kind: &'static str,
    /// The word given.
    pub word: String,
    /// The accepted words, comma-separated.
    pub expected: String,
}

/// Declares an enum whose variants each have exactly one systemd spelling, used by
/// `Display`, `FromStr` and (through `rename_all = "kebab-case"`) serde. A unit test checks
/// that serde and `Display` agree.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident, $kind:literal, { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// systemd's spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        kind: $kind,
                        word: s.to_string(),
                        expected: $name::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                    }),
                }
            }
        }
    };
}

vocabulary!(
    /// The high-level state (systemd's `ActiveState=`).
    ActiveState, "active state", {
        Active => "active",
        Reloading => "reloading",
        Inactive => "inactive",
        Failed => "failed",
        Activating => "activating",
        Deactivating => "deactivating",
    }
);

vocabulary!(
    /// The service-specific low-level state (systemd's `SubState=` for services).
    SubState, "sub state", {
        Dead => "dead",
        Condition => "condition",
        StartPre => "start-pre",
        Start => "start",
        StartPost => "start-post",
        Running => "running",
        Exited => "exited",
        Reload => "reload",
        Stop => "stop",
        StopSigterm => "stop-sigterm",
        StopSigkill => "stop-sigkill",
        StopPost => "stop-post",
        FinalSigterm => "final-sigterm",
        FinalSigkill => "final-sigkill",
        Failed => "failed",
        AutoRestart => "auto-restart",
    }
);

vocabulary!(
    /// Why the last run ended (systemd's `Result=`).
    ServiceResult, "result", {
        Success => "success",
        Protocol => "protocol",
        Timeout => "timeout",
        ExitCode => "exit-code",
        Signal => "signal",
        CoreDump => "core-dump",
        Watchdog => "watchdog",
        StartLimitHit => "start-limit-hit",
        Resources => "resources",
        /// The kernel's OOM killer ended the main process (its memory cgroup counted the kill).
        OomKill => "oom-kill",
        /// gitproc's extension of systemd's vocabulary: the `[X-Health]` check found the
        /// service unhealthy (`OnUnhealthy=restart` or `stop`).
        Health => "health",
    }
);

/// `success`: what a service that has not run yet, or whose run is going well, shows (as
/// systemd does).
impl Default for ServiceResult {
    fn default() -> Self {
        ServiceResult::Success
    }
}

impl SubState {
    /// The `ActiveState` systemd shows for this sub-state.
    pub fn active_state(self) -> ActiveState {
        match self {
            SubState::Dead => ActiveState::Inactive,
            SubState::Failed => ActiveState::Failed,
            SubState::Condition
            | SubState::StartPre
            | SubState::Start
            | SubState::StartPost
            | SubState::AutoRestart => ActiveState::Activating,
            SubState::Running | SubState::Exited => ActiveState::Active,
            SubState::Reload => ActiveState::Reloading,
            SubState::Stop
            | SubState::StopSigterm
            | SubState::StopSigkill
            | SubState::StopPost
            | SubState::FinalSigterm
            | SubState::FinalSigkill => ActiveState::Deactivating,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T>(all: &[T])
    where
        T: Copy + fmt::Display + FromStr + PartialEq + fmt::Debug + serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        for v in all {
            let word = v.to_string();
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{word}\""), "serde and Display disagree");
            let back: T = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *v);
            let parsed: T = word.parse().ok().unwrap();
            assert_eq!(parsed, *v);
        }
    }

    #[test]
    fn spellings_agree_everywhere() {
        roundtrip(ActiveState::ALL);
        roundtrip(SubState::ALL);
        roundtrip(ServiceResult::ALL);
        assert_eq!(SubState::StopSigterm.to_string(), "stop-sigterm");
        assert_eq!(ServiceResult::StartLimitHit.to_string(), "start-limit-hit");
        assert_eq!(ServiceResult::CoreDump.to_string(), "core-dump");
    }

    #[test]
    fn unknown_word_names_the_choices() {
        let err = "runnin".parse::<SubState>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`runnin`") && msg.contains("running"), "{msg}");
    }

    #[test]
    fn sub_state_maps_to_active_state() {
        assert_eq!(
            SubState::AutoRestart.active_state(),
            ActiveState::Activating
        );
        assert_eq!(SubState::Exited.active_state(), ActiveState::Active);
        assert_eq!(
            SubState::FinalSigkill.active_state(),
            ActiveState::Deactivating
        );
        assert_eq!(SubState::Failed.active_state(), ActiveState::Failed);
    }
}
