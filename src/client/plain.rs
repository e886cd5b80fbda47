//! The line tool: stdin lines go to the server, server lines go to stdout.
//!
//! Used when stdin or stdout is not a terminal, or with `--plain`. It is
//! meant for scripts and bots, so it is careful about order and endings:
//! lines typed (or piped) before the nickname is accepted are held back,
//! except the password a server with accounts asks for, which is the next
//! line (unless `--password-file` gave it; a refused automatic password
//! ends the client rather than taking a chat line as the next attempt),
//! stdin is read only when its lines can be used (the pipe itself is the
//! buffer, so a fast producer cannot fill the client's memory), and at end
//! of input it sends `/quit`, waits a bounded time for the server to close,
//! and exits 0.
//!
//! Stdin may be a pipe, a terminal, `/dev/null` or a regular file. Regular
//! files (and `/dev/null`) cannot be registered with epoll (EPERM); they
//! never block, so they are simply read whenever their lines are wanted.
//! For the others a zero-timeout `poll(2)` before each `read` keeps the
//! descriptor's blocking mode untouched (it is shared with the parent
//! shell) while never blocking the loop.

use std::io::{self, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use super::connection::{ConnEvent, Connection, SOCKET};
use super::framing::LineReader;
use super::session::{Phase, Secret, Session, SessionEvent};
use super::text::display_line;
use super::{
    ClientCommand, Options, classify_input, client_help, initial_password, is_password_quit,
    nick_from_input, sendable_password,
};
use crate::protocol::ServerLine;

const STDIN: Token = Token(1);
const SIGNALS: Token = Token(2);
/// How long to wait, after `/quit`, for the server to close: this, plus
/// [`PER_LINE_WAIT`] for each line sent on this connection (up to
/// [`MAX_QUIT_WAIT`]), because a rate-limited server may still be working
/// through them, and extended whenever the server sends something.
const QUIT_WAIT: Duration = Duration::from_secs(5);
/// The server's default rate is 10 lines/s.
const PER_LINE_WAIT: Duration = Duration::from_millis(100);
const MAX_QUIT_WAIT: Duration = Duration::from_secs(120);
/// Stop taking stdin lines while this much is still unsent.
const MAX_QUEUED: usize = 64 * 1024;

/// Standard input, read without blocking the loop.
pub struct Stdin {
    fd: RawFd,
    /// A read may return data without blocking (readiness seen, or a file).
    ready: bool,
    /// Registered with epoll (false for regular files and /dev/null).
    registered: bool,
    eof: bool,
    lines: LineReader,
}

impl Stdin {
    pub fn new(poll: &Poll, fd: RawFd) -> Stdin {
        let mut s = Stdin {
            fd,
            ready: true,
            registered: false,
            eof: false,
            lines: LineReader::default(),
        };
        match poll
            .registry()
            .register(&mut SourceFd(&fd), STDIN, Interest::READABLE)
        {
            Ok(()) => s.registered = true,
            // Regular files and /dev/null: always "ready".
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            Err(_) => s.eof = true,
        }
        s
    }

    /// Without blocking, whether a read would return at once.
    fn readable_now(&self) -> bool {
        if !self.registered {
            return true;
        }
        let mut p = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents != 0
    }

    /// Reads one chunk if possible. Returns false when nothing could be read
    /// now (wait for readiness).
    fn fill(&mut self) -> bool {
        if self.eof || !self.ready {
            return false;
        }
        if !self.readable_now() {
            self.ready = false;
            return false;
        }
        let mut buf = [0u8; 16 * 1024];
        // SAFETY: reading into a buffer we own, of the length given.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            self.lines.push(&buf[..n as usize]);
            return true;
        }
        let err = io::Error::last_os_error();
        if n < 0 && err.kind() == io::ErrorKind::Interrupted {
            return true;
        }
        if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
            self.ready = false;
            return false;
        }
        // End of input, or an error that ends it.
        self.eof = true;
        if let Some(last) = self.lines.finish() {
            self.lines.push(&last.bytes);
            self.lines.push(b"\n");
        }
        true
    }
}

/// Runs the line tool until it ends; returns the exit status.
pub fn run(opts: &Options) -> i32 {
    let password = match initial_password(opts) {
        Ok(p) => p,
        Err(e) => {
            super::note(format_args!("loopchat: {e}"));
            return 1;
        }
    };
    match run_inner(opts, password) {
        Ok(code) => code,
        Err(e) => {
            super::note(format_args!("loopchat: {e}"));
            1
        }
    }
}

struct Plain {
    conn: Connection,
    session: Session,
    stdin: Stdin,
    stdin_is_tty: bool,
    out: io::BufWriter<io::Stdout>,
    /// Set once `/quit` is sent: exit 0 when the server closes or then.
    quit_deadline: Option<Instant>,
    /// Lines sent on the current connection.
    sent: u32,
    exit: Option<i32>,
    /// Terminal echo turned off while a password is typed on a terminal.
    echo: EchoOff,
}

/// Turns the terminal's echo off while a password is typed (`--plain` on a
/// terminal), and back on when done or dropped, so that no way out of the
/// loop leaves the terminal silent.
#[derive(Default)]
struct EchoOff {
    saved: Option<libc::termios>,
}

