//! The git source against real repositories made with the git CLI in temp dirs: local path,
//! `file://` and HTTP (`git http-backend`) remotes, force-pushes, deleted branches, the
//! units directory, the inotify fast path and signed commits.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::git_fixture::{
    GitFixture, HttpGitServer, git_command, git_in, ssh_signing_key,
};
use gitproc::source::signature::{SignatureError, SignaturePolicy, verify_commit_signature};
use gitproc::source::{GitSource, SourceConfig, SourceError};
use gitproc::tree::Entry;

fn source(url: &str, branch: Option<&str>, units_dir: &str, mirror: PathBuf) -> GitSource {
    GitSource::open(SourceConfig {
        url: url.to_string(),
        branch: branch.map(str::to_string),
        units_dir: units_dir.to_string(),
        mirror,
    })
    .expect("open the mirror")
}

/// The mirror's packs (`.pack` files; each comes with an `.idx`, and a `.rev` from newer gits).
fn pack_files(mirror: &Path) -> usize {
    std::fs::read_dir(mirror.join("objects/pack"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn local_path_remote_sees_new_commits_and_an_unchanged_check_fetches_nothing() {
    let fx = GitFixture::new();
    fx.write("web.service", "[Service]\nExecStart=/bin/true\n");
    let first = fx.commit("add web");
    let mirror = fx.path("state/repo.git");
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror.clone());
    assert!(src.is_local());
    assert_eq!(src.local_path().as_deref(), Some(fx.bare.as_path()));

    let c = src.check().expect("first check");
    assert_eq!(c.tip, first);
    assert!(c.changed && c.fetched, "{c:?}");

    let packs = pack_files(&mirror);
    let c = src.check().expect("unchanged check");
    assert_eq!(c.tip, first);
    assert!(
        !c.changed && !c.fetched,
        "an unchanged check must not fetch: {c:?}"
    );
    assert!(
        !c.advertised,
        "an unchanged local repository is read from its files, without git-upload-pack: {c:?}"
    );
    assert_eq!(pack_files(&mirror), packs, "no object may be transferred");

    fx.write("db.service", "[Service]\nExecStart=/bin/true\n");
    let second = fx.commit("add db");
    let c = src.check().expect("check after a commit");
    assert_eq!(c.tip, second);
    assert!(
        c.changed && c.fetched && c.advertised,
        "a new tip is fetched: {c:?}"
    );
    let tree = src.read_units(&second).expect("read the new tip");
    assert!(tree.file("db.service").is_some());
    // The old commit stays readable from the mirror.
    assert!(src.read_units(&first).unwrap().file("db.service").is_none());

    // Reopening the mirror (a daemon restart) knows the tip and fetches nothing.
    drop(src);
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror);
    assert_eq!(src.mirrored_tip().as_deref(), Some(second.as_str()));
    let c = src.check().unwrap();
    assert!(c.changed && !c.fetched, "{c:?}");
}

#[test]
fn file_url_to_a_non_bare_repository_follows_its_remote_head() {
    let fx = GitFixture::new();
    fx.write("a.service", "[Service]\nExecStart=/bin/true\n");
    let first = fx.commit_local("first");
    let url = format!("file://{}", fx.work.display());
    // No branch configured: follow the remote's HEAD (main).
    let mut src = source(&url, None, ".", fx.path("mirror.git"));
    assert!(src.is_local());
    assert_eq!(src.remote_ref(), "HEAD");
    let c = src.check().expect("check over file://");
    assert_eq!(c.tip, first);
    // Uncommitted edits in the user's worktree are ignored, and the worktree is untouched.
    fx.write("a.service", "[Service]\nExecStart=/bin/false\n");
    let c = src.check().unwrap();
    assert!(!c.changed && !c.fetched);
    let tree = src.read_units(&c.tip).unwrap();
    assert_eq!(
        tree.file("a.service").unwrap(),
        b"[Service]\nExecStart=/bin/true\n"
    );
    assert_eq!(fx.git(&["status", "--porcelain"]), "M a.service");

    let second = fx.commit_local("second");
    assert_eq!(src.check().unwrap().tip, second);
}

#[test]
fn http_remote_via_git_http_backend() {
    let fx = GitFixture::new();
    fx.write("units/web.service", "[Service]\nExecStart=/bin/true\n");
    let first = fx.commit("first");
    let server = HttpGitServer::start(fx.dir.path());
    let url = server.url("remote.git");
    let mut src = source(&url, Some("main"), "units", fx.path("mirror.git"));
    assert!(!src.is_local());
    assert_eq!(src.local_path(), None);

    let c = src.check().expect("check over HTTP");
    assert_eq!(c.tip, first);
    assert!(c.fetched);
    let requests = server.take_requests();
    assert!(
        requests.iter().any(|r| r.ends_with("command=fetch")),
        "the first check must fetch: {requests:?}"
    );
    let c = src.check().expect("unchanged check over HTTP");
    assert!(!c.changed && !c.fetched && c.advertised, "{c:?}");
    // One ref advertisement (capabilities + ls-refs), no object transfer.
    let requests = server.take_requests();
    assert!(
        requests.iter().any(|r| r.ends_with("command=ls-refs"))
            && !requests.iter().any(|r| r.contains("command=fetch")),
        "an unchanged check must only list refs: {requests:?}"
    );
    eprintln!("requests of an unchanged check over HTTP: {requests:?}");

    fx.write("units/db.service", "[Service]\nExecStart=/bin/true\n");
    let second = fx.commit("second");
    let c = src.check().expect("check over HTTP after a commit");
    assert_eq!(c.tip, second);
    assert!(c.changed && c.fetched);
    let names: Vec<_> = src
        .read_units(&second)
        .unwrap()
        .entries
        .into_keys()
        .collect();
    assert_eq!(names, vec!["db.service", "web.service"]);
}

#[test]
fn unreachable_http_remote_is_an_unreachable_error() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/remote.git");
    let mut src = source(&url, Some("main"), ".", dir.path().join("m.git"));
    let err = src.check().unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err}");
    assert!(err.to_string().contains(&url), "{err}");
}

