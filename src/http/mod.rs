//! The optional HTTP listener (`[http] listen`): push webhooks, Prometheus metrics, the
//! daemon's own health and the status JSON.
//!
//! - [`server`]: the threads and the routes. tiny_http accepts and parses on threads of
//!   its own; our handler threads answer, asking the event loop through the same kind of
//!   message (with a reply channel and a deadline) the control socket sends, so the loop
//!   never touches a socket.
//! - [`webhook`]: signature checks (GitHub, GitLab, Gitea/Forgejo, generic HMAC) and which
//!   branch a push moved.
//! - [`trigger`]: the check a push asks for, coalesced and rate-limited.
//!
//! Secrets are read once here, before the loop starts: a missing or unreadable file stops
//! the daemon with an error naming the key and the file.

pub mod server;
pub mod trigger;
pub mod webhook;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::config::HttpSection;

/// Everything the listener runs with, files already read.
#[derive(Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The webhook secret; `None`: `/hooks/git` answers 404.
    pub webhook_secret: Option<Vec<u8>>,
    /// The bearer token of `/v1/*`; required whenever `listen` is not loopback.
    pub token: Option<Vec<u8>>,
    /// The branch the daemon follows (`None`: the remote's HEAD, so any branch push checks).
    pub branch: Option<String>,
    /// The least time between two webhook-triggered checks.
    pub min_check_gap: Duration,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<set>"),
            )
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("branch", &self.branch)
            .finish()
    }
}

impl HttpConfig {
    /// The listener's configuration, or `None` when `[http] listen` is not set. Reads the
    /// secret files; refuses a non-loopback address without a token.
    pub fn load(section: &HttpSection, branch: Option<String>) -> anyhow::Result<Option<Self>> {
        let Some(listen) = &section.listen else {
            return Ok(None);
        };
        let listen: SocketAddr = listen
            .parse()
            .map_err(|_| anyhow::anyhow!("[http] listen = {listen:?} is not an IP:PORT address"))?;
        let webhook_secret = match &section.webhook_secret_file {
            Some(path) => Some(read_secret("webhook_secret_file", path)?),
            None => None,
        };
        let token = match &section.token_file {
            Some(path) => Some(read_secret("token_file", path)?),
            None => None,
        };
        if !listen.ip().is_loopback() && token.is_none() {
            anyhow::bail!(
                "[http] listen = \"{listen}\" is not a loopback address and no token_file is set: /v1/status would be open to the network; set token_file or listen on 127.0.0.1"
            );
        }
        Ok(Some(HttpConfig {
            listen,
            webhook_secret,
            token,
            branch,
            min_check_gap: crate::config::secs(section.webhook_min_interval_s),
        }))
    }
}

/// A secret file's content without its trailing newline; an empty one is an error too (an
/// empty HMAC key or token would accept anyone who guesses that).
fn read_secret(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("[http] {key} {}: cannot read it: {e}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        anyhow::bail!("[http] {key} {} is empty", path.display());
    }
    Ok(bytes)
}
