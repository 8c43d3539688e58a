//! Standard input, output and error of a new process: `StandardOutput=`/`StandardError=`
//! turned into [`OutputTarget`]s, the files and pipes opened in the parent, and the three
//! fds the child `dup2`s onto 0, 1 and 2. Also the re-attachment to the log pipes of an
//! adopted process.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::unit::model::{ServiceSection, StdOutput};

use super::{SpawnError, SpawnProgress, SpawnRequest};

/// Where a service's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A new pipe; its read end is returned in [`Spawned`] for the log collector.
    Pipe,
    /// stderr only: the very same open file as stdout (one pipe, lines in order).
    SameAsStdout,
    /// `/dev/null`.
    Null,
    /// The daemon's own stdout/stderr.
    Inherit,
    /// `file:PATH`: opened for writing from the start, not truncated.
    File(PathBuf),
    /// `append:PATH`.
    Append(PathBuf),
    /// `truncate:PATH`.
    Truncate(PathBuf),
}

impl OutputTarget {
    /// The stdout target `StandardOutput=` asks for (`journal` and friends: a pipe to the
    /// collector).
    pub fn stdout_of(service: &ServiceSection) -> OutputTarget {
        match &service.standard_output {
            StdOutput::Journal => OutputTarget::Pipe,
            StdOutput::Null => OutputTarget::Null,
            StdOutput::Inherit => OutputTarget::Inherit,
            StdOutput::File(p) => OutputTarget::File(PathBuf::from(p)),
            StdOutput::Append(p) => OutputTarget::Append(PathBuf::from(p)),
            StdOutput::Truncate(p) => OutputTarget::Truncate(PathBuf::from(p)),
        }
    }

    /// The stderr target `StandardError=` asks for; unset or `inherit` means "same as
    /// stdout" as in systemd.
    pub fn stderr_of(service: &ServiceSection) -> OutputTarget {
        match &service.standard_error {
            None | Some(StdOutput::Inherit) => OutputTarget::SameAsStdout,
            Some(StdOutput::Journal) => OutputTarget::Pipe,
            Some(StdOutput::Null) => OutputTarget::Null,
            Some(StdOutput::File(p)) => OutputTarget::File(PathBuf::from(p)),
            Some(StdOutput::Append(p)) => OutputTarget::Append(PathBuf::from(p)),
            Some(StdOutput::Truncate(p)) => OutputTarget::Truncate(PathBuf::from(p)),
        }
    }
}

/// The open files behind a child's fds 0, 1 and 2. The parent keeps it until the child
/// has called execve (the child only holds the raw numbers), then drops the write ends.
pub(super) struct Stdio {
    devnull_in: OwnedFd,
    devnull_out: OwnedFd,
    /// Write ends (pipes, files) for the child, when not /dev/null or inherited.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// Read ends for the log collector, for [`OutputTarget::Pipe`].
    stdout_read: Option<OwnedFd>,
    stderr_read: Option<OwnedFd>,
    same_as_stdout: bool,
    inherit: [bool; 2],
}

impl Stdio {
    pub(super) fn open(req: &SpawnRequest, exe: &Path) -> Result<Stdio, SpawnError> {
        let devnull_in = open_devnull(libc::O_RDONLY).map_err(|e| SpawnError::os(exe, e))?;
        let devnull_out = open_devnull(libc::O_WRONLY).map_err(|e| SpawnError::os(exe, e))?;
        let (stdout, stdout_read) = open_output(&req.stdout, "StandardOutput", exe, req.progress)?;
        let (stderr, stderr_read) = open_output(&req.stderr, "StandardError", exe, req.progress)?;
        Ok(Stdio {
            devnull_in,
            devnull_out,
            stdout,
            stderr,
            stdout_read,
            stderr_read,
            same_as_stdout: req.stderr == OutputTarget::SameAsStdout,
            inherit: [
                req.stdout == OutputTarget::Inherit,
                req.stderr == OutputTarget::Inherit,
            ],
        })
    }

    /// The fds the child `dup2`s onto 0, 1 and 2.
    pub(super) fn sources(&self) -> [RawFd; 3] {
        let source = |fd: &Option<OwnedFd>, inherit: bool, own: RawFd| match fd {
            Some(fd) => fd.as_raw_fd(),
            None if inherit => own,
            None => self.devnull_out.as_raw_fd(),
        };
        let out = source(&self.stdout, self.inherit[0], 1);
        let err = if self.same_as_stdout {
            out
        } else {
            source(&self.stderr, self.inherit[1], 2)
        };
        [self.devnull_in.as_raw_fd(), out, err]
    }

    /// Which of fds 0, 1, 2 are pipes to the log collector (the child reopens them).
    pub(super) fn log_pipes(&self) -> [bool; 3] {
        [
            false,
            self.stdout_read.is_some(),
            self.stderr_read.is_some(),
        ]
    }

    /// After execve: closes the parent's copies of the write ends and returns the read
    /// ends (stdout, stderr) for the collector.
    pub(super) fn into_read_ends(self) -> (Option<OwnedFd>, Option<OwnedFd>) {
        (self.stdout_read, self.stderr_read)
    }
}

fn open_devnull(flags: i32) -> io::Result<OwnedFd> {
    OpenOptions::new()
        .read(flags == libc::O_RDONLY)
        .write(flags == libc::O_WRONLY)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map(OwnedFd::from)
}

