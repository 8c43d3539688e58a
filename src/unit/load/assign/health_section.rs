//! `[X-Health]` (gitproc's health check) into [`HealthCheck`]. An `X-` section, so systemd
//! ignores it and the unit file stays valid for systemd; gitproc reads it like any other
//! section: values are specifier-expanded, an empty value resets a key to its default, a
//! later assignment (a drop-in) replaces an earlier one, and every error names file:line.
//!
//! One probe per unit: `Exec=` (parsed with the other `Exec*=` lines, so `$VAR` sees the
//! final environment: [`Builder::set_health_exec`]), `HTTP=` or `TCP=`. The probe's target
//! must be an IP address or `localhost`: a name lookup could block the prober thread (NSS),
//! and a health check of a local service has no need for one.

use core::net::IpAddr;
use std::time::Duration;

use super::timespan;
use crate::unit::diagnostic::Diagnostic;
use crate::unit::load::{Builder, Located, Pos};
use crate::unit::model::{ExecCommand, HealthCheck, HealthProbe, HttpProbe, OnUnhealthy, defaults};
use crate::unit::value::parse_bool;

/// What `[X-Health]` said so far; [`Builder::finish_health`] turns it into the model.
#[derive(Debug, Default)]
pub(in crate::unit::load) struct HealthDraft {
    /// The first entry of the section, for errors about the whole section.
    pos: Option<Pos>,
    /// The probe and where it was written.
    probe: Option<(HealthProbe, Pos)>,
    interval: Option<Duration>,
    timeout: Option<Duration>,
    start_period: Option<Duration>,
    retries: Option<u32>,
    success_threshold: Option<u32>,
    on_unhealthy: OnUnhealthy,
    ready_on_healthy: bool,
    expect_status: Option<Vec<(u16, u16)>>,
    expect_body: Option<String>,
}

fn pos_of(loc: &Located<'_>) -> Pos {
    (loc.file.to_string(), loc.entry.line, loc.entry.column)
}

/// A finite, non-zero span (`infinity` or `0` make no sense for a probe schedule).
fn positive_span(v: &str) -> Result<Duration, String> {
    match timespan(v)? {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{v:?}: expected a finite time span above zero")),
    }
}

fn count(v: &str, min: u32) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{v:?}: expected a whole number of at least {min}")),
    }
}

/// `host:port` (`[v6]:port` for IPv6). The host must be an IP address or `localhost`.
pub(crate) fn parse_host_port(v: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{v:?}: expected [ADDRESS]:PORT"))?;
        (h, p)
    } else {
        v.rsplit_once(':')
            .ok_or_else(|| format!("{v:?}: expected HOST:PORT"))?
    };
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 => p,
        _ => return Err(format!("{v:?}: {port:?} is not a port (1-65535)")),
    };
    if host != "localhost" && host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "{v:?}: the host must be an IP address or localhost (a name lookup could block the prober)"
        ));
    }
    Ok((host.to_string(), port))
}

/// `http://host[:port][/path]`.
fn parse_url(v: &str) -> Result<HttpProbe, String> {
    if v.starts_with("https://") {
        return Err(format!(
            "{v:?}: https:// is not supported (gitproc has no TLS client for probes); probe the service's plain http:// port"
        ));
    }
    let rest = v
        .strip_prefix("http://")
        .ok_or_else(|| format!("{v:?}: expected an http:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(format!(
            "{v:?}: user information in the URL is not supported"
        ));
    }
    if path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(format!(
            "{v:?}: the path holds whitespace or control characters"
        ));
    }
    let has_port = if authority.starts_with('[') {
        authority.contains("]:")
    } else {
        authority.contains(':')
    };
    let with_port = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let (host, port) = parse_host_port(&with_port)?;
    Ok(HttpProbe {
        url: v.to_string(),
        host,
        port,
        path: path.to_string(),
        expect_status: Vec::new(),
        expect_body: None,
    })
}

/// `ExpectStatus=200 204 300-399`: codes and inclusive ranges, 100-599.
fn parse_status_ranges(v: &str) -> Result<Vec<(u16, u16)>, String> {
    let code = |s: &str| match s.parse::<u16>() {
        Ok(c) if (100..=599).contains(&c) => Ok(c),
        _ => Err(format!("{s:?} is not an HTTP status code (100-599)")),
    };
    v.split_ascii_whitespace()
        .map(|w| match w.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b {
                    return Err(format!("{w:?}: the range is empty"));
                }
                Ok((a, b))
            }
            None => code(w).map(|c| (c, c)),
        })
        .collect()
}

