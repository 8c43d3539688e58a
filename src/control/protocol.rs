//! The control protocol: one JSON object per line in each direction, with a version field.
//!
//! ```text
//! > {"v":1,"verb":"stop","units":["web.service"],"wait":true}
//! < {"v":1,"ok":true,"data":{"jobs":[{"unit":"web.service","job":3,"result":"done"}]}}
//! ```
//!
//! Replies carry an `exit` code following systemctl's (0 ok, 1 failure, 3 not active,
//! 4 no such unit) so the CLI exits with what the daemon decided.

use serde::{Deserialize, Serialize};

/// The protocol version spoken by this build.
pub const VERSION: u32 = 1;

/// Process exit codes, as systemctl's. They live with the protocol because the daemon puts
/// them in its replies (`Reply::exit`) and the CLI exits with them; both sides depend on
/// this module, neither on the other.
pub mod exit {
    pub const OK: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_ACTIVE: i32 = 3;
    pub const NO_SUCH_UNIT: i32 = 4;
}

/// Requests larger than this are refused without being parsed.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub verb: Verb,
}

/// What a client can ask.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "kebab-case")]
pub enum Verb {
    /// Daemon summary and units (all when `units` is empty).
    Status {
        #[serde(default)]
        units: Vec<String>,
    },
    Start(JobRequest),
    Stop(JobRequest),
    Restart(JobRequest),
    Reload(JobRequest),
    /// Check git now; the reply says what was applied.
    Sync,
    /// Counters and latency percentiles of the daemon's own operations.
    Perf,
    /// Keep fetching but apply no commit until `thaw` (durable across restarts).
    Freeze {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Lift a freeze; a pending commit whose rollout wave is due applies at once.
    Thaw,
    /// Liveness probe.
    Ping,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequest {
    pub units: Vec<String>,
    /// Answer when the jobs are finished (`systemctl`'s default) rather than when queued.
    #[serde(default = "yes")]
    pub wait: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reply {
    pub v: u32,
    pub ok: bool,
    /// Exit code for the CLI (systemctl's).
    #[serde(default)]
    pub exit: i32,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: serde_json::Value,
    /// `data` already serialised (the status answer, written by the loop without building
    /// a tree); sent instead of `data` when set. A received reply always has it `None`.
    #[serde(skip)]
    pub raw_data: Option<RawData>,
    /// Something the operator must know although the request was carried out, e.g. that
    /// the state could not be saved (the change will not survive a daemon restart).
    #[serde(default)]
    pub warning: Option<String>,
}

/// JSON text of a reply's `data`, compared by its text.
#[derive(Debug, Clone)]
pub struct RawData(pub Box<serde_json::value::RawValue>);

impl PartialEq for RawData {
    fn eq(&self, other: &RawData) -> bool {
        self.0.get() == other.0.get()
    }
}

/// The wire form: `error`, `data` and `warning` only when set, `raw_data` as `data`.
impl Serialize for Reply {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("v", &self.v)?;
        map.serialize_entry("ok", &self.ok)?;
        map.serialize_entry("exit", &self.exit)?;
        if let Some(error) = &self.error {
            map.serialize_entry("error", error)?;
        }
        match &self.raw_data {
            Some(raw) => map.serialize_entry("data", &raw.0)?,
            None if !self.data.is_null() => map.serialize_entry("data", &self.data)?,
            None => {}
        }
        if let Some(warning) = &self.warning {
            map.serialize_entry("warning", warning)?;
        }
        map.end()
    }
}

/// A [`Reply`] as the CLI reads it when it only passes `data` on (see
/// `client::call_raw`): the same fields, `data` left as JSON text.
#[derive(Debug, Deserialize)]
pub struct RawReply {
    pub ok: bool,
    #[serde(default)]
    pub exit: i32,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub data: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    pub warning: Option<String>,
}

impl Reply {
    pub fn ok(data: serde_json::Value) -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            exit: 0,
            error: None,
            data,
            raw_data: None,
            warning: None,
        }
    }

    /// A successful reply whose `data` is JSON text already.
    pub fn ok_raw(data: Box<serde_json::value::RawValue>) -> Reply {
        Reply {
            raw_data: Some(RawData(data)),
            ..Reply::ok(serde_json::Value::Null)
        }
    }

    pub fn error(exit: i32, message: impl Into<String>) -> Reply {
        Reply {
            v: VERSION,
            ok: false,
            exit,
            error: Some(message.into()),
            data: serde_json::Value::Null,
            raw_data: None,
            warning: None,
        }
    }

    /// An error that still carries data (e.g. some units of a job were unknown).
    pub fn partial(exit: i32, message: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            data,
            ..Reply::error(exit, message)
        }
    }

    /// [`Reply::partial`] with `data` as JSON text.
    pub fn partial_raw(
        exit: i32,
        message: impl Into<String>,
        data: Box<serde_json::value::RawValue>,
    ) -> Reply {
        Reply {
            raw_data: Some(RawData(data)),
            ..Reply::error(exit, message)
        }
    }

    /// `data` as a tree, parsed from `raw_data` when that is set (for in-process users).
    pub fn data_value(&self) -> serde_json::Value {
        match &self.raw_data {
            Some(raw) => serde_json::from_str(raw.0.get()).unwrap_or_default(),
            None => self.data.clone(),
        }
    }
}

/// Parses one request line, with errors a client can act on.
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "request too large ({} bytes, limit {MAX_REQUEST_BYTES})",
            line.len()
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|err| format!("malformed JSON request: {err}"))?;
    let version = value.get("v").and_then(|v| v.as_u64());
    match version {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported protocol version {v} (this daemon speaks {VERSION}); use a matching gitproc CLI"
            ));
        }
        None => return Err("request has no protocol version field \"v\"".into()),
    }
    serde_json::from_value(value).map_err(|err| format!("invalid request: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let req = Request {
            v: VERSION,
            verb: Verb::Stop(JobRequest {
                units: vec!["web.service".into()],
                wait: false,
            }),
        };
        let line = serde_json::to_vec(&req).unwrap();
        assert_eq!(parse_request(&line).unwrap(), req);
    }

    #[test]
    fn wait_defaults_to_true() {
        let req = parse_request(br#"{"v":1,"verb":"start","units":["a"]}"#).unwrap();
        assert_eq!(
            req.verb,
            Verb::Start(JobRequest {
                units: vec!["a".into()],
                wait: true
            })
        );
    }

    #[test]
    fn freeze_reason_is_optional() {
        let req = parse_request(br#"{"v":1,"verb":"freeze"}"#).unwrap();
        assert_eq!(req.verb, Verb::Freeze { reason: None });
        let req = parse_request(br#"{"v":1,"verb":"freeze","reason":"incident"}"#).unwrap();
        assert_eq!(
            req.verb,
            Verb::Freeze {
                reason: Some("incident".into())
            }
        );
        let req = parse_request(br#"{"v":1,"verb":"thaw"}"#).unwrap();
        assert_eq!(req.verb, Verb::Thaw);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(
            parse_request(b"{not json")
                .unwrap_err()
                .contains("malformed JSON")
        );
        assert!(
            parse_request(br#"{"verb":"ping"}"#)
                .unwrap_err()
                .contains("\"v\"")
        );
        assert!(
            parse_request(br#"{"v":9,"verb":"ping"}"#)
                .unwrap_err()
                .contains("version 9")
        );
        assert!(
            parse_request(br#"{"v":1,"verb":"explode"}"#)
                .unwrap_err()
                .contains("invalid request")
        );
        let big = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(parse_request(&big).unwrap_err().contains("too large"));
    }
}
