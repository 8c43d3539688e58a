//! Whole-unit rules (systemd.service(5)): the checks no single entry can make, run after
//! every entry of every file is applied. `Type=oneshot` decides most of them: the start
//! timeout default, how many `ExecStart=` lines are allowed, whether `ExecStart=` may be
//! missing, and which `Restart=` policies are allowed.

use super::Builder;
use crate::unit::diagnostic::Diagnostic;
use crate::unit::model::{RestartPolicy, ServiceType};

/// Applies the rules to the finished unit; errors point at the line that decided them.
pub(super) fn check(b: &mut Builder<'_>, has_service_section: bool) {
    let oneshot = b.unit.service.service_type == ServiceType::Oneshot;
    if oneshot && !b.timeout_start_set {
        // systemd disables the start timeout for oneshot services unless one is set.
        b.unit.service.timeout_start = None;
    }
    let s = &b.unit.service;
    if s.exec_start.len() > 1 && !oneshot {
        let (f, l, c) = b
            .exec_start_lines
            .get(1)
            .cloned()
            .unwrap_or((b.path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            format!(
                "ExecStart= given {} times: only Type=oneshot services may have more than one command (reset with an empty ExecStart= in a drop-in to replace it)",
                s.exec_start.len()
            ),
        ));
    }
    if s.exec_start.is_empty() && !b.diags.iter().any(|d| d.is_error()) {
        if !oneshot {
            let (f, l, c) = (b.type_pos.clone())
                .or_else(|| b.service_pos.clone())
                .unwrap_or((b.path.to_string(), 1, 1));
            b.diags.push(Diagnostic::error(
                &f,
                l,
                c,
                if has_service_section {
                    "service has no ExecStart=: only Type=oneshot services may omit it".to_string()
                } else {
                    "unit has no [Service] section with ExecStart=".to_string()
                },
            ));
        } else if s.exec_stop.is_empty() {
            let (f, l, c) = b.type_pos.clone().unwrap_or((b.path.to_string(), 1, 1));
            b.diags.push(Diagnostic::error(
                &f,
                l,
                c,
                "service has neither ExecStart= nor ExecStop=: nothing to run",
            ));
        }
    }
    if s.permissions_start_only {
        // systemd: "PermissionsStartOnly=yes" is a '+' on every command but ExecStart=
        // (a command already marked '!' or '!!' keeps its own prefix).
        let s = &mut b.unit.service;
        for cmd in s
            .exec_condition
            .iter_mut()
            .chain(&mut s.exec_start_pre)
            .chain(&mut s.exec_start_post)
            .chain(&mut s.exec_reload)
            .chain(&mut s.exec_stop)
            .chain(&mut s.exec_stop_post)
        {
            if !cmd.flags.no_setuid {
                cmd.flags.full_privileges = true;
            }
        }
    }
    let s = &b.unit.service;
    if oneshot && matches!(s.restart, RestartPolicy::Always | RestartPolicy::OnSuccess) {
        let (f, l, c) = b.restart_pos.clone().unwrap_or((b.path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            "Restart=always and Restart=on-success are not allowed for Type=oneshot services",
        ));
    }
}

/// The rules of a `.timer` unit (systemd.timer(5)): at least one trigger (systemd refuses
/// a timer without one: "Timer unit lacks value setting"), and `Unit=` defaults to the
/// service of the same name (`backup@db.timer` starts `backup@db.service`).
pub(super) fn check_timer(b: &mut Builder<'_>, timer_pos: Option<&super::Pos>) {
    let s = &b.unit.timer.settings;
    let none = s.on_calendar.is_empty()
        && s.on_active_sec.is_empty()
        && s.on_boot_sec.is_empty()
        && s.on_startup_sec.is_empty()
        && s.on_unit_active_sec.is_empty()
        && s.on_unit_inactive_sec.is_empty();
    if none && !b.diags.iter().any(Diagnostic::is_error) {
        let (f, l, c) = timer_pos.cloned().unwrap_or((b.path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            "timer has no trigger: set OnCalendar=, OnActiveSec=, OnBootSec=, OnStartupSec=, OnUnitActiveSec= or OnUnitInactiveSec= in [Timer]",
        ));
    }
    hooks_not_enforced(b, "timer");
    if b.unit.timer.unit.is_empty() {
        let n = b.name;
        b.unit.timer.unit = match &n.instance {
            Some(i) => format!("{}@{i}.service", n.prefix),
            None => format!("{}.service", n.prefix),
        };
    }
}

/// The rules of a `.socket` unit (systemd.socket(5)): at least one `Listen*=` (systemd:
/// "Unit has no Listen setting"), `Service=` defaults to the service of the same name and
/// `FileDescriptorName=` to the socket unit's own name.
pub(super) fn check_socket(b: &mut Builder<'_>, socket_pos: Option<&super::Pos>) {
    if b.unit.socket.listen.is_empty() && !b.diags.iter().any(Diagnostic::is_error) {
        let (f, l, c) = socket_pos.cloned().unwrap_or((b.path.to_string(), 1, 1));
        b.diags.push(Diagnostic::error(
            &f,
            l,
            c,
            "socket has nothing to listen on: set ListenStream=, ListenDatagram= or ListenSequentialPacket= in [Socket]",
        ));
    }
    hooks_not_enforced(b, "socket");
    let n = b.name;
    if b.unit.socket.service.is_empty() {
        b.unit.socket.service = match &n.instance {
            Some(i) => format!("{}@{i}.service", n.prefix),
            None => format!("{}.service", n.prefix),
        };
    }
    if b.unit.socket.file_descriptor_name.is_empty() {
        b.unit.socket.file_descriptor_name = n.full.clone();
    }
}

/// `OnFailure=`/`OnSuccess=` act for services only (a timer's or socket's own failures are
/// not tracked as runs): accepted with a warning and dropped, so nothing reads them.
fn hooks_not_enforced(b: &mut Builder<'_>, kind: &str) {
    let u = &mut b.unit.unit;
    if u.on_failure.is_empty() && u.on_success.is_empty() {
        return;
    }
    u.on_failure.clear();
    u.on_success.clear();
    b.diags.push(Diagnostic::warning(
        b.path,
        1,
        1,
        format!(
            "OnFailure=/OnSuccess= in a .{kind} unit are not enforced by gitproc (only services start hooks): ignored"
        ),
    ));
}