impl Builder<'_> {
    /// One `[X-Health]` entry other than `Exec=` (already specifier-expanded in `v`).
    pub(in crate::unit::load) fn apply_health(&mut self, loc: &Located<'_>, v: &str) {
        let h = &mut self.health;
        if h.pos.is_none() {
            h.pos = Some(pos_of(loc));
        }
        let key = loc.entry.key;
        let r: Result<(), String> = (|| {
            match key {
                "HTTP" | "TCP" if v.is_empty() => h.probe = None,
                "HTTP" => h.probe = Some((HealthProbe::Http(parse_url(v)?), pos_of(loc))),
                "TCP" => {
                    let (host, port) = parse_host_port(v)?;
                    h.probe = Some((HealthProbe::Tcp { host, port }, pos_of(loc)));
                }
                "IntervalSec" => {
                    h.interval = (!v.is_empty()).then(|| positive_span(v)).transpose()?
                }
                "TimeoutSec" => {
                    h.timeout = (!v.is_empty()).then(|| positive_span(v)).transpose()?
                }
                "StartPeriodSec" => {
                    h.start_period = if v.is_empty() {
                        None
                    } else {
                        Some(
                            timespan(v)?
                                .ok_or_else(|| format!("{v:?} is not a finite time span"))?,
                        )
                    }
                }
                "Retries" => h.retries = (!v.is_empty()).then(|| count(v, 1)).transpose()?,
                "SuccessThreshold" => {
                    h.success_threshold = (!v.is_empty()).then(|| count(v, 1)).transpose()?
                }
                "OnUnhealthy" => {
                    h.on_unhealthy = match v {
                        "" | "restart" => OnUnhealthy::Restart,
                        "stop" => OnUnhealthy::Stop,
                        "none" => OnUnhealthy::None,
                        _ => return Err(format!("{v:?}: expected restart, stop or none")),
                    }
                }
                "ReadyOnHealthy" => h.ready_on_healthy = !v.is_empty() && parse_bool(v)?,
                "ExpectStatus" => {
                    h.expect_status = (!v.is_empty())
                        .then(|| parse_status_ranges(v))
                        .transpose()?
                }
                "ExpectBody" => h.expect_body = (!v.is_empty()).then(|| v.to_string()),
                _ => {}
            }
            Ok(())
        })();
        if let Err(msg) = r {
            self.diags.push(loc.error(msg));
        }
    }

    /// `[X-Health]` `Exec=`, parsed by the `Exec*=` pass (systemd's quoting, the `-` prefix).
    pub(in crate::unit::load) fn set_health_exec(
        &mut self,
        loc: &Located<'_>,
        mut cmds: Vec<ExecCommand>,
    ) {
        if self.health.pos.is_none() {
            self.health.pos = Some(pos_of(loc));
        }
        if cmds.len() > 1 {
            self.diags
                .push(loc.error("one command only (a health check runs one command)"));
            return;
        }
        self.health.probe = cmds.pop().map(|cmd| (HealthProbe::Exec(cmd), pos_of(loc)));
    }

    /// After every entry: the section into [`HealthCheck`] (or `None` when it is absent or
    /// has no probe left, which is an error when other keys were written).
    pub(in crate::unit::load) fn finish_health(&mut self) {
        let h = std::mem::take(&mut self.health);
        let Some(section_pos) = h.pos else {
            return;
        };
        let Some((mut probe, probe_pos)) = h.probe else {
            let (f, l, c) = section_pos;
            self.diags.push(Diagnostic::error(
                &f,
                l,
                c,
                "[X-Health] needs a probe: one of Exec=, HTTP= or TCP=",
            ));
            return;
        };
        match &mut probe {
            HealthProbe::Http(http) => {
                http.expect_status = h.expect_status.unwrap_or_else(|| vec![(200, 399)]);
                http.expect_body = h.expect_body;
            }
            _ if h.expect_status.is_some() || h.expect_body.is_some() => {
                let (f, l, c) = probe_pos;
                self.diags.push(Diagnostic::warning(
                    &f,
                    l,
                    c,
                    "ExpectStatus=/ExpectBody= apply to HTTP= probes only: ignored",
                ));
            }
            _ => {}
        }
        self.unit.health = Some(HealthCheck {
            probe,
            interval: h.interval.unwrap_or(defaults::HEALTH_INTERVAL),
            timeout: h.timeout.unwrap_or(defaults::HEALTH_TIMEOUT),
            start_period: h.start_period.unwrap_or(Duration::ZERO),
            retries: h.retries.unwrap_or(defaults::HEALTH_RETRIES),
            success_threshold: h.success_threshold.unwrap_or(1),
            on_unhealthy: h.on_unhealthy,
            ready_on_healthy: h.ready_on_healthy,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let p = parse_url("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let p = parse_url("http://localhost").unwrap();
        assert_eq!((p.port, p.path.as_str()), (80, "/"));
        let p = parse_url("http://[::1]:9/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 9));
        assert!(
            parse_url("https://127.0.0.1/")
                .unwrap_err()
                .contains("https")
        );
        assert!(
            parse_url("http://example.com/")
                .unwrap_err()
                .contains("IP address")
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://127.0.0.1:0/").is_err());
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            parse_status_ranges("200 300-399").unwrap(),
            vec![(200, 200), (300, 399)]
        );
        assert!(parse_status_ranges("99").is_err());
        assert!(parse_status_ranges("300-200").is_err());
    }
}
