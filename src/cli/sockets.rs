//! Socket units on the command line: `list-sockets` (systemctl's columns: LISTEN, UNIT,
//! ACTIVATES) and the socket lines of `status NAME.socket`.

use serde_json::Value;

use super::{GlobalArgs, ListSocketsArgs, exit, socket_path};
use crate::control::client;
use crate::control::protocol::Verb;

/// `gitproc list-sockets [--all] [--json]`: one row per listening address, by address as
/// systemctl sorts them.
pub fn list(global: &GlobalArgs, args: &ListSocketsArgs) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Status { units: vec![] })?;
    if !reply.ok {
        eprintln!(
            "gitproc: {}",
            reply.error.as_deref().unwrap_or("list-sockets failed")
        );
        return Ok(exit::FAILURE);
    }
    let sockets: Vec<&Value> = reply.data["units"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["kind"].as_str() == Some("socket"))
        .filter(|u| args.all || u["active_state"].as_str() == Some("active"))
        .collect();
    // (listen, type, unit, activates, state, sub)
    let mut rows: Vec<[String; 6]> = Vec::new();
    for u in &sockets {
        for l in u["listen"].as_array().into_iter().flatten() {
            rows.push([
                l["address"].as_str().unwrap_or("?").to_string(),
                l["type"].as_str().unwrap_or("?").to_string(),
                u["name"].as_str().unwrap_or("?").to_string(),
                u["triggers"].as_str().unwrap_or("-").to_string(),
                u["active_state"].as_str().unwrap_or("?").to_string(),
                u["sub_state"].as_str().unwrap_or("?").to_string(),
            ]);
        }
    }
    rows.sort();
    if let Some(format) = args.json {
        let json: Vec<Value> = rows
            .iter()
            .map(|[listen, kind, unit, activates, active, sub]| {
                serde_json::json!({
                    "listen": listen,
                    "type": kind,
                    "unit": unit,
                    "activates": activates,
                    "active_state": active,
                    "sub_state": sub,
                })
            })
            .collect();
        println!("{}", format.render(&json)?);
        return Ok(exit::OK);
    }
    let mut table: Vec<[String; 3]> = vec![["LISTEN".into(), "UNIT".into(), "ACTIVATES".into()]];
    table.extend(
        rows.iter()
            .map(|r| [r[0].clone(), r[2].clone(), r[3].clone()]),
    );
    let mut widths = [0usize; 3];
    for r in &table {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join(" ").trim_end());
    }
    println!();
    println!(
        "{} sockets listed.{}",
        rows.len(),
        if args.all {
            ""
        } else {
            "\nPass --all to see loaded but inactive sockets, too."
        }
    );
    Ok(exit::OK)
}

/// The socket lines of `status NAME.socket`, after `Active:`.
pub fn print_status_lines(u: &Value) {
    for l in u["listen"].as_array().into_iter().flatten() {
        println!(
            "     Listen: {} ({})",
            l["address"].as_str().unwrap_or("?"),
            l["type"].as_str().unwrap_or("?")
        );
    }
    println!("   Triggers: ● {}", u["triggers"].as_str().unwrap_or("?"));
}
