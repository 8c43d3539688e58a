//! The event loop: owns all supervisor state. (being written)

use crate::cli::{DaemonArgs, GlobalArgs};
use crate::config::Config;

pub fn run(_config: Config, _global: &GlobalArgs, _args: DaemonArgs) -> anyhow::Result<i32> {
    anyhow::bail!("not implemented yet")
}
