//! The CLI's side of the control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::protocol::{RawReply, Reply, Request, VERSION, Verb};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the gitproc daemon at {path}: {err} (is `gitproc daemon` running with this --state-dir, and are you root or the daemon's user?)"
    )]
    Connect {
        path: PathBuf,
        // Not named `source`: the message already includes it, and anyhow's `{:#}` would
        // print it a second time.
        err: std::io::Error,
    },
    #[error("lost the connection to the daemon at {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("the daemon at {path} sent an invalid reply: {message}")]
    BadReply { path: PathBuf, message: String },
}

/// Sends one request and waits for its reply.
pub fn call(socket: &Path, verb: Verb) -> Result<Reply, ClientError> {
    call_as(socket, verb)
}

/// [`call`], with the reply's `data` kept as the daemon's JSON text: for a CLI that only
/// prints it (`status --json` of 1,000 units is 0.9 MB, which a `Value` tree would
/// allocate node by node only to print it again).
pub fn call_raw(socket: &Path, verb: Verb) -> Result<RawReply, ClientError> {
    call_as(socket, verb)
}

fn call_as<T: DeserializeOwned>(socket: &Path, verb: Verb) -> Result<T, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|err| ClientError::Connect {
        path: socket.to_path_buf(),
        err,
    })?;
    let io = |err| ClientError::Io {
        path: socket.to_path_buf(),
        err,
    };
    let mut line =
        serde_json::to_vec(&Request { v: VERSION, verb }).map_err(|err| ClientError::BadReply {
            path: socket.to_path_buf(),
            message: err.to_string(),
        })?;
    line.push(b'\n');
    let mut writer = stream.try_clone().map_err(io)?;
    // A daemon that refuses the peer (permission denied, too many clients) answers at once
    // and closes, so our write may fail with EPIPE: its reply is still there to read.
    let written = writer.write_all(&line);
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    match reader.read_line(&mut answer) {
        Ok(_) if !answer.is_empty() => {}
        Ok(_) => written.map_err(io)?,
        Err(err) => return Err(io(written.err().unwrap_or(err))),
    }
    if answer.is_empty() {
        return Err(ClientError::BadReply {
            path: socket.to_path_buf(),
            message: "connection closed without a reply".into(),
        });
    }
    serde_json::from_str(&answer).map_err(|err| ClientError::BadReply {
        path: socket.to_path_buf(),
        message: err.to_string(),
    })
}