#[test]
fn force_push_is_applied_like_any_new_tip() {
    let fx = GitFixture::new();
    fx.write("a.service", "v1");
    let base = fx.commit("v1");
    fx.write("a.service", "v2");
    let v2 = fx.commit("v2");
    let mut src = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        ".",
        fx.path("m.git"),
    );
    assert_eq!(src.check().unwrap().tip, v2);

    // Rewrite history: drop v2, commit v3 on top of v1, force-push.
    fx.git(&["reset", "-q", "--hard", &base]);
    fx.write("a.service", "v3");
    let v3 = fx.commit("v3");
    let c = src.check().expect("check after a force-push");
    assert_eq!(c.tip, v3);
    assert!(c.changed && c.fetched);
    assert_eq!(
        src.read_units(&v3).unwrap().file("a.service").unwrap(),
        b"v3"
    );

    // Force back to an older commit the mirror already has.
    fx.git(&["reset", "-q", "--hard", &base]);
    fx.push();
    let c = src
        .check()
        .expect("check after a force-push to an old commit");
    assert_eq!(c.tip, base);
    assert!(c.changed);
    assert_eq!(src.mirrored_tip().as_deref(), Some(base.as_str()));
}

#[test]
fn deleted_branch_is_an_error_and_the_old_tip_stays_readable() {
    let fx = GitFixture::new();
    fx.write("a.service", "x");
    fx.commit("first");
    fx.git(&["push", "-q", "origin", "HEAD:refs/heads/deploy"]);
    let tip = fx.git(&["rev-parse", "HEAD"]);
    let mut src = source(
        fx.bare.to_str().unwrap(),
        Some("deploy"),
        ".",
        fx.path("m.git"),
    );
    assert_eq!(src.check().unwrap().tip, tip);

    git_in(&fx.bare, &["branch", "-D", "deploy"]);
    let err = src.check().unwrap_err();
    assert!(matches!(err, SourceError::BranchNotFound { .. }), "{err:?}");
    assert_eq!(err.kind(), "branch-not-found");
    assert!(err.to_string().contains("refs/heads/deploy"), "{err}");
    assert!(src.read_units(&tip).unwrap().file("a.service").is_some());
    assert_eq!(src.mirrored_tip().as_deref(), Some(tip.as_str()));

    // Recreated: checks succeed again.
    fx.git(&["push", "-q", "origin", "HEAD:refs/heads/deploy"]);
    assert_eq!(src.check().unwrap().tip, tip);
}

