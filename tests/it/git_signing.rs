//! Signed commits (opt-in): with `require_signed = true` the daemon applies only a tip signed
//! by an allowed key; an unsigned tip is refused, status says why, the last good stays.

use crate::support::git_fixture::{GitFixture, ssh_signing_key};
use crate::support::{Daemon, cmdline_once_exec, service};

#[test]
fn an_unsigned_tip_is_refused_and_a_signed_one_is_applied() {
    let fx = GitFixture::new();
    let keys = fx.path("keys");
    std::fs::create_dir_all(&keys).expect("mkdir keys");
    let key = ssh_signing_key(&keys, "ops");
    let allowed = keys.join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {}\n", key.public))
        .expect("write allowed signers");
    let config = keys.join("gitproc.toml");
    std::fs::write(
        &config,
        format!(
            "[signing]\nrequire_signed = true\nallowed_signers = {:?}\n",
            allowed.display().to_string()
        ),
    )
    .expect("write config");

    fx.write("a.service", &service("/bin/sleep 1000", ""));
    let signed = fx.commit_signed(&key, "signed first version");
    let daemon = Daemon::start(
        &fx.bare,
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let pid = daemon.wait_running("a.service");
    assert_eq!(daemon.status()["daemon"]["commit"], signed);

    fx.write("a.service", &service("/bin/sleep 2000", ""));
    let unsigned = fx.commit("unsigned change");
    daemon.sync();
    let error = daemon.wait("status to say why the tip is refused", || {
        let status = daemon.status();
        status["daemon"]["source_error"]
            .as_str()
            .map(str::to_string)
    });
    assert!(
        error.contains(&unsigned[..10]) && error.contains("not applied"),
        "source_error names the refused commit: {error}"
    );
    assert!(
        error.contains("sign"),
        "source_error says it is about the signature: {error}"
    );
    let status = daemon.status();
    assert_eq!(
        status["daemon"]["commit"], signed,
        "the last good stays applied"
    );
    assert_eq!(daemon.main_pid("a.service"), Some(pid));
    assert_eq!(cmdline_once_exec(pid, "/bin/sleep 1000"), "/bin/sleep 1000");

    fx.write("a.service", &service("/bin/sleep 3000", ""));
    let signed2 = fx.commit_signed(&key, "signed change");
    daemon.sync();
    daemon.wait("the signed tip to be applied", || {
        (daemon.status()["daemon"]["commit"] == signed2).then_some(())
    });
    let unit = daemon.wait_unit("a.service", "restarted with the signed version", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != pid
    });
    let new = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 3000"), "/bin/sleep 3000");
    assert!(daemon.status()["daemon"]["source_error"].is_null());
}

#[test]
fn a_tip_signed_by_an_unknown_key_is_applied_once_that_key_is_allowed() {
    let fx = GitFixture::new();
    let keys = fx.path("keys");
    std::fs::create_dir_all(&keys).expect("mkdir keys");
    let ops = ssh_signing_key(&keys, "ops");
    let dev = ssh_signing_key(&keys, "dev");
    let allowed = keys.join("allowed_signers");
    std::fs::write(&allowed, format!("ops@example.com {}\n", ops.public))
        .expect("write allowed signers");
    let config = keys.join("gitproc.toml");
    std::fs::write(
        &config,
        format!(
            "[signing]\nrequire_signed = true\nallowed_signers = {:?}\n",
            allowed.display().to_string()
        ),
    )
    .expect("write config");
    fx.write("a.service", &service("/bin/sleep 1000", ""));
    fx.commit_signed(&ops, "signed by ops");
    let daemon = Daemon::start(
        &fx.bare,
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let pid = daemon.wait_running("a.service");

    fx.write("a.service", &service("/bin/sleep 2000", ""));
    let by_dev = fx.commit_signed(&dev, "signed by dev, not yet allowed");
    daemon.sync();
    daemon.wait("the dev-signed tip to be refused", || {
        daemon.status()["daemon"]["source_error"]
            .as_str()
            .filter(|e| e.contains(&by_dev[..10]))
            .map(str::to_string)
    });
    assert_eq!(daemon.main_pid("a.service"), Some(pid));

    // Allowing dev's key re-verifies the same tip: no new commit needed.
    std::fs::write(
        &allowed,
        format!(
            "ops@example.com {}\ndev@example.com {}\n",
            ops.public, dev.public
        ),
    )
    .expect("rewrite allowed signers");
    daemon.sync();
    daemon.wait("the re-verified tip to be applied", || {
        (daemon.status()["daemon"]["commit"] == by_dev).then_some(())
    });
    let unit = daemon.wait_unit("a.service", "restarted", |u| {
        u["sub_state"] == "running" && u["main_pid"].is_i64() && u["main_pid"] != pid
    });
    let new = unit["main_pid"].as_i64().unwrap_or_default() as i32;
    assert_eq!(cmdline_once_exec(new, "/bin/sleep 2000"), "/bin/sleep 2000");
}
