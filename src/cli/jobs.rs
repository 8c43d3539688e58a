//! `start`, `stop`, `restart`, `reload` and `sync`: requests that change what runs.

use super::{GlobalArgs, JobArgs, JsonArgs, JsonFormat, exit, socket_path, unit_name};
use crate::control::client;
use crate::control::protocol::{JobRequest, Reply, Verb};

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Start,
    Stop,
    Restart,
    Reload,
}

pub fn run(global: &GlobalArgs, kind: Kind, args: &JobArgs) -> anyhow::Result<i32> {
    let request = JobRequest {
        units: args.units.iter().map(|u| unit_name(u)).collect(),
        wait: !args.no_block,
    };
    let verb = match kind {
        Kind::Start => Verb::Start(request),
        Kind::Stop => Verb::Stop(request),
        Kind::Restart => Verb::Restart(request),
        Kind::Reload => Verb::Reload(request),
    };
    let reply = client::call(&socket_path(global)?, verb)?;
    Ok(finish(&reply, args.json, |_| {}))
}

pub fn sync(global: &GlobalArgs, args: &JsonArgs) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Sync)?;
    Ok(finish(&reply, args.json, print_sync))
}

/// Prints a reply (JSON, or the human form through `human`) and returns its exit code.
pub fn finish(reply: &Reply, json: Option<JsonFormat>, human: impl Fn(&serde_json::Value)) -> i32 {
    if let Some(format) = json {
        println!("{}", format.render(reply).unwrap_or_else(|_| "{}".into()));
    } else {
        if !reply.data.is_null() {
            human(&reply.data);
        }
        if let Some(error) = &reply.error {
            eprintln!("gitproc: {error}");
        }
    }
    if let Some(warning) = &reply.warning {
        // On stderr even with --json: a script parsing stdout must still be told.
        eprintln!("gitproc: warning: {warning}");
    }
    if reply.ok && reply.warning.is_some() {
        // The job was done but is not durable: scripts must notice, so not 0.
        exit::FAILURE
    } else if reply.ok {
        exit::OK
    } else if reply.exit == 0 {
        exit::FAILURE
    } else {
        reply.exit
    }
}

fn print_sync(data: &serde_json::Value) {
    let commit = data["commit"].as_str().unwrap_or("-");
    let changed = data["changed"].as_bool().unwrap_or(false);
    if !changed {
        println!("up to date at {commit}");
    } else {
        println!("applied {commit}");
    }
    if let Some(line) = super::status::frozen_line(&data["frozen"]) {
        println!("  frozen: {line}");
    }
    if let Some(line) = super::status::pending_line(&data["pending"]) {
        println!("  pending: {line}");
    }
    for (label, key) in [
        ("started", "started"),
        ("stopped", "stopped"),
        ("restarted", "restarted"),
        ("failed to load", "errors"),
    ] {
        if let Some(list) = data[key].as_array() {
            for item in list {
                match (item.as_str(), item["unit"].as_str()) {
                    (Some(name), _) => println!("  {label}: {name}"),
                    (None, Some(unit)) => {
                        println!(
                            "  {label}: {unit}: {}",
                            item["error"].as_str().unwrap_or("?")
                        )
                    }
                    (None, None) => println!("  {label}: {item}"),
                }
            }
        }
    }
    if let Some(error) = data["error"].as_str() {
        println!("  error: {error}");
    }
}