impl EchoOff {
    fn off(&mut self, fd: RawFd) {
        if self.saved.is_some() {
            return;
        }
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid descriptor and a termios we own.
        if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
            return;
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } == 0 {
            self.saved = Some(saved);
        }
    }

    fn on(&mut self, fd: RawFd) {
        if let Some(t) = self.saved.take() {
            // SAFETY: restores the settings read by tcgetattr.
            unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) };
        }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        self.on(libc::STDIN_FILENO);
    }
}

fn run_inner(opts: &Options, password: Option<Secret>) -> io::Result<i32> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(64);
    // Interrupted or terminated: leave as /quit does, so the others see a
    // proper goodbye. A second signal while leaving exits at once.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;
    let mut session = Session::new(opts.nick.clone());
    session.set_password(password);
    let mut p = Plain {
        conn: Connection::new(&opts.addr, opts.reconnect.unwrap_or(false)),
        session,
        stdin: Stdin::new(&poll, libc::STDIN_FILENO),
        // SAFETY: isatty only inspects the descriptor.
        stdin_is_tty: unsafe { libc::isatty(libc::STDIN_FILENO) } == 1,
        out: io::BufWriter::new(io::stdout()),
        quit_deadline: None,
        sent: 0,
        exit: None,
        echo: EchoOff::default(),
    };
    let mut conn_events = Vec::new();
    loop {
        p.pump_stdin(&poll, &mut conn_events);
        p.handle(&poll, &mut conn_events);
        if p.out.flush().is_err() {
            // Nobody reads our output any more: leave as at end of input.
            p.stdin.eof = true;
            p.stdin.lines.clear();
        }
        if let Some(code) = p.exit {
            return Ok(code);
        }
        let now = Instant::now();
        let mut timeout = p.conn.timeout(now);
        if let Some(d) = p.quit_deadline {
            let left = d.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if p.wants_stdin() && p.stdin.ready && !p.stdin.eof {
            timeout = Some(Duration::ZERO);
        }
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            match event.token() {
                SOCKET => p.conn.on_event(poll.registry(), event, &mut conn_events),
                STDIN => p.stdin.ready = true,
                SIGNALS if signals.pending().count() > 0 => {
                    if p.quit_deadline.is_some() {
                        p.exit = Some(0);
                    } else {
                        p.quit(&poll, "/quit", &mut conn_events);
                    }
                }
                _ => {}
            }
        }
        let now = Instant::now();
        p.conn.on_timer(poll.registry(), now, &mut conn_events);
        if p.quit_deadline.is_some_and(|d| d <= now) {
            p.exit = Some(0);
        }
    }
}

impl Plain {
    /// Whether a stdin line could be used now.
    fn wants_stdin(&self) -> bool {
        if self.quit_deadline.is_some() {
            return false;
        }
        match self.session.phase() {
            Phase::NeedNick | Phase::NeedPassword(_) => true,
            Phase::Joined => self.conn.queued() < MAX_QUEUED,
            _ => false,
        }
    }

    fn pump_stdin(&mut self, poll: &Poll, conn_events: &mut Vec<ConnEvent>) {
        while self.wants_stdin() && self.exit.is_none() {
            if let Some(line) = self.stdin.lines.next_line() {
                let text = String::from_utf8_lossy(&line.bytes).into_owned();
                self.input_line(poll, &text, conn_events);
                continue;
            }
            if self.stdin.eof {
                self.end_of_input(poll, conn_events);
                break;
            }
            if !self.stdin.fill() {
                break;
            }
        }
    }

    fn end_of_input(&mut self, poll: &Poll, conn_events: &mut Vec<ConnEvent>) {
        match self.session.phase() {
            Phase::Joined => self.quit(poll, "/quit", conn_events),
            Phase::NeedNick => {
                super::note(format_args!(
                    "loopchat: end of input before a nickname was accepted"
                ));
                self.conn.close(poll.registry());
                self.exit = Some(1);
            }
            Phase::NeedPassword(_) => {
                super::note(format_args!(
                    "loopchat: end of input before a password was accepted"
                ));
                self.conn.close(poll.registry());
                self.exit = Some(1);
            }
            _ => {}
        }
    }

    fn quit(&mut self, poll: &Poll, line: &str, conn_events: &mut Vec<ConnEvent>) {
        self.conn.set_reconnect(false);
        if !self.conn.send_line(poll.registry(), line, conn_events) {
            // Not connected: nobody to say goodbye to.
            self.exit = Some(0);
            return;
        }
        let wait = QUIT_WAIT + (PER_LINE_WAIT * self.sent).min(MAX_QUIT_WAIT);
        self.quit_deadline = Some(Instant::now() + wait);
    }

