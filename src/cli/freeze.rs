//! `gitproc freeze [--reason TEXT]` and `gitproc thaw`: stop applying commits on this host
//! (it keeps fetching, so `status` shows what waits) and start again. The freeze is kept in
//! `state.json`, so it survives daemon restarts; the daemon answers once it is on disk.

use super::jobs::finish;
use super::status::{frozen_line, pending_line};
use super::{FreezeArgs, GlobalArgs, JsonArgs, socket_path};
use crate::control::client;
use crate::control::protocol::Verb;

pub fn freeze(global: &GlobalArgs, args: &FreezeArgs) -> anyhow::Result<i32> {
    let reply = client::call(
        &socket_path(global)?,
        Verb::Freeze {
            reason: args.reason.clone(),
        },
    )?;
    Ok(finish(&reply, args.json, |data| {
        if let Some(line) = frozen_line(&data["frozen"]) {
            println!("frozen {line}");
        }
        if let Some(line) = pending_line(&data["pending"]) {
            println!("  pending: {line}");
        }
    }))
}

pub fn thaw(global: &GlobalArgs, args: &JsonArgs) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Thaw)?;
    Ok(finish(&reply, args.json, |data| {
        if data["was_frozen"].as_bool() != Some(true) {
            println!("not frozen");
        } else if let Some(commit) = data["applied"]["commit"].as_str() {
            println!("thawed; applied {commit}");
        } else {
            println!("thawed");
        }
        if let Some(line) = pending_line(&data["pending"]) {
            println!("  pending: {line}");
        }
    }))
}
