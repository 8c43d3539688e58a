//! Test helpers for git-driven tests: real repositories made with the git CLI in a temp dir,
//! and a tiny HTTP server that runs `git http-backend` as CGI.
//!
//! Used as `crate::support::git_fixture`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Runs `git args...` in `dir` with a fixed identity and no user/system config; panics with
/// git's stderr on failure; returns trimmed stdout.
pub fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e}"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `git` command in `dir`, isolated from the machine's git configuration.
pub fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Gitproc Test")
        .env("GIT_AUTHOR_EMAIL", "test@gitproc.invalid")
        .env("GIT_COMMITTER_NAME", "Gitproc Test")
        .env("GIT_COMMITTER_EMAIL", "test@gitproc.invalid")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    cmd
}

/// A working repository (`work`, where commits are made) pushing branch `main` to a bare
/// repository (`bare`, what most tests use as the remote), both in one temp dir.
pub struct GitFixture {
    pub dir: tempfile::TempDir,
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl GitFixture {
    pub fn new() -> GitFixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let work = dir.path().join("work");
        let bare = dir.path().join("remote.git");
        std::fs::create_dir_all(&work).expect("mkdir work");
        git_in(
            dir.path(),
            &["init", "-q", "--bare", "-b", "main", "remote.git"],
        );
        git_in(&work, &["init", "-q", "-b", "main"]);
        git_in(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        GitFixture { dir, work, bare }
    }

    /// A fresh path inside the temp dir (e.g. for a mirror).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn git(&self, args: &[&str]) -> String {
        git_in(&self.work, args)
    }

    /// Writes a file of the working repository (creating directories).
    pub fn write(&self, rel: &str, content: &str) {
        let p = self.work.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write file");
    }

    pub fn symlink(&self, rel: &str, target: &str) {
        let p = self.work.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::os::unix::fs::symlink(target, &p).expect("symlink");
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.work.join(rel)).expect("remove file");
    }

    /// Commits everything in the working repository (without pushing); returns the id.
    pub fn commit_local(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Commits everything and force-pushes `main` to the bare remote; returns the id.
    pub fn commit(&self, message: &str) -> String {
        let id = self.commit_local(message);
        self.push();
        id
    }

    /// Force-pushes the working repository's HEAD to `main` on the bare remote.
    pub fn push(&self) {
        self.git(&["push", "-q", "--force", "origin", "HEAD:refs/heads/main"]);
    }
}

/// An ed25519 SSH key pair made with `ssh-keygen` (no passphrase), for signed commits.
pub struct SshSigningKey {
    /// The private key file (what `user.signingkey` names).
    pub key: PathBuf,
    /// The public key line (`ssh-ed25519 AAAA... comment`), for an allowed-signers file.
    pub public: String,
}

/// Generates a key pair `dir/name` and `dir/name.pub`.
pub fn ssh_signing_key(dir: &Path, name: &str) -> SshSigningKey {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("read public key");
    SshSigningKey {
        key,
        public: public.trim().to_string(),
    }
}

impl GitFixture {
    /// Commits everything signed with `key` (SSH format) and pushes; returns the id.
    pub fn commit_signed(&self, key: &SshSigningKey, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&[
            "-c",
            "gpg.format=ssh",
            "-c",
            &format!("user.signingkey={}", key.key.display()),
            "commit",
            "-q",
            "--allow-empty",
            "-S",
            "-m",
            message,
        ]);
        self.push();
        self.git(&["rev-parse", "HEAD"])
    }
}

/// An HTTP server on 127.0.0.1 that serves the repositories below `root` through
/// `git http-backend` (CGI). One request at a time; stopped (and joined) on drop.
pub struct HttpGitServer {
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpGitServer {
    pub fn start(root: &Path) -> HttpGitServer {
        HttpGitServer::start_on(root, 0)
    }

    /// Like [`HttpGitServer::start`] on a given port (0 = any free one): to bring a stopped
    /// server back at the same URL.
    pub fn start_on(root: &Path, port: u16) -> HttpGitServer {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let root = root.to_path_buf();
        let thread_stop = Arc::clone(&stop);
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread_log = Arc::clone(&log);
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    // A failed request only fails the client side of the test.
                    let _ = serve_cgi(stream, &root, &thread_log);
                }
            }
        });
        HttpGitServer {
            port,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}", self.port)
    }

    /// Takes the log of requests served so far: `"METHOD /path"`, plus ` command=X` for
    /// protocol-v2 POSTs (`command=ls-refs` is a ref advertisement, `command=fetch` moves
    /// objects).
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().expect("request log"))
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_cgi(stream: TcpStream, root: &Path, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.clone(), String::new()),
    };
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    }
    let mut entry = format!("{method} {path}");
    if let Some(pos) = find(&body, b"command=") {
        let rest = &body[pos..];
        let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        entry.push(' ');
        entry.push_str(&String::from_utf8_lossy(&rest[..end]));
    }
    if let Ok(mut log) = log.lock() {
        log.push(entry);
    }
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(enc) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", enc);
    }
    let mut child = cmd.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&body)?;
    }
    let out = child.wait_with_output()?;
    let raw = out.stdout;
    // Split the CGI headers from the body at the first blank line.
    let (head_end, body_start) = match find(&raw, b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match find(&raw, b"\n\n") {
            Some(i) => (i, i + 2),
            None => (raw.len(), raw.len()),
        },
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut out_headers = String::new();
    for line in head.lines() {
        if let Some(s) = line.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !line.trim().is_empty() {
            out_headers.push_str(line.trim_end());
            out_headers.push_str("\r\n");
        }
    }
    let payload = &raw[body_start..];
    write!(
        response,
        "HTTP/1.1 {status}\r\n{out_headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    response.extend_from_slice(payload);
    let mut stream = stream;
    stream.write_all(&response)?;
    stream.flush()?;
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
