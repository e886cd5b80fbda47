//! Client sockets and the precise timer the poll loop sleeps on.
//!
//! Connections are made the way mio's documentation describes for a
//! non-blocking connect: the socket is created non-blocking, `connect`
//! returns at once (EINPROGRESS), the stream is registered for WRITABLE, and
//! when that fires `take_error()` and `peer_addr()` say whether it worked.
//! mio 1.x has no `TcpSocket`, so socket2 builds the socket (to set
//! TCP_NODELAY and bind a chosen source address before connecting) and
//! `mio::net::TcpStream::from_std` takes it over.
//!
//! `epoll_wait` only sleeps in whole milliseconds, which would add up to 1 ms
//! of bench-made delay to every scheduled send; a timerfd registered in the
//! same poll wakes the loop with microsecond precision instead.

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Starts a non-blocking connect to `addr`, bound to `source` if given.
pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        // Without this, bind() picks the local port before the destination
        // is known, and the ports of one source address run out at ~28k.
        let one: libc::c_int = 1;
        // SAFETY: valid fd and a pointer to a c_int of the given size.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(sock.into()))
}

/// The outcome of a WRITABLE (or error) event on a connecting socket.
pub enum ConnectState {
    Connected,
    /// A spurious wake-up: still connecting.
    Pending,
    Failed(io::Error),
}

pub fn check_connect(stream: &TcpStream) -> ConnectState {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return ConnectState::Failed(e),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => ConnectState::Connected,
        Err(e) if e.kind() == io::ErrorKind::NotConnected => ConnectState::Pending,
        Err(e) => ConnectState::Failed(e),
    }
}

/// A one-shot timerfd in the poll, re-armed before each wait.
pub struct Timer {
    fd: OwnedFd,
    armed_for: Option<Instant>,
}

impl Timer {
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        // SAFETY: plain syscall; the fd is checked and then owned.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer {
            fd,
            armed_for: None,
        })
    }

    /// Makes the poll wake at `at` (or at once if it has passed).
    pub fn arm(&mut self, at: Instant, now: Instant) {
        if self.armed_for == Some(at) {
            return;
        }
        let d = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and itimerspec.
        unsafe {
            libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut());
        }
        self.armed_for = Some(at);
    }

    /// Consumes an expiry (after its event) so the fd can fire again.
    pub fn clear(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into an 8-byte buffer.
        unsafe {
            libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8);
        }
        self.armed_for = None;
    }
}
