//! The full-screen interface's event loop: terminal setup and restore, keys,
//! signals, and the connection, all in one `mio::Poll` on one thread.
//!
//! Keys: fd 0 is registered with the poll; when it is readable the loop
//! reads it until drained and decodes the bytes itself ([`super::keys`]), so
//! crossterm is used only for raw mode, the alternate screen and output, and
//! never reads (its reader keeps its own epoll, and its `event-stream`
//! feature, which would start a thread, stays off). SIGWINCH is a signal
//! source in the same poll, so a resize redraws at once.
//!
//! The terminal is restored on every way out: quit, lost connection without
//! reconnect, a signal, and a panic (a hook restores it first; with
//! `panic = "abort"` the hook still runs).

use std::io::{self, Stdout};
use std::time::{Duration, Instant};

use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGWINCH};
use signal_hook_mio::v1_0::Signals;

use super::connection::{ConnEvent, ConnStatus, Connection, SOCKET};
use super::keys::{Key, KeyDecoder};
use super::session::{Phase, SessionEvent};
use super::text::{clock_hhmm, display_line};
use super::ui::{App, PasswordEntry, draw};
use super::{
    ClientCommand, Options, classify_input, client_help, initial_password, is_password_quit,
    nick_from_input,
};

const STDIN: Token = Token(1);
const SIGNALS: Token = Token(2);
/// How long to wait, after sending `/quit`, for the server to close.
const QUIT_WAIT: Duration = Duration::from_secs(2);

type Term = Terminal<CrosstermBackend<Stdout>>;

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
}

/// Runs the full-screen client; returns the exit status.
pub fn run(opts: &Options) -> i32 {
    // Read before the screen is taken over, so an error is seen.
    let password = match initial_password(opts) {
        Ok(p) => p,
        Err(e) => {
            super::note(format_args!("loopchat: {e}"));
            return 1;
        }
    };
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
    let result = enable_raw_mode()
        .and_then(|()| execute!(io::stdout(), EnterAlternateScreen))
        .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())))
        .and_then(|mut term| {
            Tui::new(opts).and_then(|mut t| {
                t.app.session.set_password(password);
                t.run(&mut term)
            })
        });
    restore_terminal();
    match result {
        Ok((code, message)) => {
            if let Some(m) = message {
                super::note(format_args!("loopchat: {m}"));
            }
            code
        }
        Err(e) => {
            super::note(format_args!("loopchat: {e}"));
            1
        }
    }
}

struct Tui {
    poll: Poll,
    signals: Signals,
    conn: Connection,
    app: App,
    quit_deadline: Option<Instant>,
    /// Set to leave the loop: exit status and a message for after restore.
    exit: Option<(i32, Option<String>)>,
    clear_screen: bool,
    keys: KeyDecoder,
}

impl Tui {
    fn new(opts: &Options) -> io::Result<Tui> {
        let poll = Poll::new()?;
        poll.registry().register(
            &mut SourceFd(&libc::STDIN_FILENO),
            STDIN,
            Interest::READABLE,
        )?;
        let mut signals = Signals::new([SIGWINCH, SIGTERM, SIGHUP, SIGINT])?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        Ok(Tui {
            poll,
            signals,
            conn: Connection::new(&opts.addr, opts.reconnect.unwrap_or(true)),
            app: App::new(&opts.addr, opts.nick.clone()),
            quit_deadline: None,
            exit: None,
            clear_screen: false,
            keys: KeyDecoder::new(),
        })
    }