/// Re-attaches to the log pipes of a process this daemon adopted (spawned by a previous
/// daemon with [`OutputTarget::Pipe`]): opens its stdout and, when it is a different pipe,
/// its stderr for reading through `/proc/PID/fd`. Returns the read ends with `true` for
/// stderr. Only pipes are opened, and the caller asks only for units whose output goes to
/// the collector, so a pipe that belongs to someone else (an inherited stdout) is never read.
pub(crate) fn reopen_log_pipes(pid: i32, stdout: bool, stderr: bool) -> Vec<(OwnedFd, bool)> {
    let mut out = Vec::new();
    let mut seen = None;
    for (fd, wanted, is_stderr) in [(1, stdout, false), (2, stderr, true)] {
        let path = format!("/proc/{pid}/fd/{fd}");
        let Ok(link) = fs::read_link(&path) else {
            continue;
        };
        let link = link.to_string_lossy().into_owned();
        if !link.starts_with("pipe:") || seen.as_deref() == Some(link.as_str()) {
            continue;
        }
        seen = Some(link);
        if !wanted {
            continue;
        }
        if let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
        {
            out.push((OwnedFd::from(file), is_stderr));
        }
    }
    out
}

/// Opens the write end for one output. Returns (fd for the child, read end for the collector).
fn open_output(
    target: &OutputTarget,
    setting: &str,
    exe: &Path,
    progress: Option<&SpawnProgress>,
) -> Result<(Option<OwnedFd>, Option<OwnedFd>), SpawnError> {
    let open = |p: &Path, mode: &str, opts: &mut OpenOptions| {
        open_file(
            p,
            &format!("{setting}={mode}:{}", p.display()),
            opts,
            progress,
        )
        .map(|fd| (Some(fd), None))
    };
    match target {
        OutputTarget::Pipe => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| SpawnError::os(exe, io::Error::from(e)))?;
            Ok((Some(w), Some(r)))
        }
        OutputTarget::SameAsStdout | OutputTarget::Null | OutputTarget::Inherit => Ok((None, None)),
        OutputTarget::File(p) => open(p, "file", OpenOptions::new().write(true).create(true)),
        OutputTarget::Append(p) => open(p, "append", OpenOptions::new().append(true).create(true)),
        OutputTarget::Truncate(p) => open(
            p,
            "truncate",
            OpenOptions::new().write(true).create(true).truncate(true),
        ),
    }
}

/// Longest pause between two tries to open a FIFO that has no reader yet.
const FIFO_RETRY_MAX: Duration = Duration::from_millis(20);

/// Opens a `file:`/`append:`/`truncate:` path without ever blocking in open(2).
///
/// A plain `open(O_WRONLY)` of a FIFO blocks until someone opens it for reading: forever, if
/// nobody does. systemd opens it in the child, so the unit's start hangs until
/// TimeoutStartSec= kills the child; gitproc keeps those semantics (the service starts as
/// soon as a reader appears, or fails at its start timeout) but waits in a loop it can call
/// off: `O_NONBLOCK` makes the open fail at once with ENXIO while the FIFO has no reader, so
/// it is tried again every few ms until it succeeds or `progress` is cancelled (the loop
/// does so when the start times out or a stop comes). Without `progress` (a synchronous
/// caller that cannot cancel) a FIFO with no reader is an error straight away. Once open,
/// `O_NONBLOCK` is cleared: the service expects ordinary blocking writes.
fn open_file(
    path: &Path,
    what: &str,
    opts: &mut OpenOptions,
    progress: Option<&SpawnProgress>,
) -> Result<OwnedFd, SpawnError> {
    if let Some(p) = progress {
        p.set_step(format!("opening {what}"));
    }
    opts.mode(0o644)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK);
    let mut pause = Duration::from_millis(1);
    let mut said_fifo = false;
    loop {
        match opts.open(path) {
            Ok(file) => {
                let fd = OwnedFd::from(file);
                clear_nonblock(&fd).map_err(|e| SpawnError::setup(what, e))?;
                return Ok(fd);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) && is_fifo(path) => {
                let Some(p) = progress else {
                    return Err(SpawnError::setup(
                        what,
                        "a FIFO with no reader (open a reader first)",
                    ));
                };
                if !said_fifo {
                    p.set_step(format!("opening {what} (a FIFO with no reader)"));
                    said_fifo = true;
                }
                if p.is_cancelled() {
                    return Err(SpawnError::setup(
                        what,
                        "gave up waiting for a reader of the FIFO",
                    ));
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(FIFO_RETRY_MAX);
            }
            Err(e) => return Err(SpawnError::setup(what, e)),
        }
    }
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn clear_nonblock(fd: &OwnedFd) -> io::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) & !OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_targets_follow_standard_output_and_error() {
        let mut svc = ServiceSection::default();
        assert_eq!(OutputTarget::stdout_of(&svc), OutputTarget::Pipe);
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::SameAsStdout);
        svc.standard_output = StdOutput::Append("/tmp/x".into());
        svc.standard_error = Some(StdOutput::Null);
        assert_eq!(
            OutputTarget::stdout_of(&svc),
            OutputTarget::Append(PathBuf::from("/tmp/x"))
        );
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::Null);
        svc.standard_error = Some(StdOutput::Journal);
        assert_eq!(OutputTarget::stderr_of(&svc), OutputTarget::Pipe);
    }
}
