//! `gitproc completions SHELL`: completion scripts that know the verbs.

use std::process::Command;

fn completions(shell: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gitproc"))
        .args(["completions", shell])
        .output()
        .expect("run gitproc completions")
}

#[test]
fn bash_zsh_and_fish_scripts_name_every_verb() {
    for shell in ["bash", "zsh", "fish"] {
        let out = completions(shell);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.len() > 500, "{shell}: suspiciously short script");
        for verb in [
            "daemon",
            "start",
            "stop",
            "restart",
            "reload",
            "status",
            "list",
            "logs",
            "sync",
            "check",
            "perf",
            "completions",
        ] {
            assert!(script.contains(verb), "{shell} script lacks {verb}");
        }
        assert!(script.contains("state-dir"), "{shell} lacks --state-dir");
    }
    let bash = String::from_utf8_lossy(&completions("bash").stdout).into_owned();
    assert!(
        bash.contains("complete -F _gitproc"),
        "not a bash completion"
    );
    let zsh = String::from_utf8_lossy(&completions("zsh").stdout).into_owned();
    assert!(zsh.starts_with("#compdef gitproc"), "not a zsh completion");
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = completions("tcsh");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    // `gitproc completions bash | head -1`: the reader is gone before we write.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_gitproc"))
        .args(["completions", "bash"])
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run gitproc");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
