//! systemd socket activation: listening sockets passed by the service
//! manager instead of bound by us, so the server can serve port 6667 or 443
//! without privileges, and restart without closing the listen queue
//! (connections wait in the kernel's backlog meanwhile).
//!
//! The protocol is `sd_listen_fds(3)`'s: `LISTEN_FDS=N` sockets are open at
//! descriptors 3 to 3+N-1, meant for the process whose pid is `LISTEN_PID`
//! (a variable inherited by some other process is ignored, as
//! `sd_listen_fds` does), optionally named by `LISTEN_FDNAMES`
//! (colon-separated, `FileDescriptorName=` in the `.socket` unit).
//!
//! How the sockets map to loopchat's listeners:
//!
//! - A socket named `irc` is an IRC-only listener, as `--irc-listen`.
//! - A socket named `tls` is a TLS listener, as `--tls-listen` (it needs
//!   `--tls-cert` and `--tls-key`).
//! - The first other socket is the main port (every transport, sniffed),
//!   replacing `--listen`. Its name does not matter (`main` in
//!   dist/loopchat.socket; systemd's default is the unit's name).
//! - Without names, the first socket is the main port and the others are
//!   IRC-only listeners.
//! - A second socket not named `irc` or `tls`, or a socket that
//!   is not a listening TCP socket, stops the server at start-up with the
//!   reason.
//!
//! The environment is only read, not cleared: the server starts no other
//! program that could inherit it.

use std::os::unix::io::{FromRawFd, RawFd};

use mio::net::TcpListener;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// The sockets passed by systemd, as loopchat's listeners.
#[derive(Debug)]
pub struct Activated {
    pub main: TcpListener,
    pub irc: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
}

/// What a passed socket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The main port (`--listen`).
    Main,
    /// IRC only (`--irc-listen`).
    Irc,
    /// TLS (`--tls-listen`).
    Tls,
}

/// What the environment says: for each passed descriptor, what it is
/// for; the main one first. `None` if no sockets were
/// passed to this process. Pure: the caller passes the variables and pid.
pub fn plan(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    names: Option<&str>,
    my_pid: u32,
) -> Result<Option<Vec<(RawFd, Kind)>>, String> {
    let Some(fds) = listen_fds else {
        return Ok(None);
    };
    // sd_listen_fds: the variables must be meant for this very process.
    match listen_pid.map(|p| p.trim().parse::<u32>()) {
        Some(Ok(pid)) if pid == my_pid => {}
        _ => return Ok(None),
    }
    let n: RawFd = fds
        .trim()
        .parse()
        .ok()
        .filter(|&n| (0..=1024).contains(&n))
        .ok_or_else(|| format!("LISTEN_FDS={fds:?} is not a number of sockets"))?;
    if n == 0 {
        return Ok(None);
    }
    let names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
    if !names.is_empty() && names.len() != n as usize {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets but LISTEN_FDS={n}",
            names.len()
        ));
    }
    let mut main = None;
    let mut others = Vec::new();
    for i in 0..n {
        let fd = LISTEN_FDS_START + i;
        let kind = match names.get(i as usize) {
            Some(&"irc") => Kind::Irc,
            Some(&"tls") => Kind::Tls,
            Some(_) => Kind::Main,
            None if main.is_some() => Kind::Irc,
            None => Kind::Main,
        };
        if kind != Kind::Main {
            others.push((fd, kind));
        } else if main.is_none() {
            main = Some(fd);
        } else {
            return Err(format!(
                "socket activation: two main sockets (descriptors {} and {fd}); name extra ones `irc` or `tls`",
                main.unwrap_or_default()
            ));
        }
    }
    let Some(main) = main else {
        return Err("socket activation: every socket is named `irc` or `tls`; no main port".into());
    };
    let mut plan = vec![(main, Kind::Main)];
    plan.extend(others);
    Ok(Some(plan))
}

/// The listeners systemd passed this process, if any, checked and made
/// non-blocking. Called once, at start-up.
pub fn listeners() -> Result<Option<Activated>, String> {
    let var = |k: &str| std::env::var(k).ok();
    let Some(plan) = plan(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(None);
    };
    let mut main = None;
    let (mut irc, mut tls) = (Vec::new(), Vec::new());
    for (fd, kind) in plan {
        let listener = adopt(fd)?;
        match kind {
            Kind::Main => main = Some(listener),
            Kind::Irc => irc.push(listener),
            Kind::Tls => tls.push(listener),
        }
    }
    let main = main.ok_or("socket activation: no main port")?;
    Ok(Some(Activated { main, irc, tls }))
}

/// Takes ownership of the passed descriptor `fd` after checking that it
/// is a listening TCP socket.
fn adopt(fd: RawFd) -> Result<TcpListener, String> {
    use socket2::{Domain, Socket, Type};
    // SAFETY: fstat on a number only reads; it fails on a closed one.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(format!(
            "socket activation: descriptor {fd} is not a socket"
        ));
    }
    // SAFETY: LISTEN_FDS hands descriptors 3.. to this process, and
    // nothing else in it owns them; we take each once.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let bad = |why: &str| format!("socket activation: descriptor {fd} is {why}");
    let domain = socket
        .local_addr()
        .map_err(|e| bad(&e.to_string()))?
        .domain();
    if domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(bad(
            "not a TCP socket (ListenStream= takes an address and port)",
        ));
    }
    if socket.r#type().map_err(|e| bad(&e.to_string()))? != Type::STREAM {
        return Err(bad("not a stream socket"));
    }
    if !socket.is_listener().map_err(|e| bad(&e.to_string()))? {
        return Err(bad("not listening"));
    }
    socket
        .set_cloexec(true)
        .and_then(|()| socket.set_nonblocking(true))
        .map_err(|e| bad(&e.to_string()))?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_maps_to_listeners() {
        let p = |pid, fds, names| plan(pid, fds, names, 42);
        assert_eq!(p(None, None, None), Ok(None));
        // Meant for another process, or without a pid: not ours.
        assert_eq!(p(Some("41"), Some("1"), None), Ok(None));
        assert_eq!(p(None, Some("1"), None), Ok(None));
        assert_eq!(p(Some("42"), Some("0"), None), Ok(None));
        use Kind::{Irc, Main, Tls};
        assert_eq!(p(Some("42"), Some("1"), None), Ok(Some(vec![(3, Main)])));
        assert_eq!(
            p(Some("42"), Some("3"), None),
            Ok(Some(vec![(3, Main), (4, Irc), (5, Irc)]))
        );
        assert_eq!(
            p(Some("42"), Some("3"), Some("irc:main:tls")),
            Ok(Some(vec![(4, Main), (3, Irc), (5, Tls)]))
        );
        assert_eq!(
            p(Some("42"), Some("1"), Some("loopchat.socket")),
            Ok(Some(vec![(3, Main)]))
        );
        assert!(p(Some("42"), Some("1"), Some("tls")).is_err());
        assert!(p(Some("42"), Some("2"), Some("main:web")).is_err());
        assert!(p(Some("42"), Some("1"), Some("irc")).is_err());
        assert!(p(Some("42"), Some("2"), Some("main")).is_err());
        assert!(p(Some("42"), Some("x"), None).is_err());
    }
}