    fn run(&mut self, term: &mut Term) -> io::Result<(i32, Option<String>)> {
        let mut events = Events::with_capacity(64);
        let mut conn_events = Vec::new();
        // Keys typed before the registration raised no edge: read them now.
        self.keys()?;
        loop {
            self.handle(&mut conn_events);
            if let Some(exit) = self.exit.take() {
                return Ok(exit);
            }
            self.app.conn_label = self.conn_label(Instant::now());
            if std::mem::take(&mut self.clear_screen) {
                term.clear()?;
            }
            term.draw(|f| draw(f, &mut self.app))?;
            let now = Instant::now();
            let mut timeout = self.conn.timeout(now);
            if let Some(d) = self.quit_deadline {
                timeout = Some(min_opt(timeout, d.saturating_duration_since(now)));
            }
            if let ConnStatus::Waiting(_) = self.conn.status() {
                // Refresh the "retrying in N s" countdown.
                timeout = Some(min_opt(timeout, Duration::from_secs(1)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    SOCKET => self
                        .conn
                        .on_event(self.poll.registry(), ev, &mut conn_events),
                    STDIN => self.keys()?,
                    SIGNALS => self.signals(&mut conn_events),
                    _ => {}
                }
            }
            let now = Instant::now();
            self.conn
                .on_timer(self.poll.registry(), now, &mut conn_events);
            if self.quit_deadline.is_some_and(|d| d <= now) {
                self.exit = Some((0, None));
            }
        }
    }

    fn conn_label(&self, now: Instant) -> String {
        match self.conn.status() {
            ConnStatus::Waiting(at) => {
                let secs = at.saturating_duration_since(now).as_secs_f64().ceil();
                format!("disconnected, retrying in {secs} s")
            }
            ConnStatus::Connecting => "connecting".into(),
            ConnStatus::Connected => match self.app.session.phase() {
                Phase::Joined => "connected".into(),
                Phase::NeedPassword(_) => "connected, password wanted".into(),
                Phase::PasswordSent(_) => "connected, checking the password".into(),
                _ => "connected, joining".into(),
            },
            ConnStatus::Closed => "closed".into(),
        }
    }

    /// SIGWINCH needs nothing more than waking up: every turn of the loop
    /// redraws, and the draw asks the terminal for its size. The others
    /// leave as /quit does.
    fn signals(&mut self, conn_events: &mut Vec<ConnEvent>) {
        let pending: Vec<i32> = self.signals.pending().collect();
        if pending.iter().any(|&sig| sig != SIGWINCH) {
            self.quit("/quit", conn_events);
        }
    }

    /// Reads fd 0 until it has nothing more, then acts on the keys.
    fn keys(&mut self) -> io::Result<()> {
        let mut keys = Vec::new();
        let mut buf = [0u8; 4096];
        let mut gone = false;
        loop {
            let mut p = libc::pollfd {
                fd: libc::STDIN_FILENO,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout.
            if unsafe { libc::poll(&mut p, 1, 0) } <= 0 || p.revents == 0 {
                break;
            }
            // SAFETY: reading into a buffer we own, of the length given.
            let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                let n = n as usize;
                self.keys.feed(&buf[..n], n == buf.len(), &mut keys);
                continue;
            }
            let err = io::Error::last_os_error();
            if n < 0 && err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n < 0 && err.kind() == io::ErrorKind::WouldBlock {
                break;
            }
            // The terminal is gone (hang-up) or unreadable.
            gone = true;
            break;
        }
        let mut conn_events = Vec::new();
        for k in keys {
            self.key(k, &mut conn_events);
        }
        if gone {
            self.quit("/quit", &mut conn_events);
        }
        self.handle(&mut conn_events);
        Ok(())
    }

    fn key(&mut self, k: Key, conn_events: &mut Vec<ConnEvent>) {
        let masked = self.app.masked();
        let input = &mut self.app.input;
        match k {
            Key::Ctrl('c') => self.quit("/quit", conn_events),
            Key::Ctrl('d') => {
                if input.is_empty() {
                    self.quit("/quit", conn_events);
                } else {
                    input.delete();
                }
            }
            Key::Ctrl('w') => input.delete_word(),
            Key::Ctrl('u') => input.delete_to_start(),
            Key::Ctrl('a') => input.home(),
            Key::Ctrl('e') => input.end(),
            Key::Ctrl('l') => self.clear_screen = true,
            Key::Char(c) => input.insert(c),
            Key::Left => input.left(),
            Key::Right => input.right(),
            Key::Home => input.home(),
            Key::End => input.end(),
            Key::Backspace => input.backspace(),
            Key::Delete => input.delete(),
            // No history while a password is typed: Enter would send a
            // recalled chat line to the server as a password.
            Key::Up | Key::Down if masked => {}
            Key::Up => input.history_prev(),
            Key::Down => input.history_next(),
            Key::PageUp => self.app.page_up(),
            Key::PageDown => self.app.page_down(),
            Key::Enter => self.enter(conn_events),
            _ => {}
        }
    }

    fn enter(&mut self, conn_events: &mut Vec<ConnEvent>) {
        if self.app.session.wants_password() {
            // Not classified as chat: `/clear` or `/help` can be passwords.
            match self.app.enter_password() {
                PasswordEntry::Nothing => {}
                PasswordEntry::Quit(line) => self.quit(&line, conn_events),
                PasswordEntry::Send(pw) => {
                    self.conn.send_line(self.poll.registry(), &pw, conn_events);
                }
            }
            return;
        }
        let now = clock_hhmm();
        if self.app.masked() {
            // Being checked: the line may be the next attempt; it stays (out
            // of the history) until the server answers.
            if is_password_quit(&self.app.input.text()) {
                let line = self.app.input.take();
                self.quit(&line, conn_events);
            } else {
                self.app
                    .note(&now, "waiting for the server to check the password");
            }
            return;
        }
        let text = self.app.input.text();
        let cmd = classify_input(&text);
        match (self.app.session.phase().clone(), cmd) {
            (_, ClientCommand::Empty) => {}
            (_, ClientCommand::Quit) => {
                self.app.input.submit();
                self.quit(&text, conn_events);
            }
            (_, ClientCommand::Clear) => {
                self.app.input.submit();
                self.app.clear();
            }
            (Phase::NeedNick, _) => {
                let line = self.app.input.submit();
                let nick = nick_from_input(&line).to_string();
                self.app.session.nick_chosen(&nick);
                self.conn
                    .send_line(self.poll.registry(), &nick, conn_events);
            }
            (Phase::Joined, cmd) => {
                self.app.input.submit();
                self.app.follow();
                if cmd == ClientCommand::Help {
                    for l in client_help() {
                        self.app.note(&now, l);
                    }
                }
                if self
                    .conn
                    .send_line(self.poll.registry(), &text, conn_events)
                {
                    self.app.own_line(&now, &text);
                }
            }
            // Not in the room: keep the line in the editor for later.
            (Phase::NickSent(_), _) => self
                .app
                .note(&now, "waiting for the server to accept the nickname"),
            // Handled above, before the line is classified.
            (Phase::NeedPassword(_) | Phase::PasswordSent(_), _) => {}
            (Phase::Offline, _) => self.app.note(
                &now,
                "not connected; the line was kept, send it once connected",
            ),
        }
    }

    /// Sends the quit line (if connected) and leaves once the server closes,
    /// or after [`QUIT_WAIT`].
    fn quit(&mut self, line: &str, conn_events: &mut Vec<ConnEvent>) {
        self.conn.set_reconnect(false);
        if self.quit_deadline.is_some()
            || !self.conn.send_line(self.poll.registry(), line, conn_events)
        {
            self.exit = Some((0, None));
            return;
        }
        self.quit_deadline = Some(Instant::now() + QUIT_WAIT);
    }

    fn handle(&mut self, conn_events: &mut Vec<ConnEvent>) {
        while !conn_events.is_empty() {
            let batch = std::mem::take(conn_events);
            for ev in batch {
                let now = clock_hhmm();
                match ev {
                    ConnEvent::Connected(addr) => {
                        self.app.note(&now, &format!("connected to {addr}"));
                        match self.app.session.on_connected() {
                            Some(nick) => {
                                self.conn
                                    .send_line(self.poll.registry(), &nick, conn_events);
                            }
                            None => self.app.note(&now, "type a nickname and press Enter"),
                        }
                    }
                    ConnEvent::Line(line) => {
                        let mut text = String::from_utf8_lossy(&line.bytes).into_owned();
                        if line.truncated {
                            text.push_str(" [line truncated]");
                        }
                        match self.app.server_line(&now, &text) {
                            Some(SessionEvent::Joined) => {
                                self.conn.reset_backoff();
                                self.app.joined(&now);
                            }
                            Some(SessionEvent::SendPassword(pw)) => {
                                self.app.note(&now, "logging in with the saved password");
                                self.conn
                                    .send_line(self.poll.registry(), pw.expose(), conn_events);
                            }
                            Some(SessionEvent::PasswordWanted(name)) => {
                                self.app.password_wanted(&now, &name);
                            }
                            Some(SessionEvent::PasswordRefused {
                                again, automatic, ..
                            }) => {
                                let what = match (again, automatic) {
                                    (true, true) => {
                                        "the saved password was refused; type the password and press Enter"
                                    }
                                    (true, false) => "type the password again and press Enter",
                                    (false, _) => "the server ends the login",
                                };
                                self.app.note(&now, what);
                            }
                            // Answered for the user, so an idle session is
                            // not timed out.
                            Some(SessionEvent::Ping) => {
                                self.conn
                                    .send_line(self.poll.registry(), "/pong", conn_events);
                            }
                            // Back in the default room after a
                            // reconnection: return to the room we were in.
                            Some(SessionEvent::InRoom(_)) => {
                                if let Some(room) = self.app.session.take_room_to_rejoin() {
                                    self.app.note(&now, &format!("rejoining {room}"));
                                    self.conn.send_line(
                                        self.poll.registry(),
                                        &format!("/join {room}"),
                                        conn_events,
                                    );
                                }
                            }
                            Some(SessionEvent::Refused(_)) => self
                                .app
                                .note(&now, "nickname refused; type another and press Enter"),
                            _ => {}
                        }
                    }
                    ConnEvent::Lost {
                        reason,
                        retry_in,
                        was_connected,
                    } => {
                        self.app.disconnected();
                        if self.quit_deadline.is_some() {
                            self.exit = Some((0, None));
                            continue;
                        }
                        let reason = display_line(reason.as_bytes());
                        match retry_in {
                            Some(d) => {
                                let what = if was_connected {
                                    "connection lost"
                                } else {
                                    "cannot connect"
                                };
                                self.app.note(
                                    &now,
                                    &format!("{what}: {reason}; retrying in {} s", d.as_secs()),
                                );
                            }
                            None => self.exit = Some((1, Some(reason))),
                        }
                    }
                }
            }
        }
    }
}

fn min_opt(a: Option<Duration>, b: Duration) -> Duration {
    a.map_or(b, |a| a.min(b))
}
