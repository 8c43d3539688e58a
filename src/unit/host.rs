//! What the loader may know about the machine, as an injected [`Host`]: the unit parser reads
//! no file and asks no system call itself, so the same tree loads the same way everywhere
//! the host answers the same.
//!
//! Two hosts exist:
//! - `crate::runtime::unit_host::RealHost` (outside `unit`, the only place with the I/O): the daemon's.
//!   Absolute `EnvironmentFile=` paths are read from this machine at load time and their
//!   bytes are part of the content hash; specifiers such as `%H`, `%m`, `%o` are this
//!   machine's.
//! - [`FixedHost`]: `gitproc check`, `gitproc plan`, [`load_tree`](super::load_tree), tests
//!   and benches. Host specifiers expand to [`SpecifierContext::default`] (a root manager on
//!   `localhost`, zero machine and boot ids, empty os-release fields). Absolute
//!   `EnvironmentFile=` paths are *not read* ([`Lookup::NotRead`]): they are host
//!   configuration that the repository cannot vouch for, so they give no diagnostic
//!   (neither "missing" nor "found"), contribute no variables (`$VAR`s from them expand to
//!   empty, as they would with an absent file) and enter the content hash by path only. A
//!   `check` or `plan` result therefore never depends on the machine it runs on; its content
//!   hash differs from the daemon's only for units with absolute environment files.
//!   Relative (in-tree) files are read as always: they are part of what is checked.

use super::specifier::SpecifierContext;

/// The answer for one file the loader asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The file's bytes.
    Found(Vec<u8>),
    /// Looked for, not there (or unreadable).
    Missing,
    /// Deliberately not looked for (a host file under [`FixedHost`]).
    NotRead,
}

impl From<Option<Vec<u8>>> for Lookup {
    fn from(o: Option<Vec<u8>>) -> Self {
        match o {
            Some(b) => Lookup::Found(b),
            None => Lookup::Missing,
        }
    }
}

/// The machine as the loader sees it.
pub trait Host {
    /// An absolute file named by a unit (`EnvironmentFile=/etc/default/ssh`).
    fn read_file(&self, path: &str) -> Lookup;

    /// The facts `%H`, `%m`, `%u`, `%t`, ... expand to.
    fn specifier_context(&self) -> SpecifierContext;
}

/// A host that answers the same on every machine: see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedHost;

impl Host for FixedHost {
    fn read_file(&self, _path: &str) -> Lookup {
        Lookup::NotRead
    }

    fn specifier_context(&self) -> SpecifierContext {
        SpecifierContext::default()
    }
}
