//! `gitproc check PATH...`: parse unit files and print diagnostics.

use super::CheckArgs;

pub fn run(_args: &CheckArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
