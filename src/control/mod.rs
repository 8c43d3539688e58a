//! The control socket: `<state-dir>/gitproc.sock`, JSON lines, one request and one reply per
//! line. [`protocol`] defines the messages, [`server`] accepts and checks peers, [`client`]
//! is what the CLI uses.

pub mod client;
pub mod protocol;
pub mod server;

/// The socket's file name inside the state directory.
pub const SOCKET_NAME: &str = "gitproc.sock";
