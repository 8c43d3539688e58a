//! Push webhooks: who signed the request, and which ref the push moved.
//!
//! Four senders, one shared secret:
//!
//! | header | sender | value |
//! | --- | --- | --- |
//! | `X-Hub-Signature-256` | GitHub (also Gitea, Forgejo) | `sha256=` + hex HMAC-SHA256 of the body |
//! | `X-Gitea-Signature`, `X-Forgejo-Signature` | Gitea, Forgejo | hex HMAC-SHA256 of the body |
//! | `X-Gitproc-Signature` | anything else (a `post-receive` hook with `openssl dgst`) | `sha256=` + hex HMAC-SHA256 |
//! | `X-Gitlab-Token` | GitLab | the secret itself |
//!
//! The first of these headers present decides; a request with none is refused. HMACs are
//! checked with `hmac`'s `verify_slice` and the GitLab token with `subtle`, both in constant
//! time, so the time a refusal takes says nothing about how much of a guess was right.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The signature headers, in the order they are looked at.
pub const SIGNATURE_HEADERS: [&str; 5] = [
    "X-Hub-Signature-256",
    "X-Gitea-Signature",
    "X-Forgejo-Signature",
    "X-Gitproc-Signature",
    "X-Gitlab-Token",
];

/// Why a request is not from someone who knows the secret (for the log and the 401 body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no signature header (one of {})", SIGNATURE_HEADERS.join(", "))]
    Missing,
    #[error("{0} is not a hex HMAC-SHA256 (expected {1})")]
    Malformed(&'static str, &'static str),
    #[error("{0} does not match the body and the configured secret")]
    Mismatch(&'static str),
}

/// Checks the request's signature; `header(name)` returns a header's value (case-insensitive
/// names). `Ok` names the header that matched.
pub fn verify<'h>(
    secret: &[u8],
    body: &[u8],
    header: impl Fn(&str) -> Option<&'h str>,
) -> Result<&'static str, Refused> {
    let Some((name, value)) = SIGNATURE_HEADERS
        .iter()
        .find_map(|&name| header(name).map(|v| (name, v.trim())))
    else {
        return Err(Refused::Missing);
    };
    match name {
        "X-Gitlab-Token" => {
            if bool::from(value.as_bytes().ct_eq(secret)) {
                Ok(name)
            } else {
                Err(Refused::Mismatch(name))
            }
        }
        "X-Gitea-Signature" | "X-Forgejo-Signature" => check_hmac(secret, body, name, value, ""),
        _ => check_hmac(secret, body, name, value, "sha256="),
    }
}

fn check_hmac(
    secret: &[u8],
    body: &[u8],
    name: &'static str,
    value: &str,
    prefix: &'static str,
) -> Result<&'static str, Refused> {
    let expected = if prefix.is_empty() {
        "64 hex digits"
    } else {
        "sha256= and 64 hex digits"
    };
    let hex = value
        .strip_prefix(prefix)
        .ok_or(Refused::Malformed(name, expected))?;
    let tag = decode_hex(hex).ok_or(Refused::Malformed(name, expected))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Refused::Mismatch(name))?;
    mac.update(body);
    mac.verify_slice(&tag)
        .map(|()| name)
        .map_err(|_| Refused::Mismatch(name))
}

/// The 32 bytes of a 64-digit hex string; `None` for anything else.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// The hex HMAC-SHA256 of `body` under `secret` (what a sender puts after `sha256=`).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a verified request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// A push to the followed branch (or to any branch when the daemon follows the
    /// remote's HEAD and so does not know the branch's name): check now.
    Followed(String),
    /// A push to another ref, a tag, or an event that is not a push (GitHub's `ping`).
    Ignored(String),
}

