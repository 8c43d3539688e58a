//! How the binaries are linked: the unwinder, and the order of the release binaries' code.
//!
//! The unwinder: on x86_64 GNU/Linux, std's `_Unwind_*` come from `libgcc_s.so.1`, whose
//! loading and CPU-feature constructor cost every process about 0.1 ms at start on this
//! VM (CPUID traps to the hypervisor), of the 1.7 ms of `gitproc status --json`. Linking
//! gcc's static unwinder (`libgcc_eh.a`, what Rust itself links for `crt-static`) removes
//! the library; where the C compiler does not report one, the dynamic one is used as
//! before. `GITPROC_DYNAMIC_UNWINDER=1` keeps the dynamic one, for comparison.
//!
//! The order: `packaging/symbol-order.txt` lists the functions that a running daemon and
//! the CLI's common verbs execute (recorded by `bench/order_symbols.py`). lld places them
//! first and together, so the pages a process keeps resident hold code it runs rather
//! than its neighbours: the kernel maps file pages in 64 KiB blocks around each fault,
//! and without an order the ~3,000 functions in use are spread over 12.9 MB of text
//! (PERFORMANCE.md, round (k)). Only release builds for x86_64 Linux with rustc 1.90 or
//! later (which links that target with its bundled lld; GNU ld has no such option) use
//! it; a name the current build lacks is skipped, so a stale list costs locality, not
//! correctness. `GITPROC_NO_SYMBOL_ORDER=1` links without it, for comparison.

fn main() {
    link_static_unwinder();
    link_in_symbol_order();
}

/// Passes `packaging/symbol-order.txt` to lld for the two release binaries.
fn link_in_symbol_order() {
    const ORDER: &str = "packaging/symbol-order.txt";
    println!("cargo:rerun-if-changed={ORDER}");
    println!("cargo:rerun-if-env-changed=GITPROC_NO_SYMBOL_ORDER");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let opted_out = std::env::var_os("GITPROC_NO_SYMBOL_ORDER").is_some_and(|v| v != "0");
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let path = std::path::Path::new(&dir).join(ORDER);
    if !release || !lld_target || opted_out || !path.is_file() || !rustc_links_with_lld() {
        return;
    }
    for bin in ["gitproc", "gitprocd"] {
        println!(
            "cargo:rustc-link-arg-bin={bin}=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            path.display()
        );
    }
}

/// Whether rustc is 1.90 or later, the first to link x86_64-unknown-linux-gnu with lld.
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = std::process::Command::new(rustc).arg("-V").output() else {
        return false;
    };
    let version = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (...)"
    let mut parts = version.split_whitespace().nth(1).unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major > 1 || (major == 1 && minor >= 90)
}

/// Links `libgcc_eh.a` ahead of std's `-lgcc_s`, so no symbol is left for `libgcc_s.so.1`
/// and `--as-needed` drops it. Only for x86_64 GNU/Linux, and only when `cc` names the
/// archive by an absolute path that exists.
fn link_static_unwinder() {
    println!("cargo:rerun-if-env-changed=GITPROC_DYNAMIC_UNWINDER");
    println!("cargo:rerun-if-env-changed=CC");
    let gnu_target = std::env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let opted_out = std::env::var_os("GITPROC_DYNAMIC_UNWINDER").is_some_and(|v| v != "0");
    if !gnu_target || opted_out {
        let why = if opted_out {
            "opted-out"
        } else {
            "other-target"
        };
        println!("cargo:rustc-env=GITPROC_UNWINDER={why}");
        return;
    }
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let Ok(out) = std::process::Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
    else {
        println!("cargo:rustc-env=GITPROC_UNWINDER=missing");
        return;
    };
    let printed = String::from_utf8_lossy(&out.stdout);
    let archive = std::path::Path::new(printed.trim());
    // Without the archive, gcc prints the bare name back.
    let (true, Some(dir)) = (archive.is_absolute() && archive.is_file(), archive.parent()) else {
        println!("cargo:rustc-env=GITPROC_UNWINDER=missing");
        return;
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    // For the test that checks it (src/lib.rs, link_tests).
    println!("cargo:rustc-env=GITPROC_UNWINDER=static");
}
