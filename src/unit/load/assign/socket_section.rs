//! `[Socket]` (systemd.socket(5)) into [`SocketSection`](crate::unit::model::SocketSection).
//! `Listen*=` lines add one socket each (an empty one clears them all, as systemd does);
//! scalars reset to systemd's default when empty. Only `Accept=no` exists in gitproc:
//! `Accept=yes` (one service instance per connection) is an error at its line. `Service=`
//! is checked against the tree by `gitproc check` and the daemon, not here.

use crate::unit::load::Builder;
use crate::unit::model::{BindIpv6Only, Listen, SocketSection, SocketType, defaults};
use crate::unit::name::parse_unit_name;
use crate::unit::socket_address::parse_listen;
use crate::unit::value::{parse_bool, parse_mode};

fn bool_or(v: &str, default: bool) -> Result<bool, String> {
    if v.is_empty() {
        Ok(default)
    } else {
        parse_bool(v)
    }
}

impl Builder<'_> {
    pub(super) fn apply_socket(&mut self, key: &str, v: &str) -> Result<(), String> {
        let s = &mut self.unit.socket;
        let socket_type = match key {
            "ListenStream" => Some(SocketType::Stream),
            "ListenDatagram" => Some(SocketType::Datagram),
            "ListenSequentialPacket" => Some(SocketType::SequentialPacket),
            _ => None,
        };
        if let Some(socket_type) = socket_type {
            if v.is_empty() {
                s.listen.clear();
            } else {
                let address = parse_listen(socket_type, v)?;
                let listen = Listen {
                    socket_type,
                    address,
                };
                if s.listen.contains(&listen) {
                    return Err(format!("{v} is already listed"));
                }
                s.listen.push(listen);
            }
            return Ok(());
        }
        let d = SocketSection::default();
        match key {
            "Accept" if bool_or(v, false)? => {
                return Err(
                    "Accept=yes is not supported by gitproc: only Accept=no (the service is handed the listening socket)"
                        .into(),
                );
            }
            "Backlog" => {
                s.backlog = if v.is_empty() {
                    defaults::BACKLOG
                } else {
                    v.parse::<u32>()
                        .map_err(|_| format!("{v:?} is not a number"))?
                }
            }
            "SocketMode" => {
                s.socket_mode = if v.is_empty() {
                    defaults::SOCKET_MODE
                } else {
                    parse_mode(v, 0o7777)?
                }
            }
            "DirectoryMode" => {
                s.directory_mode = if v.is_empty() {
                    defaults::DIRECTORY_MODE
                } else {
                    parse_mode(v, 0o7777)?
                }
            }
            "SocketUser" => s.socket_user = (!v.is_empty()).then(|| v.to_string()),
            "SocketGroup" => s.socket_group = (!v.is_empty()).then(|| v.to_string()),
            "ReusePort" => s.reuse_port = bool_or(v, d.reuse_port)?,
            "FreeBind" => s.free_bind = bool_or(v, d.free_bind)?,
            "BindIPv6Only" => {
                s.bind_ipv6_only = match v {
                    "" | "default" => BindIpv6Only::Default,
                    "both" => BindIpv6Only::Both,
                    "ipv6-only" => BindIpv6Only::Ipv6Only,
                    _ => return Err(format!("{v:?}: expected default, both or ipv6-only")),
                }
            }
            "RemoveOnStop" => s.remove_on_stop = bool_or(v, d.remove_on_stop)?,
            "FileDescriptorName" => {
                if v.len() > 255 || v.bytes().any(|b| b == b':' || !b.is_ascii_graphic()) {
                    return Err(format!(
                        "{v:?}: at most 255 printable ASCII characters, without ':' or spaces"
                    ));
                }
                s.file_descriptor_name = v.to_string();
            }
            "Service" => {
                if v.is_empty() {
                    s.service.clear();
                } else {
                    let name = parse_unit_name(v)?;
                    if name.suffix != "service" {
                        return Err(format!("{v}: a socket can only activate a .service unit"));
                    }
                    if name.instance.as_deref() == Some("") {
                        return Err(format!(
                            "{v} is a template: name an instance such as {}@NAME.service",
                            name.prefix
                        ));
                    }
                    s.service = v.to_string();
                }
            }
            _ => {}
        }
        Ok(())
    }
}
