//! Parsing 1,000 realistic unit files (the daemon re-parses every unit on every commit).
//! Target: under 20 ms for the 1,000 on a 2-core machine.
//!
//! Run: `cargo bench --bench parse`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gitproc::tree::{Entry, FileTree};
use gitproc::unit::{SpecifierContext, load_tree, parse_unit};

/// A varied unit: web servers, workers, oneshots, hardened daemons; some with drop-ins.
fn unit_text(i: usize) -> String {
    let mut s = String::with_capacity(1200);
    s.push_str(&format!(
        "# Generated unit {i}\n[Unit]\nDescription=Service number {i} on %H\nDocumentation=man:svc{i}(8) https://example.org/svc{i}\nAfter=network-online.target svc{}.service\nWants=network-online.target\n",
        i.saturating_sub(1)
    ));
    if i.is_multiple_of(3) {
        s.push_str("ConditionPathExists=!/etc/svc/disabled\nStartLimitIntervalSec=30s\nStartLimitBurst=3\n");
    }
    s.push_str("\n[Service]\n");
    match i % 5 {
        0 => s.push_str(&format!(
            "Type=forking\nPIDFile=/run/svc{i}.pid\nExecStartPre=/usr/sbin/svc{i} -t -q -g 'daemon on; master_process on;'\nExecStart=/usr/sbin/svc{i} -g 'daemon on; master_process on;'\nExecReload=/usr/sbin/svc{i} -g 'daemon on;' -s reload\nExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile /run/svc{i}.pid\nTimeoutStopSec=5\nKillMode=mixed\n"
        )),
        1 => s.push_str(&format!(
            "Type=notify\nEnvironmentFile=-/nonexistent/gitproc-bench/svc{i}\nEnvironment=\"CONFIG=/etc/svc{i}/main.cfg\" \"PIDFILE=/run/svc{i}.pid\" \"EXTRAOPTS=-S /run/svc{i}.sock\"\nExecStart=/usr/sbin/svc{i} -Ws -f $CONFIG -p $PIDFILE $EXTRAOPTS\nExecReload=/bin/kill -USR2 $MAINPID\nRestart=always\nSuccessExitStatus=143\n"
        )),
        2 => s.push_str(&format!(
            "Type=oneshot\nRemainAfterExit=yes\nUser=backup\nEnvironment=KEEP=3\nExecStartPre=+/usr/bin/prepare %i createdirectory\nExecStart=/usr/bin/backup --keep $KEEP \\\n    --target /var/backups/svc{i}\nExecStart=/usr/bin/expire ${{KEEP}}\n"
        )),
        3 => s.push_str(&format!(
            "ExecStart=/usr/bin/worker --id {i} --name \"worker {i}\" --log %L/svc{i}.log\nRestart=on-failure\nRestartSec=1min 30s\nUser=svc{i}\nGroup=svc{i}\nLimitNOFILE=65535\nRuntimeDirectory=svc{i}\nRuntimeDirectoryMode=2755\nStateDirectory=svc{i}\nUMask=007\nNoNewPrivileges=true\nPrivateTmp=true\nProtectSystem=strict\nProtectHome=true\nReadWritePaths=-/var/lib/svc{i}\nSystemCallFilter=@system-service\nSystemCallFilter=~@privileged @resources\nCapabilityBoundingSet=\n"
        )),
        _ => s.push_str(&format!(
            "Type=exec\nExecStart=/usr/bin/daemon{i} -f\nWorkingDirectory=/srv/svc{i}\nStandardOutput=append:/var/log/svc{i}.log\nStandardError=inherit\nKillSignal=SIGINT\nWatchdogSec=30\nNice=5\nOOMScoreAdjust=-100\n"
        )),
    }
    s.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    s
}

/// (name, bytes, drop-ins) of one unit.
type Sample = (String, Vec<u8>, Vec<(String, Vec<u8>)>);

fn corpus() -> Vec<Sample> {
    (0..1000)
        .map(|i: usize| {
            let name = format!("svc{i}.service");
            let dropins = if i.is_multiple_of(10) {
                vec![(
                    format!("{name}.d/override.conf"),
                    b"[Service]\nRestart=always\nRestartSec=5\n".to_vec(),
                )]
            } else {
                Vec::new()
            };
            (name, unit_text(i).into_bytes(), dropins)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let ctx = SpecifierContext::detect();
    let units = corpus();
    // Sanity: the corpus is valid, so the bench measures the success path.
    let env = |_: &str| None;
    for (name, bytes, dropins) in &units {
        let l = parse_unit(name, name, bytes, dropins, &ctx, &env);
        assert!(!l.has_errors(), "{name}: {:?}", l.diagnostics);
    }
    c.bench_function("parse_unit x1000", |b| {
        b.iter(|| {
            for (name, bytes, dropins) in &units {
                black_box(parse_unit(name, name, bytes, dropins, &ctx, &env));
            }
        })
    });
    let mut tree = FileTree::default();
    for (name, bytes, dropins) in &units {
        tree.entries
            .insert(name.clone(), Entry::File(bytes.clone()));
        for (p, b) in dropins {
            tree.entries.insert(p.clone(), Entry::File(b.clone()));
        }
    }
    c.bench_function("load_tree 1000 units", |b| {
        b.iter(|| black_box(load_tree(&tree, &ctx)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
