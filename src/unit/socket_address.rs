//! systemd's `Listen*=` address forms (systemd.socket(5)), parsed without touching the host:
//! a port number alone (every address, IPv6 and IPv4), `1.2.3.4:port`, `[v6]:port` (an
//! optional `%interface` is refused: binding to a device is not implemented), an absolute
//! path (a unix socket in the file system) and `@name` (the abstract namespace).
//! `vsock:`, netlink and the other families are refused with a message saying so.

use core::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::model::{ListenAddress, SocketType};

/// Longest `sun_path` Linux takes (108 bytes with the NUL).
const UNIX_PATH_MAX: usize = 107;

fn port(s: &str, whole: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{whole:?}: invalid port {s:?} (expected 1-65535)")),
        Ok(p) => Ok(p),
    }
}

/// Parses the value of a `Listen*=` line of type `kind`.
pub fn parse_listen(kind: SocketType, v: &str) -> Result<ListenAddress, String> {
    let v = v.trim();
    if v.is_empty() {
        return Err("empty address".into());
    }
    let address = if let Some(path) = v.strip_prefix('/').map(|_| v) {
        if path.len() > UNIX_PATH_MAX {
            return Err(format!(
                "{path:?}: a unix socket path is at most {UNIX_PATH_MAX} bytes"
            ));
        }
        if path.split('/').any(|c| c == "..") {
            return Err(format!("{path:?}: a socket path may not contain \"..\""));
        }
        ListenAddress::Unix(path.to_string())
    } else if let Some(name) = v.strip_prefix('@') {
        if name.is_empty() || name.len() >= UNIX_PATH_MAX {
            return Err(format!(
                "{v:?}: an abstract socket name is 1 to {} bytes",
                UNIX_PATH_MAX - 1
            ));
        }
        ListenAddress::Abstract(name.to_string())
    } else if v.bytes().all(|b| b.is_ascii_digit()) {
        ListenAddress::AnyPort(port(v, v)?)
    } else if let Some(rest) = v.strip_prefix('[') {
        let Some((host, p)) = rest.split_once("]:") else {
            return Err(format!("{v:?}: expected [IPv6 address]:port"));
        };
        if host.contains('%') {
            return Err(format!(
                "{v:?}: an interface (%name) in the address is not supported by gitproc"
            ));
        }
        let ip: Ipv6Addr = host
            .parse()
            .map_err(|_| format!("{v:?}: {host:?} is not an IPv6 address"))?;
        ListenAddress::Inet(SocketAddr::new(IpAddr::V6(ip), port(p, v)?))
    } else if let Some((host, p)) = v.rsplit_once(':') {
        if host.contains(':') || host.contains('/') {
            return Err(format!(
                "{v:?}: not an address gitproc supports (port, host:port, [v6]:port, /path or @name)"
            ));
        }
        let ip: core::net::Ipv4Addr = host.parse().map_err(|_| {
            format!("{v:?}: {host:?} is not an IPv4 address (names are not resolved; write [v6]:port for IPv6)")
        })?;
        ListenAddress::Inet(SocketAddr::new(IpAddr::V4(ip), port(p, v)?))
    } else {
        return Err(format!(
            "{v:?}: not an address gitproc supports (port, host:port, [v6]:port, /path or @name)"
        ));
    };
    if kind == SocketType::SequentialPacket
        && !matches!(address, ListenAddress::Unix(_) | ListenAddress::Abstract(_))
    {
        return Err(format!(
            "{v:?}: ListenSequentialPacket= takes a unix socket (/path or @name)"
        ));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_forms() {
        let s = SocketType::Stream;
        assert_eq!(parse_listen(s, "8080"), Ok(ListenAddress::AnyPort(8080)));
        assert_eq!(
            parse_listen(s, "127.0.0.1:80").map(|a| a.to_string()),
            Ok("127.0.0.1:80".into())
        );
        assert_eq!(
            parse_listen(s, "[::1]:53").map(|a| a.to_string()),
            Ok("[::1]:53".into())
        );
        assert_eq!(
            parse_listen(s, "/run/x.sock"),
            Ok(ListenAddress::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            parse_listen(s, "@abs"),
            Ok(ListenAddress::Abstract("abs".into()))
        );
        for bad in [
            "0",
            "70000",
            "host:80",
            "1.2.3.4",
            "[::1]",
            "vsock:2:80",
            "@",
            "/a/../b",
            "[fe80::1%eth0]:80",
        ] {
            assert!(parse_listen(s, bad).is_err(), "{bad} accepted");
        }
        assert!(parse_listen(SocketType::SequentialPacket, "80").is_err());
        assert!(parse_listen(SocketType::SequentialPacket, "/run/p").is_ok());
    }
}