#[test]
fn missing_remote_repository_is_unreachable_not_a_branch_error() {
    let fx = GitFixture::new();
    let missing = fx.path("does-not-exist.git");
    let mut src = source(
        missing.to_str().unwrap(),
        Some("main"),
        ".",
        fx.path("m.git"),
    );
    let err = src.check().unwrap_err();
    assert_eq!(err.kind(), "unreachable", "{err:?}");
    assert!(err.to_string().contains("does-not-exist.git"), "{err}");
}

#[test]
fn read_units_returns_files_and_symlinks_under_units_dir_only() {
    let fx = GitFixture::new();
    fx.write("README.md", "not a unit");
    fx.write("units/web.service", "[Service]\nExecStart=/bin/true\n");
    fx.write(
        "units/worker@.service",
        "[Service]\nExecStart=/bin/echo %i\n",
    );
    fx.write("units/env/web.env", "A=1\n");
    fx.symlink("units/worker@1.service", "worker@.service");
    fx.write("other/ignored.service", "[Service]\n");
    let tip = fx.commit("layout");
    let mut src = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        "./units/",
        fx.path("m.git"),
    );
    src.check().unwrap();
    let tree = src.read_units(&tip).unwrap();
    let names: Vec<_> = tree.entries.keys().cloned().collect();
    assert_eq!(
        names,
        vec![
            "env/web.env",
            "web.service",
            "worker@.service",
            "worker@1.service"
        ]
    );
    assert_eq!(
        tree.entries["worker@1.service"],
        Entry::Symlink("worker@.service".into())
    );
    assert_eq!(tree.file("env/web.env").unwrap(), b"A=1\n");

    let mut missing = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        "nope",
        fx.path("m2.git"),
    );
    missing.check().unwrap();
    let err = missing.read_units(&tip).unwrap_err();
    assert_eq!(err.kind(), "units-dir-missing", "{err}");
    assert!(err.to_string().contains("nope") && err.to_string().contains(&tip));

    // Repo-relative reads (EnvironmentFile= outside the units directory).
    assert_eq!(
        src.read_path(&tip, "README.md").unwrap(),
        Some(Entry::File(b"not a unit".to_vec()))
    );
    assert_eq!(
        src.read_path(&tip, "units/worker@1.service").unwrap(),
        Some(Entry::Symlink("worker@.service".into()))
    );
    assert_eq!(src.read_path(&tip, "units").unwrap(), None);
    assert_eq!(src.read_path(&tip, "no/such/file").unwrap(), None);
    assert_eq!(src.read_path(&tip, "units/../README.md").unwrap(), None);

    let err = src.read_units(&"0".repeat(40)).unwrap_err();
    assert_eq!(err.kind(), "corrupt-object", "{err}");
    let err = src.read_units("not-hex").unwrap_err();
    assert_eq!(err.kind(), "unknown-revision", "{err}");
}

#[test]
fn commit_info_and_resolve() {
    let fx = GitFixture::new();
    fx.write("a.service", "x");
    let out = git_command(&fx.work).args(["add", "-A"]).output().unwrap();
    assert!(out.status.success());
    let out = git_command(&fx.work)
        .args(["commit", "-q", "-m", "Deploy web v2\n\nLonger body."])
        .env("GIT_AUTHOR_DATE", "@1700000000 +0100")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fx.push();
    let tip = fx.git(&["rev-parse", "HEAD"]);
    let mut src = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        ".",
        fx.path("m.git"),
    );
    src.check().unwrap();
    let info = src.commit_info(&tip).unwrap();
    assert_eq!(info.id, tip);
    assert!(tip.starts_with(&info.short_id) && info.short_id.len() >= 7);
    assert_eq!(info.subject, "Deploy web v2");
    assert_eq!(info.author, "Gitproc Test");
    assert_eq!(info.author_time, 1_700_000_000);

    assert_eq!(src.resolve(&tip).unwrap(), tip);
    assert_eq!(src.resolve("main").unwrap(), tip);
    assert_eq!(src.resolve("refs/heads/main").unwrap(), tip);
    assert_eq!(src.resolve("nope").unwrap_err().kind(), "unknown-revision");
}

