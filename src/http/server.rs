//! The listener's threads and routes.
//!
//! | route | answer |
//! | --- | --- |
//! | `POST /hooks/git` | 202 (check queued, coalesced or push ignored), 401 (bad or missing signature), 404 (no secret configured) |
//! | `GET /metrics` | Prometheus text exposition ([`crate::metrics`]) |
//! | `GET /healthz` | 200 when the event loop answers a ping within [`HEALTH_DEADLINE`], else 503 |
//! | `GET /v1/status` | the JSON of `gitproc status --json`; a bearer token when one is configured (always off loopback) |
//!
//! tiny_http: a small, maintained, blocking HTTP/1.1 server with no async runtime. It
//! accepts and parses headers on threads of its own and hands out whole requests, which
//! fits this daemon's design (threads talking to the loop over channels) without a second
//! concurrency model. Each question for the loop carries a reply channel and is waited for
//! with a deadline, exactly like a control-socket request: a stuck loop makes the listener
//! answer 503, never the other way round.
//!
//! Known limit: tiny_http sets no read timeout on connections, so a client trickling a
//! body holds one of the [`HANDLERS`] threads until it finishes or disconnects. On an
//! untrusted network put a reverse proxy (which bounds request time) in front.

use std::io::{Cursor, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use subtle::ConstantTimeEq;
use tiny_http::{Header, Method, Request, Response, Server};

use super::HttpConfig;
use super::trigger::{Fired, Trigger};
use super::webhook::{self, Push};
use crate::control::protocol::{Reply, Verb};
use crate::control::server::{ControlRequest, Peer};
use crate::metrics::{self, MetricsQuery};

/// Threads answering requests (each asks the loop at most one question at a time).
pub const HANDLERS: usize = 2;
/// How long a route waits for the loop's answer before 503.
pub const LOOP_DEADLINE: Duration = Duration::from_secs(2);
/// `/healthz`: the loop must answer a ping this fast to count as healthy.
pub const HEALTH_DEADLINE: Duration = Duration::from_secs(1);
/// Largest webhook body read (GitHub's push payloads stay well below; larger ones are 413).
pub const MAX_BODY_BYTES: usize = 4 << 20;

type Answer = Response<Cursor<Vec<u8>>>;

/// What every handler thread shares.
struct Ctx {
    config: HttpConfig,
    to_loop: Sender<ControlRequest>,
    metrics: Sender<MetricsQuery>,
    trigger: Trigger,
    peer: Peer,
    hooks: HookCounts,
}

/// Webhook outcomes since start, for `gitproc_webhooks_total` (the loop never sees them).
#[derive(Default)]
struct HookCounts {
    queued: AtomicU64,
    coalesced: AtomicU64,
    ignored: AtomicU64,
    refused: AtomicU64,
    invalid: AtomicU64,
}

impl HookCounts {
    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        [
            ("queued", &self.queued),
            ("coalesced", &self.coalesced),
            ("ignored", &self.ignored),
            ("refused", &self.refused),
            ("invalid", &self.invalid),
        ]
        .into_iter()
        .map(|(name, n)| (name, n.load(Ordering::Relaxed)))
        .collect()
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Binds `config.listen` and starts the handler threads; returns the bound address (the
/// port is the real one when the configuration asked for port 0).
pub fn start(
    config: HttpConfig,
    to_loop: Sender<ControlRequest>,
    metrics: Sender<MetricsQuery>,
) -> anyhow::Result<SocketAddr> {
    let listen = config.listen;
    let server = bind(listen)?;
    let bound = match server.server_addr() {
        tiny_http::ListenAddr::IP(addr) => addr,
        #[allow(unreachable_patterns)]
        _ => listen,
    };
    let peer = Peer {
        pid: i32::try_from(std::process::id()).unwrap_or(0),
        uid: nix::unistd::geteuid().as_raw(),
        gid: nix::unistd::getegid().as_raw(),
    };
    let trigger = Trigger::start(to_loop.clone(), peer, config.min_check_gap)?;
    let ctx = Arc::new(Ctx {
        config,
        to_loop,
        metrics,
        trigger,
        peer,
        hooks: HookCounts::default(),
    });
    let current = Arc::new(RwLock::new(Arc::new(server)));
    for i in 0..HANDLERS {
        let ctx = Arc::clone(&ctx);
        let current = Arc::clone(&current);
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .stack_size(512 << 10)
            .spawn(move || serve(&ctx, &current, bound))?;
    }
    tracing::info!(
        "http: listening on {bound} (webhooks {}, /v1 token {})",
        if ctx.config.webhook_secret.is_some() {
            "on"
        } else {
            "off"
        },
        if ctx.config.token.is_some() {
            "required"
        } else {
            "not required (loopback)"
        }
    );
    Ok(bound)
}

fn bind(listen: SocketAddr) -> anyhow::Result<Server> {
    let listener = TcpListener::bind(listen)
        .map_err(|e| anyhow::anyhow!("[http] listen = \"{listen}\": cannot bind: {e}"))?;
    // Accepted sockets inherit TCP_NODELAY on Linux. tiny_http writes a response's head and
    // body separately; with Nagle's algorithm the body's last segment waits for the
    // client's delayed ACK (40 ms) on a kept-alive connection, which is how Prometheus
    // scrapes. Failing to set it only costs latency.
    if let Err(e) =
        nix::sys::socket::setsockopt(&listener, nix::sys::socket::sockopt::TcpNoDelay, &true)
    {
        tracing::warn!("http: cannot set TCP_NODELAY on {listen}: {e}");
    }
    Server::from_listener(listener, None)
        .map_err(|e| anyhow::anyhow!("[http] listen = \"{listen}\": {e}"))
}

/// One handler thread; it sleeps in `recv` until a request comes (no periodic wakeup).
/// tiny_http's accept thread ends at its first accept error (EMFILE, say) and drops the
/// listener; the handler that receives that error binds the address again, swaps the new
/// server in, and unblocks the other handlers, still waiting on the old one, so that they
/// move over too.
fn serve(ctx: &Ctx, current: &RwLock<Arc<Server>>, bound: SocketAddr) {
    loop {
        let server = Arc::clone(&current.read().unwrap_or_else(PoisonError::into_inner));
        match server.recv() {
            Ok(request) => handle(ctx, request),
            Err(err) => {
                let mut guard = current.write().unwrap_or_else(PoisonError::into_inner);
                if !Arc::ptr_eq(&guard, &server) {
                    // Unblocked after another handler's re-bind.
                    continue;
                }
                tracing::error!("http: accepting connections failed: {err}; listening again");
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    match bind(bound) {
                        Ok(fresh) => {
                            *guard = Arc::new(fresh);
                            break;
                        }
                        Err(err) => tracing::warn!("http: {err}; retrying"),
                    }
                }
                for _ in 1..HANDLERS {
                    server.unblock();
                }
            }
        }
    }
}

fn handle(ctx: &Ctx, mut request: Request) {
    let path = request.url().split('?').next().unwrap_or("").to_string();
    let method = request.method().clone();
    let answer = match (path.as_str(), &method) {
        ("/hooks/git", Method::Post) => hook(ctx, &mut request),
        ("/metrics", Method::Get) => scrape(ctx),
        ("/healthz", Method::Get | Method::Head) => healthz(ctx),
        ("/v1/status", Method::Get) => match authorize(ctx, &request) {
            Ok(()) => status(ctx),
            Err(answer) => answer,
        },
        ("/hooks/git" | "/metrics" | "/healthz" | "/v1/status", _) => {
            text(405, &format!("{method} is not allowed on {path}\n"))
        }
        _ => text(404, &format!("no route {path}\n")),
    };
    // A client that went away gets nothing; that is its business.
    let _ = request.respond(answer);
}

fn text(code: u16, body: &str) -> Answer {
    with_type(code, "text/plain; charset=utf-8", body.as_bytes().to_vec())
}

fn json(code: u16, value: &serde_json::Value) -> Answer {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    with_type(code, "application/json", body)
}

fn with_type(code: u16, content_type: &str, body: Vec<u8>) -> Answer {
    // Whole bodies with a Content-Length: tiny_http would send bodies over 32 KiB chunked,
    // an extra pass through its encoder for a body that is complete in memory anyway
    // (respond of a 120 KB scrape: 3.1 -> 1.2 ms in a debug build).
    let mut answer = Response::from_data(body)
        .with_status_code(code)
        .with_chunked_threshold(usize::MAX);
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        answer.add_header(h);
    }
    answer
}

fn header<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn remote(request: &Request) -> String {
    request
        .remote_addr()
        .map_or_else(|| "an unknown address".into(), ToString::to_string)
}

/// `/v1/*`: the bearer token, when one is configured (always off loopback: the daemon does
/// not start otherwise). Compared in constant time.
fn authorize(ctx: &Ctx, request: &Request) -> Result<(), Answer> {
    let Some(token) = &ctx.config.token else {
        return Ok(());
    };
    let given = header(request, "Authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(token)) => Ok(()),
        _ => {
            tracing::warn!(
                "http: {} {} from {} without a valid bearer token; refused (401)",
                request.method(),
                request.url(),
                remote(request)
            );
            let mut answer = text(401, "a valid \"Authorization: Bearer TOKEN\" is required\n");
            if let Ok(h) = Header::from_bytes("WWW-Authenticate", "Bearer") {
                answer.add_header(h);
            }
            Err(answer)
        }
    }
}

/// Asks the loop `verb` and waits up to `deadline` for its reply.
fn ask(ctx: &Ctx, verb: Verb, deadline: Duration) -> Result<Reply, Answer> {
    let (reply_tx, reply_rx) = bounded(1);
    let request = ControlRequest {
        verb,
        peer: ctx.peer,
        peer_name: None,
        reply: reply_tx,
    };
    if ctx.to_loop.send(request).is_err() {
        return Err(text(503, "the daemon is shutting down\n"));
    }
    reply_rx.recv_timeout(deadline).map_err(|_| {
        text(
            503,
            &format!(
                "the event loop did not answer within {} ms\n",
                deadline.as_millis()
            ),
        )
    })
}

fn healthz(ctx: &Ctx) -> Answer {
    match ask(ctx, Verb::Ping, HEALTH_DEADLINE) {
        Ok(reply) if reply.ok => text(200, "ok\n"),
        Ok(reply) => text(503, reply.error.as_deref().unwrap_or("unhealthy")),
        Err(answer) => answer,
    }
}

fn status(ctx: &Ctx) -> Answer {
    match ask(ctx, Verb::Status { units: Vec::new() }, LOOP_DEADLINE) {
        Ok(reply) if reply.ok => json(200, &reply.data_value()),
        Ok(reply) => json(
            500,
            &serde_json::json!({"error": reply.error, "data": reply.data_value()}),
        ),
        Err(answer) => answer,
    }
}

fn scrape(ctx: &Ctx) -> Answer {
    let (reply_tx, reply_rx) = bounded(1);
    if ctx.metrics.send(MetricsQuery { reply: reply_tx }).is_err() {
        return text(503, "the daemon is shutting down\n");
    }
    match reply_rx.recv_timeout(LOOP_DEADLINE) {
        Ok(mut snapshot) => {
            if ctx.config.webhook_secret.is_some() {
                snapshot.webhooks = ctx.hooks.snapshot();
            }
            with_type(
                200,
                metrics::CONTENT_TYPE,
                metrics::render(snapshot).into_bytes(),
            )
        }
        Err(_) => text(
            503,
            &format!(
                "the event loop did not answer within {} ms\n",
                LOOP_DEADLINE.as_millis()
            ),
        ),
    }
}

fn hook(ctx: &Ctx, request: &mut Request) -> Answer {
    let Some(secret) = &ctx.config.webhook_secret else {
        return text(
            404,
            "webhooks are off: set [http] webhook_secret_file in the daemon's configuration\n",
        );
    };
    if request.body_length().is_some_and(|n| n > MAX_BODY_BYTES) {
        bump(&ctx.hooks.invalid);
        return text(413, &format!("body over {MAX_BODY_BYTES} bytes\n"));
    }
    let mut body = Vec::new();
    let limit = u64::try_from(MAX_BODY_BYTES + 1).unwrap_or(u64::MAX);
    if let Err(err) = request.as_reader().take(limit).read_to_end(&mut body) {
        bump(&ctx.hooks.invalid);
        return text(400, &format!("cannot read the body: {err}\n"));
    }
    if body.len() > MAX_BODY_BYTES {
        bump(&ctx.hooks.invalid);
        return text(413, &format!("body over {MAX_BODY_BYTES} bytes\n"));
    }
    let from = remote(request);
    let signed_by = match webhook::verify(secret, &body, |name| header(request, name)) {
        Ok(name) => name,
        Err(why) => {
            bump(&ctx.hooks.refused);
            tracing::warn!("http: POST /hooks/git from {from}: {why}; refused (401)");
            return text(401, &format!("{why}\n"));
        }
    };
    let event = ["X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event"]
        .iter()
        .find_map(|name| header(request, name));
    match webhook::classify(event, &body, ctx.config.branch.as_deref()) {
        Err(why) => {
            bump(&ctx.hooks.invalid);
            tracing::warn!("http: POST /hooks/git from {from} ({signed_by}): {why}");
            text(400, &format!("{why}\n"))
        }
        Ok(Push::Ignored(why)) => {
            bump(&ctx.hooks.ignored);
            tracing::debug!("http: webhook from {from} ignored: {why}");
            json(202, &serde_json::json!({"check": "ignored", "why": why}))
        }
        Ok(Push::Followed(branch)) => {
            let fired = ctx.trigger.fire();
            tracing::info!(
                "http: webhook ({signed_by}) from {from}: push to {branch}; check {fired:?}"
            );
            match fired {
                Fired::Queued => {
                    bump(&ctx.hooks.queued);
                    json(202, &serde_json::json!({"check": "queued"}))
                }
                Fired::Coalesced => {
                    bump(&ctx.hooks.coalesced);
                    json(202, &serde_json::json!({"check": "coalesced"}))
                }
                Fired::Gone => text(503, "the daemon is shutting down\n"),
            }
        }
    }
}