/// Reads the event of a verified request: `event` is the sender's event header (GitHub's
/// `X-GitHub-Event`, GitLab's `X-Gitlab-Event`, Gitea's `X-Gitea-Event`), `branch` the
/// branch the daemon follows. Errors are for a body that is not a push payload.
pub fn classify(event: Option<&str>, body: &[u8], branch: Option<&str>) -> Result<Push, String> {
    if let Some(event) = event {
        let event = event.trim();
        if !(event.eq_ignore_ascii_case("push") || event.eq_ignore_ascii_case("Push Hook")) {
            return Ok(Push::Ignored(format!("event {event:?} is not a push")));
        }
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Some(git_ref) = json.get("ref").and_then(|r| r.as_str()) else {
        return Err("the body has no \"ref\" string (not a push payload?)".into());
    };
    let Some(pushed) = git_ref.strip_prefix("refs/heads/") else {
        return Ok(Push::Ignored(format!("{git_ref} is not a branch")));
    };
    match branch {
        Some(b) if b != pushed => Ok(Push::Ignored(format!(
            "push to {pushed}, the daemon follows {b}"
        ))),
        _ => Ok(Push::Followed(pushed.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    fn headers<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
        }
    }

    #[test]
    fn known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn every_style_verifies() {
        let hex = sign(SECRET, BODY);
        let prefixed = format!("sha256={hex}");
        for (name, value) in [
            ("x-hub-signature-256", prefixed.as_str()),
            ("X-Gitea-Signature", hex.as_str()),
            ("X-Forgejo-Signature", hex.as_str()),
            ("X-Gitproc-Signature", prefixed.as_str()),
            ("X-Gitlab-Token", "s3cret"),
        ] {
            let pairs = [(name, value)];
            assert!(verify(SECRET, BODY, headers(&pairs)).is_ok(), "{name}");
        }
    }

    #[test]
    fn forged_malformed_and_missing_are_refused() {
        let wrong = format!("sha256={}", sign(b"guess", BODY));
        let pairs = [("X-Hub-Signature-256", wrong.as_str())];
        assert_eq!(
            verify(SECRET, BODY, headers(&pairs)),
            Err(Refused::Mismatch("X-Hub-Signature-256"))
        );
        // The right signature of another body.
        let other = format!("sha256={}", sign(SECRET, b"{}"));
        let pairs = [("X-Gitproc-Signature", other.as_str())];
        assert!(verify(SECRET, BODY, headers(&pairs)).is_err());
        let hex = sign(SECRET, BODY);
        let pairs = [("X-Hub-Signature-256", hex.as_str())];
        assert!(matches!(
            verify(SECRET, BODY, headers(&pairs)),
            Err(Refused::Malformed(..))
        ));
        let pairs = [("X-Gitea-Signature", "zz")];
        assert!(matches!(
            verify(SECRET, BODY, headers(&pairs)),
            Err(Refused::Malformed(..))
        ));
        let pairs = [("X-Gitlab-Token", "s3cre")];
        assert!(verify(SECRET, BODY, headers(&pairs)).is_err());
        assert_eq!(verify(SECRET, BODY, headers(&[])), Err(Refused::Missing));
    }

    #[test]
    fn only_pushes_to_the_followed_branch_trigger() {
        let main = Some("main");
        assert_eq!(
            classify(Some("push"), BODY, main),
            Ok(Push::Followed("main".into()))
        );
        assert_eq!(
            classify(Some("Push Hook"), BODY, None),
            Ok(Push::Followed("main".into()))
        );
        assert!(matches!(
            classify(None, br#"{"ref":"refs/heads/dev"}"#, main),
            Ok(Push::Ignored(_))
        ));
        assert!(matches!(
            classify(None, br#"{"ref":"refs/tags/v1"}"#, main),
            Ok(Push::Ignored(_))
        ));
        assert!(matches!(
            classify(Some("ping"), b"{}", main),
            Ok(Push::Ignored(_))
        ));
        assert!(classify(None, b"not json", main).is_err());
        assert!(classify(None, b"{}", main).is_err());
    }
}
