//! The HTTP side of `HTTP=` probes: the request, the response head (parsed by `httparse`:
//! incremental, no allocation), the body's framing (`Content-Length`, chunked, or until
//! the server closes), and the verdict against `ExpectStatus=`/`ExpectBody=`. Bytes in,
//! values out; the sockets are [`super::conn`]'s.

use crate::service::health::ProbeOutcome;
use crate::unit::model::HttpProbe;

/// Most bytes of a response kept (head and body); a longer body is read on and dropped.
pub(super) const BODY_KEPT: usize = 64 * 1024;
/// Most bytes of a response head.
pub(super) const HEAD_MAX: usize = 16 * 1024;

/// A response being read.
#[derive(Default)]
pub(super) struct Response {
    pub(super) buf: Vec<u8>,
    /// Parsed head: status, head length, body framing, whether the server closes.
    pub(super) head: Option<Head>,
    /// Body bytes seen beyond [`BODY_KEPT`] (read and dropped).
    pub(super) dropped: usize,
}

#[derive(Clone, Copy)]
pub(super) struct Head {
    pub(super) status: u16,
    pub(super) len: usize,
    pub(super) framing: Framing,
    pub(super) close: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

pub(super) fn request(http: &HttpProbe) -> String {
    let host = if http.host.contains(':') {
        format!("[{}]", http.host)
    } else {
        http.host.clone()
    };
    format!(
        "GET {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: gitproc-health\r\nAccept: */*\r\nConnection: keep-alive\r\n\r\n",
        http.path, http.port
    )
}

/// The response head, once complete.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    let mut close = resp.version == Some(0);
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value);
        let value = value.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                close = true;
            } else if v.contains("keep-alive") {
                close = false;
            }
        }
    }
    let no_body = (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        close = true;
        Framing::UntilClose
    };
    Ok(Some(Head {
        status,
        len,
        framing,
        close,
    }))
}

/// Whether the whole body is in (or counted as dropped).
pub(super) fn body_complete(resp: &Response) -> bool {
    let Some(h) = resp.head else {
        return false;
    };
    let body = resp.buf.len().saturating_sub(h.len) + resp.dropped;
    match h.framing {
        Framing::Length(n) => body >= n,
        Framing::UntilClose => false,
        Framing::Chunked => {
            if resp.dropped > 0 {
                // Too long to follow the chunks: judge on what is kept, then close.
                return true;
            }
            dechunk(&resp.buf[h.len..]).is_some()
        }
    }
}

/// The body of a complete chunked encoding, `None` while incomplete.
pub(super) fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match httparse::parse_chunk_size(b) {
            Ok(httparse::Status::Complete((used, size))) => {
                b = &b[used..];
                let size = usize::try_from(size).ok()?;
                if size == 0 {
                    // Trailers end with an empty line.
                    return memchr::memmem::find(b, b"\r\n").map(|_| out);
                }
                if b.len() < size + 2 {
                    return None;
                }
                out.extend_from_slice(&b[..size]);
                b = &b[size + 2..];
            }
            _ => return None,
        }
    }
}

/// The verdict on a complete response.
pub(super) fn judge(http: &HttpProbe, resp: &Response) -> ProbeOutcome {
    let Some(h) = resp.head else {
        return ProbeOutcome::new(false, "no HTTP answer", "");
    };
    let raw = &resp.buf[h.len.min(resp.buf.len())..];
    let body = match h.framing {
        Framing::Chunked => dechunk(raw).unwrap_or_else(|| raw.to_vec()),
        Framing::Length(n) => raw[..n.min(raw.len())].to_vec(),
        Framing::UntilClose => raw.to_vec(),
    };
    let text = String::from_utf8_lossy(&body);
    let status_ok = http
        .expect_status
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&h.status));
    if !status_ok {
        return ProbeOutcome::new(false, format!("HTTP {}", h.status), &text);
    }
    if let Some(want) = &http.expect_body
        && !text.contains(want.as_str())
    {
        return ProbeOutcome::new(
            false,
            format!("HTTP {}: body lacks {want:?} (ExpectBody=)", h.status),
            &text,
        );
    }
    ProbeOutcome::new(true, format!("HTTP {}", h.status), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert!(h.framing == Framing::Length(2) && !h.close);
        let h = parse_head(b"HTTP/1.0 503 x\r\n\r\n").unwrap().unwrap();
        assert!(h.close && h.framing == Framing::UntilClose);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert_eq!(
            dechunk(b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n").as_deref(),
            Some(&b"ok!!!"[..])
        );
        assert_eq!(dechunk(b"2\r\nok\r\n"), None);
    }
}