    fn input_line(&mut self, poll: &Poll, text: &str, conn_events: &mut Vec<ConnEvent>) {
        let reg = poll.registry();
        if self.session.wants_password() {
            if is_password_quit(text) {
                self.echo.on(self.stdin.fd);
                return self.quit(poll, text, conn_events);
            }
            // Sent exactly as typed: spaces are part of a password.
            if sendable_password(text) {
                self.echo.on(self.stdin.fd);
                if self.stdin_is_tty {
                    // The Enter the user typed was not echoed either.
                    super::note(format_args!(""));
                }
                self.session.password_sent(text);
                self.conn.send_line(reg, text, conn_events);
            }
            return;
        }
        if *self.session.phase() == Phase::NeedNick {
            let nick = text.trim();
            if nick.is_empty() {
                return;
            }
            if matches!(classify_input(nick), ClientCommand::Quit) {
                return self.quit(poll, nick, conn_events);
            }
            self.session.nick_chosen(nick_from_input(nick));
            self.conn.send_line(reg, nick, conn_events);
            return;
        }
        match classify_input(text) {
            ClientCommand::Empty | ClientCommand::Clear => {}
            ClientCommand::Quit => self.quit(poll, text, conn_events),
            ClientCommand::Help => {
                for l in client_help() {
                    super::note(format_args!("{l}"));
                }
                self.conn.send_line(reg, text, conn_events);
            }
            ClientCommand::Send => {
                self.conn.send_line(reg, text, conn_events);
                self.sent = self.sent.saturating_add(1);
            }
        }
    }

    /// Asks for the password on a terminal, with echo off while it is
    /// typed; piped input needs no prompt.
    fn prompt_password(&mut self, name: &str) {
        if self.stdin_is_tty {
            // The server's lines before the prompt, not after it.
            let _ = self.out.flush();
            let mut err = io::stderr().lock();
            let _ = write!(err, "Password for {name}: ");
            let _ = err.flush();
            self.echo.off(self.stdin.fd);
        }
    }

    fn prompt_nick(&mut self) {
        if self.stdin_is_tty {
            let _ = self.out.flush();
            let mut err = io::stderr().lock();
            let _ = write!(err, "Nickname: ");
            let _ = err.flush();
        }
    }

    fn handle(&mut self, poll: &Poll, conn_events: &mut Vec<ConnEvent>) {
        // Sending may produce events (a write error), hence the loop.
        while !conn_events.is_empty() {
            let batch = std::mem::take(conn_events);
            for ev in batch {
                match ev {
                    ConnEvent::Connected(_) => {
                        self.sent = 0;
                        match self.session.on_connected() {
                            Some(nick) => {
                                self.conn.send_line(poll.registry(), &nick, conn_events);
                            }
                            None => self.prompt_nick(),
                        }
                    }
                    ConnEvent::Line(line) => {
                        if let Some(d) = &mut self.quit_deadline {
                            // The server is alive and working: wait on.
                            *d = (*d).max(Instant::now() + QUIT_WAIT);
                        }
                        let shown = display_line(&line.bytes);
                        let _ = if line.truncated {
                            writeln!(self.out, "{shown} [line truncated]")
                        } else {
                            writeln!(self.out, "{shown}")
                        };
                        let text = String::from_utf8_lossy(&line.bytes);
                        match self.session.on_line(&ServerLine::parse(&text)) {
                            Some(SessionEvent::Joined) => self.conn.reset_backoff(),
                            Some(SessionEvent::Ping) => {
                                self.conn.send_line(poll.registry(), "/pong", conn_events);
                            }
                            Some(SessionEvent::Refused(reason)) => {
                                super::note(format_args!(
                                    "loopchat: nickname refused: {}",
                                    display_line(reason.as_bytes())
                                ));
                                self.prompt_nick();
                            }
                            Some(SessionEvent::SendPassword(pw)) => {
                                self.conn
                                    .send_line(poll.registry(), pw.expose(), conn_events);
                            }
                            Some(SessionEvent::PasswordWanted(name)) => {
                                self.prompt_password(&name);
                            }
                            Some(SessionEvent::PasswordRefused {
                                reason,
                                again,
                                automatic,
                            }) => {
                                // After the server's line, on a terminal.
                                let _ = self.out.flush();
                                super::note(format_args!(
                                    "loopchat: password refused: {}",
                                    display_line(reason.as_bytes())
                                ));
                                if again && automatic {
                                    // The next stdin line is likely chat,
                                    // not a password: stop rather than
                                    // send it as one.
                                    super::note(format_args!(
                                        "loopchat: the saved password (--password-file or the \
                                         one accepted before reconnecting) was refused"
                                    ));
                                    self.conn.close(poll.registry());
                                    self.exit = Some(1);
                                } else if again {
                                    if let Some(name) = self.session.nick().map(str::to_string) {
                                        self.prompt_password(&name);
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    ConnEvent::Lost {
                        reason, retry_in, ..
                    } => {
                        self.session.on_disconnected();
                        self.echo.on(self.stdin.fd);
                        if self.quit_deadline.is_some() {
                            self.exit = Some(0);
                            continue;
                        }
                        let _ = self.out.flush();
                        match retry_in {
                            Some(d) => super::note(format_args!(
                                "loopchat: {reason}; retrying in {} s",
                                d.as_secs()
                            )),
                            None => {
                                super::note(format_args!("loopchat: {reason}"));
                                self.exit = Some(1);
                            }
                        }
                    }
                }
            }
        }
    }
}