/// Waits for a wake-up from the watcher, failing after `deadline`.
fn await_wakeup(rx: &crossbeam_channel::Receiver<()>, what: &str) {
    rx.recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("no inotify wake-up within 5 s after {what}"));
}

#[test]
fn ref_watcher_wakes_on_commits_but_not_on_our_own_fetch() {
    let fx = GitFixture::new();
    fx.write("a.service", "x");
    fx.commit_local("first");
    let (tx, rx) = crossbeam_channel::bounded(1);
    let watcher = gitproc::source::watch(&fx.work, tx).expect("watch the worktree's refs");
    assert_eq!(watcher.git_dir(), fx.work.join(".git"));

    let url = fx.work.to_str().unwrap().to_string();
    let mut src = source(&url, Some("main"), ".", fx.path("m.git"));
    src.check().unwrap();
    // Our own check reads HEAD and refs (git-upload-pack); that must not wake us. Absence can
    // only be shown by waiting: 300 ms is far longer than inotify's delivery latency.
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the daemon's own fetch woke the watcher"
    );

    let started = Instant::now();
    fx.write("a.service", "y");
    let second = fx.commit_local("second");
    await_wakeup(&rx, "a commit");
    let c = src.check().unwrap();
    assert_eq!(c.tip, second);
    eprintln!("commit -> wake-up -> checked in {:?}", started.elapsed());

    // A new branch directory under refs/heads (recursive watch) and packed-refs.
    while rx.try_recv().is_ok() {}
    fx.git(&["branch", "team/feature"]);
    await_wakeup(&rx, "creating refs/heads/team/feature");
    while rx.try_recv().is_ok() {}
    fx.git(&["pack-refs", "--all"]);
    await_wakeup(&rx, "git pack-refs");

    // A bare repository is watched directly.
    let (tx2, rx2) = crossbeam_channel::bounded(1);
    let w2 = gitproc::source::watch(&fx.bare, tx2).unwrap();
    assert_eq!(w2.git_dir(), fx.bare.as_path());
    fx.push();
    await_wakeup(&rx2, "a push into the bare repository");
}

#[test]
fn signed_commits_from_allowed_keys_are_accepted_others_refused() {
    let fx = GitFixture::new();
    let keys = fx.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let good = ssh_signing_key(&keys, "good");
    let evil = ssh_signing_key(&keys, "evil");
    let allowed = keys.join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {}\n", good.public)).unwrap();
    let policy = SignaturePolicy::Ssh {
        allowed_signers: allowed.clone(),
        revocation_file: None,
    };

    fx.write("a.service", "1");
    let signed = fx.commit_signed(&good, "signed by an allowed key");
    fx.write("a.service", "2");
    let unsigned = fx.commit("unsigned");
    fx.write("a.service", "3");
    let wrong = fx.commit_signed(&evil, "signed by an unknown key");

    let mut src = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        ".",
        fx.path("m.git"),
    );
    assert_eq!(src.check().unwrap().tip, wrong);
    let repo = &src.repository().unwrap();

    let ok = src
        .verify_signature(&signed, &policy)
        .expect("allowed key accepted");
    assert_eq!(ok.signer.as_deref(), Some("ops@example.com"));

    let err = verify_commit_signature(repo, &unsigned, &policy).unwrap_err();
    assert!(matches!(err, SignatureError::Unsigned { .. }), "{err:?}");
    assert!(err.to_string().contains(&unsigned));

    let err = verify_commit_signature(repo, &wrong, &policy).unwrap_err();
    assert!(matches!(err, SignatureError::Rejected { .. }), "{err:?}");

    // Allowing the other key (re-verification after the allowed keys change) accepts it.
    std::fs::write(
        &allowed,
        format!(
            "ops@example.com {}\nci@example.com {}\n",
            good.public, evil.public
        ),
    )
    .unwrap();
    let ok = verify_commit_signature(repo, &wrong, &policy).expect("newly allowed key");
    assert_eq!(ok.signer.as_deref(), Some("ci@example.com"));

    // A missing trust root is reported as such, not as a bad signature.
    let missing = SignaturePolicy::Ssh {
        allowed_signers: keys.join("nope"),
        revocation_file: None,
    };
    let err = verify_commit_signature(repo, &signed, &missing).unwrap_err();
    assert!(matches!(err, SignatureError::TrustRoot { .. }), "{err:?}");
}

