//! Opt-in verification of signed commits, with trust roots given explicitly.
//!
//! gix extracts the signature and the exact signed bytes (the commit without its `gpgsig`
//! header) and runs `ssh-keygen -Y find-principals` then `ssh-keygen -Y verify -n git` (or
//! `gpg --verify`) with the options built here. Nothing is read from the repository's own
//! config (`gpg.ssh.allowedSignersFile`, `gpg.program`, ...): whoever can push to the repo
//! must not be able to weaken the check.

use std::ffi::OsString;
use std::path::PathBuf;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use gix::objs::signature::Format;
use gix::objs::signature::verify::{Options, Status, TrustLevel};

use super::error_chain;

/// Who may sign the commits gitproc applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignaturePolicy {
    /// SSH signatures checked against an allowed-signers file (`ssh-keygen` format: one
    /// `principal [options] key-type key` per line).
    Ssh {
        allowed_signers: PathBuf,
        /// Optional revoked keys (`ssh-keygen -r`).
        revocation_file: Option<PathBuf>,
    },
    /// OpenPGP signatures checked by `gpg --homedir HOME`; the key must be at least
    /// marginally trusted in that keyring.
    Gpg { home: PathBuf },
}

/// What a successful verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The SSH principal or GnuPG user id that signed.
    pub signer: Option<String>,
    /// The signing key's fingerprint, if the verifier printed it.
    pub fingerprint: Option<String>,
}

/// Why a commit's signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The commit is not in the mirror (or not a commit).
    #[error("cannot read commit {commit} to verify its signature: {message}")]
    Commit { commit: String, message: String },
    /// No signature at all.
    #[error(
        "commit {commit} is not signed, but signed commits are required (sign it with `git commit -S`, or disable require_signed)"
    )]
    Unsigned { commit: String },
    /// A signature of another kind than the policy expects.
    #[error(
        "commit {commit} carries a {found} signature, but the policy expects {expected} signatures"
    )]
    WrongFormat {
        commit: String,
        found: String,
        expected: String,
    },
    /// The trust root is missing or unreadable.
    #[error("cannot read the trust root {}: {message} (fix the path in the configuration)", path.display())]
    TrustRoot { path: PathBuf, message: String },
    /// The verifier program could not be run.
    #[error(
        "could not run the signature verifier for commit {commit}: {message} (is ssh-keygen/gpg installed?)"
    )]
    Verifier { commit: String, message: String },
    /// The signature is bad, or made by a key that is not allowed.
    #[error("commit {commit} has a signature that is not from an allowed key ({status}): {output}")]
    Rejected {
        commit: String,
        status: String,
        output: String,
    },
}

/// Verifies `commit`'s signature in `repo` (e.g. [`super::GitSource::repository`]) under
/// `policy`. Only the explicit policy is used; the repository's configuration is ignored.
pub fn verify_commit_signature(
    repo: &gix::Repository,
    commit: &str,
    policy: &SignaturePolicy,
) -> Result<Verified, SignatureError> {
    let read_err = |message: String| SignatureError::Commit {
        commit: commit.to_string(),
        message,
    };
    let id = ObjectId::from_hex(commit.trim().as_bytes())
        .map_err(|e| read_err(format!("not a full commit id: {e}")))?;
    let c = repo
        .find_commit(id)
        .map_err(|e| read_err(error_chain(&e)))?;
    let Some((signature, signed)) = c.signature().map_err(|e| read_err(error_chain(&e)))? else {
        return Err(SignatureError::Unsigned {
            commit: commit.to_string(),
        });
    };
    let found = Format::from_signature(signature.as_bytes());
    let (expected, options) = match policy {
        SignaturePolicy::Ssh {
            allowed_signers,
            revocation_file,
        } => {
            readable(allowed_signers)?;
            if let Some(r) = revocation_file {
                readable(r)?;
            }
            // Keys valid at commit time stay valid for that commit after they expire.
            let verify_time = c
                .committer()
                .and_then(|s| s.time())
                .map_err(|e| read_err(error_chain(&e)))?;
            (
                Format::Ssh,
                Options::Ssh {
                    program: "ssh-keygen".into(),
                    program_arguments: Vec::new(),
                    environment: Vec::new(),
                    allowed_signers: allowed_signers.clone(),
                    revocation_file: revocation_file.clone(),
                    verify_time,
                    minimum_trust: TrustLevel::Fully,
                },
            )
        }
        SignaturePolicy::Gpg { home } => {
            if !home.is_dir() {
                return Err(SignatureError::TrustRoot {
                    path: home.clone(),
                    message: "not a directory".into(),
                });
            }
            (
                Format::OpenPgp,
                Options::OpenPgp {
                    program: "gpg".into(),
                    program_arguments: vec![OsString::from("--homedir"), home.clone().into()],
                    environment: Vec::new(),
                    minimum_trust: TrustLevel::Marginal,
                },
            )
        }
    };
    if found != Some(expected) {
        return Err(SignatureError::WrongFormat {
            commit: commit.to_string(),
            found: found.map_or_else(|| "unknown".to_string(), |f| format!("{f:?}")),
            expected: format!("{expected:?}"),
        });
    }
    let outcome =
        signed
            .verify(signature.as_ref(), options)
            .map_err(|e| SignatureError::Verifier {
                commit: commit.to_string(),
                message: error_chain(&e),
            })?;
    if outcome.is_valid() {
        Ok(Verified {
            signer: outcome.signer.map(|s| s.to_str_lossy().into_owned()),
            fingerprint: outcome.fingerprint.map(|s| s.to_str_lossy().into_owned()),
        })
    } else {
        let status = match outcome.status {
            Status::Good => "good signature, but the signer is not trusted".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        Err(SignatureError::Rejected {
            commit: commit.to_string(),
            status,
            output: outcome.output.to_str_lossy().trim().replace('\n', "; "),
        })
    }
}

fn readable(path: &std::path::Path) -> Result<(), SignatureError> {
    std::fs::metadata(path)
        .map_err(|e| SignatureError::TrustRoot {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(SignatureError::TrustRoot {
                    path: path.to_path_buf(),
                    message: "not a regular file".into(),
                })
            }
        })
}
