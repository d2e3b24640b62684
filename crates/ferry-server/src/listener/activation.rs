//! Socket activation: listening sockets handed to Ferry by whoever started it, in
//! systemd's `LISTEN_FDS` protocol (`sd_listen_fds(3)`), instead of bound from `listen`
//! and `admin.listen`.
//!
//! Why: the supervisor (systemd, or a test) binds the socket before Ferry starts, so it
//! knows the address to write into Ferry's configuration (`issuer`, the DPoP `htu`) and
//! connections queue in the socket while Ferry starts or restarts, and Ferry itself
//! never needs the right to bind a privileged port.
//!
//! The protocol: the sockets are file descriptors 3, 4, … (`LISTEN_FDS` of them);
//! `LISTEN_PID` names the process they are meant for (when set and not this process,
//! they are ignored: the variables leaked from a parent); `LISTEN_FDNAMES` optionally
//! names them, colon-separated. The socket named `admin` (systemd:
//! `FileDescriptorName=admin`) becomes the admin listener; exactly one other socket,
//! whatever its name, becomes the public listener.
//!
//! [`Activation::from_env`] reads and clears the variables, so it must run before any
//! other thread exists (the binary's `main` calls it before starting the runtime).

use std::net::TcpListener;

use listenfd::ListenFd;

/// The name in `LISTEN_FDNAMES` that marks the admin listener's socket.
pub const ADMIN_NAME: &str = "admin";

/// The first inherited file descriptor (`SD_LISTEN_FDS_START`).
const FIRST_FD: usize = 3;

/// Why the inherited sockets cannot be used; Ferry refuses to start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    #[error("socket activation: LISTEN_FDS is not a number of file descriptors")]
    Malformed,
    /// A passed file descriptor is not a TCP socket.
    #[error("socket activation: file descriptor {fd} ({name}): {source}")]
    NotTcp {
        /// The descriptor.
        fd: usize,
        /// Its name in `LISTEN_FDNAMES`, or `unnamed`.
        name: String,
        /// What the check found.
        source: std::io::Error,
    },
    /// More than one socket for one listener.
    #[error(
        "socket activation: more than one socket for the {0} listener (LISTEN_FDNAMES names the admin one `admin`; systemd: FileDescriptorName=admin)"
    )]
    Ambiguous(&'static str),
}

/// The protocol's variables, read at start.
pub struct Activation {
    fds: ListenFd,
    names: Vec<String>,
    /// Sockets were offered but are not for this process: said once logging runs.
    ignored: Option<String>,
    malformed: bool,
}

impl std::fmt::Debug for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activation")
            .field("fds", &self.fds.len())
            .field("names", &self.names)
            .field("ignored", &self.ignored)
            .finish_non_exhaustive()
    }
}

/// The sockets Ferry was given, by listener.
#[derive(Debug, Default)]
pub struct Inherited {
    /// Replaces binding `listen`.
    pub public: Option<TcpListener>,
    /// Replaces binding `admin.listen`.
    pub admin: Option<TcpListener>,
}

impl Activation {
    /// Reads the protocol's variables and removes `LISTEN_FDS` and `LISTEN_PID` from the
    /// environment (so a child never takes them for its own). Call it before any other
    /// thread starts.
    pub fn from_env() -> Self {
        Self::read(
            std::env::var("LISTEN_FDS").ok(),
            std::env::var("LISTEN_PID").ok(),
            std::env::var("LISTEN_FDNAMES").ok(),
            ListenFd::from_env(),
        )
    }

    fn read(
        count: Option<String>,
        pid: Option<String>,
        names: Option<String>,
        fds: ListenFd,
    ) -> Self {
        let offered = count.as_deref().map(|c| c.trim().parse::<usize>());
        let malformed = matches!(offered, Some(Err(_)));
        let ignored = match (offered, pid) {
            (Some(Ok(n)), Some(pid)) if n > 0 && fds.len() == 0 => Some(format!(
                "LISTEN_FDS offers {n} socket(s) to process {pid}, not to this one ({}): they are ignored and `listen` is bound",
                std::process::id()
            )),
            _ => None,
        };
        Self {
            fds,
            names: names
                .map(|n| n.split(':').map(str::to_owned).collect())
                .unwrap_or_default(),
            ignored,
            malformed,
        }
    }

    /// Why sockets offered in the environment were ignored, for a warning.
    pub fn ignored(&self) -> Option<&str> {
        self.ignored.as_deref()
    }

    /// Takes the sockets, checking each is a TCP socket and assigning it to a listener
    /// by its name.
    pub fn take(mut self) -> Result<Inherited, ActivationError> {
        if self.malformed {
            return Err(ActivationError::Malformed);
        }
        let mut inherited = Inherited::default();
        for index in 0..self.fds.len() {
            let name = self
                .names
                .get(index)
                .filter(|n| !n.is_empty())
                .cloned()
                .unwrap_or_else(|| "unnamed".to_owned());
            let socket = match self.fds.take_tcp_listener(index) {
                Ok(Some(socket)) => socket,
                Ok(None) => continue,
                Err(source) => {
                    return Err(ActivationError::NotTcp {
                        fd: FIRST_FD + index,
                        name,
                        source,
                    });
                }
            };
            let (slot, which) = if name == ADMIN_NAME {
                (&mut inherited.admin, "admin")
            } else {
                (&mut inherited.public, "public")
            };
            if slot.replace(socket).is_some() {
                return Err(ActivationError::Ambiguous(which));
            }
        }
        Ok(inherited)
    }
}

/// `inherited` as a Tokio listener, or else a new socket bound to `addr`.
pub async fn bind_or_inherit(
    addr: &str,
    inherited: Option<TcpListener>,
) -> std::io::Result<tokio::net::TcpListener> {
    match inherited {
        Some(socket) => {
            tracing::info!(
                "serving on the socket the service manager passed (LISTEN_FDS), not on {addr}"
            );
            socket.set_nonblocking(true)?;
            tokio::net::TcpListener::from_std(socket)
        }
        None => tokio::net::TcpListener::bind(addr).await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(count: Option<&str>, pid: Option<&str>, names: Option<&str>) -> Activation {
        Activation::read(
            count.map(str::to_owned),
            pid.map(str::to_owned),
            names.map(str::to_owned),
            ListenFd::empty(),
        )
    }

    #[test]
    fn nothing_offered_is_nothing_inherited() {
        let a = read(None, None, None);
        assert_eq!(a.ignored(), None);
        let got = a.take().unwrap();
        assert!(got.public.is_none() && got.admin.is_none());
    }

    #[test]
    fn sockets_for_another_process_are_ignored_with_a_reason() {
        // ListenFd::from_env found nothing for this process although two were offered.
        let a = read(Some("2"), Some("1"), None);
        let why = a.ignored().unwrap();
        assert!(why.contains("process 1, not to this one"), "{why}");
        assert!(a.take().unwrap().public.is_none());
        // Twin: none offered, nothing to say.
        assert_eq!(read(Some("0"), Some("1"), None).ignored(), None);
    }

    #[test]
    fn a_malformed_count_is_refused() {
        assert!(matches!(
            read(Some("two"), None, None).take(),
            Err(ActivationError::Malformed)
        ));
        assert!(read(Some("0"), None, None).take().is_ok());
    }
}