#[test]
fn a_repository_config_cannot_weaken_signature_checks() {
    // The remote's (and the mirror's) config naming another allowed-signers file that trusts
    // the evil key must have no effect: only the policy's file counts.
    let fx = GitFixture::new();
    let keys = fx.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let good = ssh_signing_key(&keys, "good");
    let evil = ssh_signing_key(&keys, "evil");
    let allowed = keys.join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {}\n", good.public)).unwrap();
    let permissive = keys.join("permissive");
    std::fs::write(&permissive, format!("evil@example.com {}\n", evil.public)).unwrap();
    fx.write("a.service", "1");
    let wrong = fx.commit_signed(&evil, "evil");
    let mirror = fx.path("m.git");
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror.clone());
    src.check().unwrap();
    git_in(
        &mirror,
        &[
            "config",
            "gpg.ssh.allowedSignersFile",
            permissive.to_str().unwrap(),
        ],
    );
    let src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror);
    let policy = SignaturePolicy::Ssh {
        allowed_signers: allowed,
        revocation_file: None,
    };
    let err = verify_commit_signature(&src.repository().unwrap(), &wrong, &policy).unwrap_err();
    assert!(matches!(err, SignatureError::Rejected { .. }), "{err:?}");
}

#[test]
fn a_mirror_that_lost_its_objects_reports_them_and_heals_on_the_next_check() {
    let fx = GitFixture::new();
    fx.write("a.service", "x");
    let tip = fx.commit("first");
    let mirror = fx.path("m.git");
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror.clone());
    src.check().unwrap();
    for pack in std::fs::read_dir(mirror.join("objects/pack")).unwrap() {
        std::fs::remove_file(pack.unwrap().path()).unwrap();
    }
    let err = src.read_units(&tip).unwrap_err();
    assert_eq!(err.kind(), "corrupt-object", "{err}");
    assert!(err.to_string().contains(&tip), "{err}");
    // The ref still names the tip, but the object is gone: the check fetches it again.
    let c = src.check().expect("check refetches missing objects");
    assert_eq!(c.tip, tip);
    assert!(c.fetched, "{c:?}");
    assert!(src.read_units(&tip).unwrap().file("a.service").is_some());
}

#[test]
fn an_empty_remote_has_no_head_and_no_branch() {
    let fx = GitFixture::new();
    // The bare remote has no commit yet: HEAD is unborn, main does not exist.
    let mut head = source(fx.bare.to_str().unwrap(), None, ".", fx.path("m1.git"));
    let err = head.check().unwrap_err();
    assert_eq!(err.kind(), "no-remote-head", "{err}");
    let mut main = source(
        fx.bare.to_str().unwrap(),
        Some("main"),
        ".",
        fx.path("m2.git"),
    );
    let err = main.check().unwrap_err();
    assert_eq!(err.kind(), "branch-not-found", "{err}");
    // The first push makes both work.
    fx.write("a.service", "x");
    let tip = fx.commit("first");
    assert_eq!(head.check().unwrap().tip, tip);
    assert_eq!(main.check().unwrap().tip, tip);
}

