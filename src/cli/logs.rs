//! `logs UNIT [-n N] [-f]`: read a unit's log files directly (reading never blocks the
//! collector that writes them). Follow mode notices rotation by inode and size and reopens.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::{GlobalArgs, LogsArgs, exit, state_dir, unit_name};

/// How often follow mode looks for new bytes.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub fn run(global: &GlobalArgs, args: &LogsArgs) -> anyhow::Result<i32> {
    let unit = unit_name(&args.unit);
    let dir = state_dir(global)?.join("logs");
    let path = dir.join(format!("{unit}.log"));
    if !path.exists() && !args.follow {
        eprintln!(
            "gitproc: no log for {unit} in {} (unknown unit, or it has written nothing yet)",
            dir.display()
        );
        return Ok(exit::FAILURE);
    }
    let lines = crate::logs::tail(&dir, &unit, args.lines.unwrap_or(usize::MAX))?;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return Ok(exit::OK);
        }
    }
    drop(out);
    if args.follow {
        follow(&path)?;
    }
    Ok(exit::OK)
}

/// Prints what is appended to `path` from its current end, until stdout goes away. When the
/// file is rotated (a new inode at `path`), the old one is read to its end first — the
/// collector may have written its last lines after our previous poll — and the new one from
/// its start; a file truncated in place is read again from its start.
fn follow(path: &Path) -> anyhow::Result<()> {
    let mut file: Option<(File, u64)> = None;
    let mut pos = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let mut first_open = true;
    loop {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let (rotated, truncated) = match &file {
                    None => (true, false),
                    Some((_, ino)) => (*ino != meta.ino(), meta.len() < pos),
                };
                if rotated
                    && let Some((old, _)) = file.as_mut()
                    && !copy_new(old, &mut buf, &mut pos)?
                {
                    return Ok(());
                }
                if rotated || truncated {
                    let mut f = File::open(path)?;
                    pos = if first_open { meta.len() } else { 0 };
                    f.seek(SeekFrom::Start(pos))?;
                    file = Some((f, meta.ino()));
                    first_open = false;
                }
            }
            Err(_) => first_open = false,
        }
        if let Some((f, _)) = file.as_mut()
            && !copy_new(f, &mut buf, &mut pos)?
        {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// Copies what `f` has beyond `pos` to stdout; false when stdout is closed.
fn copy_new(f: &mut File, buf: &mut [u8], pos: &mut u64) -> anyhow::Result<bool> {
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            return Ok(true);
        }
        *pos += n as u64;
        let mut out = std::io::stdout().lock();
        if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            return Ok(false);
        }
    }
}
