//! `perf stats` and `perf export`: the daemon's own operation latencies.

use std::collections::BTreeMap;

use super::{ExportFormat, GlobalArgs, PerfCommand, exit, socket_path};
use crate::control::client;
use crate::control::protocol::Verb;
use crate::perf::OpStats;

pub fn run(global: &GlobalArgs, command: &PerfCommand) -> anyhow::Result<i32> {
    let reply = client::call(&socket_path(global)?, Verb::Perf)?;
    if !reply.ok {
        eprintln!(
            "gitproc: {}",
            reply.error.as_deref().unwrap_or("perf failed")
        );
        return Ok(exit::FAILURE);
    }
    let ops: BTreeMap<String, OpStats> =
        serde_json::from_value(reply.data["operations"].clone()).unwrap_or_default();
    match command {
        PerfCommand::Stats(args) if let Some(format) = args.json => {
            println!("{}", format.render(&reply.data)?)
        }
        PerfCommand::Stats(_) => {
            println!(
                "{:<16} {:>8} {:>10} {:>10} {:>10} {:>10}",
                "OPERATION", "COUNT", "P50", "P95", "P99", "MAX"
            );
            for (op, s) in &ops {
                println!(
                    "{op:<16} {:>8} {:>10} {:>10} {:>10} {:>10}",
                    s.count,
                    fmt_us(s.p50_us),
                    fmt_us(s.p95_us),
                    fmt_us(s.p99_us),
                    fmt_us(s.max_us)
                );
            }
            let a = &reply.data["allocator"];
            if let (Some(used), Some(free), Some(mapped)) = (
                a["in_use_bytes"].as_u64(),
                a["free_bytes"].as_u64(),
                a["mmapped_bytes"].as_u64(),
            ) {
                println!(
                    "\nallocator: {} KiB in use, {} KiB free in the heap, {} KiB mapped apart",
                    used / 1024,
                    free / 1024,
                    mapped / 1024
                );
            }
        }
        PerfCommand::Export {
            format: ExportFormat::Json,
        } => println!("{}", serde_json::to_string(&reply.data)?),
        PerfCommand::Export {
            format: ExportFormat::Prometheus,
        } => {
            let probes: BTreeMap<String, crate::perf::ProbeStats> =
                serde_json::from_value(reply.data["probes"].clone()).unwrap_or_default();
            print!("{}", crate::perf::prometheus(&ops));
            print!("{}", crate::perf::prometheus_probes(&probes));
        }
    }
    Ok(exit::OK)
}

fn fmt_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}