#[test]
fn the_mirror_must_be_a_bare_repository_of_our_own() {
    let fx = GitFixture::new();
    // Pointing the mirror at the user's worktree's .git is refused, never written to.
    let err = GitSource::open(SourceConfig {
        url: fx.bare.to_string_lossy().into_owned(),
        branch: Some("main".into()),
        units_dir: ".".into(),
        mirror: fx.work.clone(),
    })
    .unwrap_err();
    assert_eq!(err.kind(), "mirror", "{err}");
    let err = GitSource::open(SourceConfig {
        url: fx.bare.to_string_lossy().into_owned(),
        branch: Some("main".into()),
        units_dir: ".".into(),
        mirror: fx.work.join(".git"),
    })
    .unwrap_err();
    assert_eq!(err.kind(), "mirror", "{err}");
    assert!(err.to_string().contains("bare"), "{err}");
    let err = GitSource::open(SourceConfig {
        url: fx.bare.to_string_lossy().into_owned(),
        branch: Some("bad..name".into()),
        units_dir: ".".into(),
        mirror: fx.path("m.git"),
    })
    .unwrap_err();
    assert_eq!(err.kind(), "invalid-branch", "{err}");
    assert!(err.to_string().contains("bad..name"), "{err}");
}

/// Each fetch adds a pack and gix never merges them; past `MAX_PACKS` the mirror is
/// repacked into one, with every object kept: a commit force-pushed away (a unit's last
/// good version, perhaps) is still readable afterwards.
#[test]
fn the_mirror_is_repacked_past_its_pack_limit_and_keeps_a_force_pushed_away_commit() {
    use gitproc::source::git::MAX_PACKS;
    let fx = GitFixture::new();
    fx.write("a.service", "v0");
    let base = fx.commit("v0");
    let mirror = fx.path("m.git");
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror.clone());
    assert!(src.check().unwrap().fetched);
    fx.write("a.service", "gone");
    let gone = fx.commit("force-pushed away later");
    assert!(src.check().unwrap().fetched);
    fx.git(&["reset", "-q", "--hard", &base]);
    let mut most = 0;
    let mut last = base.clone();
    for i in 1..=MAX_PACKS + 5 {
        fx.write("a.service", &format!("v{i}"));
        last = fx.commit(&format!("v{i}"));
        let c = src.check().expect("check after a commit");
        assert!(c.fetched, "commit {i} fetched");
        most = most.max(pack_files(&mirror));
    }
    assert!(
        most <= MAX_PACKS + 1,
        "the mirror reached {most} packs (limit {MAX_PACKS})"
    );
    assert!(
        pack_files(&mirror) < MAX_PACKS,
        "{} packs after the repack",
        pack_files(&mirror)
    );
    assert_eq!(
        src.read_units(&last).unwrap().file("a.service").unwrap(),
        format!("v{}", MAX_PACKS + 5).as_bytes()
    );
    assert_eq!(
        src.read_units(&gone).unwrap().file("a.service").unwrap(),
        b"gone",
        "the force-pushed-away commit survives the repack"
    );
    assert_eq!(
        src.read_units(&base).unwrap().file("a.service").unwrap(),
        b"v0"
    );
}

#[test]
fn a_local_tip_is_readable_before_the_mirror_fetches_it() {
    let fx = GitFixture::new();
    fx.write("a.service", "x");
    let tip = fx.commit("first");
    let mirror = fx.path("m.git");
    let mut src = source(fx.bare.to_str().unwrap(), Some("main"), ".", mirror.clone());
    assert!(!src.mirror_behind());
    assert_eq!(src.local_unmirrored_tip().as_deref(), Some(tip.as_str()));
    assert!(src.mirror_behind());
    assert_eq!(pack_files(&mirror), 0, "nothing may be fetched yet");
    // Read from the repository itself: units and commit facts alike.
    assert!(src.read_units(&tip).unwrap().file("a.service").is_some());
    assert_eq!(src.commit_info(&tip).unwrap().subject, "first");
    let c = src.check().unwrap();
    assert!(c.fetched, "{c:?}");
    assert!(!src.mirror_behind(), "a successful check ends the wait");
    assert_eq!(
        src.local_unmirrored_tip(),
        None,
        "the mirror holds the tip now"
    );
    assert!(src.read_units(&tip).unwrap().file("a.service").is_some());
}
