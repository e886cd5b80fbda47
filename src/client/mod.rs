//! The terminal client, `loopchat`.
//!
//! One thread, one `mio::Poll`: the socket, the terminal (stdin, registered
//! by descriptor) and the signals are all sources of the same poll, and the
//! reconnect timer is its timeout. Two front ends share the connection and
//! session logic:
//!
//! - [`plain`]: a line tool for pipes and scripts (stdin or stdout not a
//!   terminal, or `--plain`);
//! - `tui` (cargo feature `tui`, on by default): the full-screen interface,
//!   drawn with ratatui through crossterm; keys are read from fd 0 when the
//!   poll says it is readable and decoded by [`keys`] (crossterm's reader,
//!   with its own epoll, is never used).
//!
//! The state the full-screen interface draws ([`scrollback`], [`input`],
//! [`session`]) is free of sockets and terminals, so it is unit-tested.

pub mod connection;
pub mod framing;
pub mod input;
pub mod keys;
pub mod plain;
pub mod scrollback;
pub mod session;
pub mod text;
#[cfg(feature = "tui")]
pub mod tui;
#[cfg(feature = "tui")]
pub mod ui;

use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use session::Secret;

/// Where the client connects without an address argument.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";
/// The port used when the address has none.
pub const DEFAULT_PORT: u16 = 7878;

/// Command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `host:port` (host names are resolved at each connection attempt).
    pub addr: String,
    pub nick: Option<String>,
    /// Force the line tool even on a terminal.
    pub plain: bool,
    /// Reconnect after a lost connection; `None`: the mode's default (on for
    /// the full-screen interface, off for the line tool).
    pub reconnect: Option<bool>,
    /// `--password-file`: its first line answers the server's password
    /// prompt (servers with `--accounts`). The path, not the password, so
    /// the options can be printed.
    pub password_file: Option<PathBuf>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Command {
    Run(Options),
    Help(String),
    Version,
}

/// Parses the arguments (without the program name).
pub fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut o = getopts::Options::new();
    o.optopt(
        "n",
        "nick",
        "nickname to join with (asked for when missing)",
        "NAME",
    );
    o.optflag("", "plain", "line mode even on a terminal");
    o.optflag(
        "",
        "reconnect",
        "reconnect after a lost connection (default in full-screen mode)",
    );
    o.optflag(
        "",
        "no-reconnect",
        "exit when the connection is lost (default in line mode)",
    );
    o.optopt(
        "",
        "password-file",
        "answer the server's password prompt (servers with --accounts) with the \
         first line of PATH instead of reading it from the input",
        "PATH",
    );
    o.optflag("h", "help", "show this help");
    o.optflag("V", "version", "show the version");
    let m = o.parse(args).map_err(|e| e.to_string())?;
    if m.opt_present("h") {
        let brief = "Usage: loopchat [ADDR:PORT] [--nick NAME] [--password-file PATH] [--plain] \
                     [--[no-]reconnect]\n\n\
                     Connects to a loopchat server (default 127.0.0.1:7878). Full-screen on a \
                     terminal; a line tool (stdin to the server, server to stdout) otherwise.\n\n\
                     When the server has accounts it asks for a password after the name: the \
                     full-screen mode shows * for each character typed; the line tool sends \
                     the next input line (or the first line of --password-file). The password \
                     the server accepted is kept in memory to log in again on reconnection.";
        return Ok(Command::Help(o.usage(brief)));
    }
    if m.opt_present("V") {
        return Ok(Command::Version);
    }
    if m.free.len() > 1 {
        return Err(format!("one address expected, got {}", m.free.join(" ")));
    }
    if m.opt_present("reconnect") && m.opt_present("no-reconnect") {
        return Err("--reconnect and --no-reconnect are exclusive".into());
    }
    let reconnect = if m.opt_present("reconnect") {
        Some(true)
    } else if m.opt_present("no-reconnect") {
        Some(false)
    } else {
        None
    };
    let addr = match m.free.first() {
        Some(a) => normalize_addr(a)?,
        None => DEFAULT_ADDR.to_string(),
    };
    let nick = m
        .opt_str("nick")
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    Ok(Command::Run(Options {
        addr,
        nick,
        plain: m.opt_present("plain"),
        reconnect,
        password_file: m.opt_str("password-file").map(PathBuf::from),
    }))
}

/// Accepts `host:port`, `[v6]:port`, a bare host or a bare IPv6 address
/// (port 7878 then).
pub fn normalize_addr(a: &str) -> Result<String, String> {
    let a = a.trim();
    if a.is_empty() {
        return Err("empty address".into());
    }
    if a.parse::<SocketAddr>().is_ok() {
        return Ok(a.to_string());
    }
    if let Ok(v6) = a
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<Ipv6Addr>()
    {
        return Ok(format!("[{v6}]:{DEFAULT_PORT}"));
    }
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(a.to_string()),
        Some(_) => Err(format!("bad address {a:?} (expected HOST:PORT)")),
        None => Ok(format!("{a}:{DEFAULT_PORT}")),
    }
}

/// How the client treats a line the user entered (once joined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCommand {
    /// Nothing to send.
    Empty,
    /// `/quit`, `/exit` or `/logout` (with an optional reason): sent, then
    /// the client exits. Never followed by a reconnection: with a saved
    /// password that would log the user straight back in.
    Quit,
    /// `/help`: sent (the server lists its commands) and the client's own shown.
    Help,
    /// `/clear`: clears the scrollback, not sent.
    Clear,
    /// Anything else goes to the server as typed.
    Send,
}

pub fn classify_input(text: &str) -> ClientCommand {
    if text.trim().is_empty() {
        return ClientCommand::Empty;
    }
    let Some(rest) = text.strip_prefix('/') else {
        return ClientCommand::Send;
    };
    if rest.starts_with('/') {
        return ClientCommand::Send;
    }
    let word = rest
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match word.as_str() {
        "quit" | "exit" | "logout" => ClientCommand::Quit,
        "help" => ClientCommand::Help,
        "clear" if rest.trim().eq_ignore_ascii_case("clear") => ClientCommand::Clear,
        _ => ClientCommand::Send,
    }
}

/// The nickname in a line typed while one is asked for: the line itself,
/// or the argument of `/nick NAME` (which the server accepts there too).
pub fn nick_from_input(text: &str) -> &str {
    let t = text.trim();
    match t.get(..6) {
        Some(head) if head.eq_ignore_ascii_case("/nick ") => t[6..].trim(),
        _ => t,
    }
}

/// Whether a line typed while a password is wanted leaves instead: only the
/// whole lines the server takes as commands there, so that a password
/// starting with `/quit` is still a password.
pub fn is_password_quit(text: &str) -> bool {
    ["/quit", "/exit", "/logout"]
        .iter()
        .any(|q| text.eq_ignore_ascii_case(q))
}

/// Whether a line can be sent as a password: the server ignores blank
/// lines, so sending one would leave the client waiting for an answer that
/// never comes.
pub fn sendable_password(text: &str) -> bool {
    !text.trim_matches([' ', '\t']).is_empty()
}

/// Reads the password from `--password-file`: its first line, without the
/// line ending.
pub fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the password file {}: {e}", path.display()))?;
    let first = text.split('\n').next().unwrap_or("");
    let first = first.strip_suffix('\r').unwrap_or(first);
    if !sendable_password(first) {
        return Err(format!(
            "the password file {} has an empty first line",
            path.display()
        ));
    }
    Ok(Secret::new(first))
}

/// The password from `--password-file`, if given.
pub fn initial_password(opts: &Options) -> Result<Option<Secret>, String> {
    opts.password_file
        .as_deref()
        .map(read_password_file)
        .transpose()
}

/// The client's own commands and keys, shown with the server's `/help`.
pub fn client_help() -> &'static [&'static str] {
    &[
        "Client commands: /clear (empty this window), /quit [REASON] (leave; also /exit, /logout).",
        "Keys: PageUp/PageDown scroll, Up/Down history, Ctrl-W delete word, Ctrl-U delete to start, Ctrl-L redraw, Ctrl-C or Ctrl-D (empty line) quit.",
    ]
}

/// Writes a message of the client's own to stderr. Unlike `eprintln!`, a
/// closed stderr (say, a pipe whose reader has gone) is not a panic.
pub(crate) fn note(msg: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Whether the full-screen interface can be used (both ends are terminals).
pub fn terminal_available() -> bool {
    // SAFETY: isatty only inspects the descriptors.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 && libc::isatty(libc::STDOUT_FILENO) == 1 }
}

/// Runs the client; returns the process exit status.
pub fn run(opts: &Options) -> i32 {
    #[cfg(feature = "tui")]
    if !opts.plain && terminal_available() {
        return tui::run(opts);
    }
    plain::run(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Command, String> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn parses_arguments() {
        let Ok(Command::Run(o)) = args(&["example.org:99", "--nick", "bob", "--plain"]) else {
            panic!()
        };
        assert_eq!(o.addr, "example.org:99");
        assert_eq!(o.nick.as_deref(), Some("bob"));
        assert!(o.plain);
        assert_eq!(o.reconnect, None);
        let Ok(Command::Run(o)) = args(&["--no-reconnect"]) else {
            panic!()
        };
        assert_eq!(o.addr, DEFAULT_ADDR);
        assert_eq!(o.reconnect, Some(false));
        assert!(args(&["a:1", "b:2"]).is_err());
        assert!(args(&["--bogus"]).is_err());
        assert!(matches!(args(&["-h"]), Ok(Command::Help(_))));
        let Ok(Command::Run(o)) = args(&["--password-file", "/tmp/pw"]) else {
            panic!()
        };
        assert_eq!(o.password_file.as_deref(), Some(Path::new("/tmp/pw")));
    }

    #[test]
    fn password_lines_and_files() {
        assert!(is_password_quit("/QUIT"));
        assert!(is_password_quit("/logout"));
        assert!(!is_password_quit("/quit now"));
        assert!(!is_password_quit(" /quit"));
        assert!(!sendable_password(" \t "));
        assert!(sendable_password(" a b "));
        let path = std::env::temp_dir().join(format!("loopchat-pwfile-{}.txt", std::process::id()));
        std::fs::write(&path, " pass word \r\nsecond\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), " pass word ");
        std::fs::write(&path, "\nsecond\n").unwrap();
        assert!(read_password_file(&path).is_err());
        let _ = std::fs::remove_file(&path);
        assert!(read_password_file(&path).is_err());
    }

    #[test]
    fn normalizes_addresses() {
        assert_eq!(normalize_addr("::1").unwrap(), "[::1]:7878");
        assert_eq!(normalize_addr("[::1]:9").unwrap(), "[::1]:9");
        assert_eq!(normalize_addr("localhost").unwrap(), "localhost:7878");
        assert_eq!(normalize_addr("127.0.0.1:1").unwrap(), "127.0.0.1:1");
        assert!(normalize_addr("host:notaport").is_err());
    }

    #[test]
    fn nick_lines() {
        assert_eq!(nick_from_input("  bob "), "bob");
        assert_eq!(nick_from_input("/NICK  bob"), "bob");
        assert_eq!(nick_from_input("/nickel"), "/nickel");
    }

    #[test]
    fn classifies_input() {
        assert_eq!(classify_input("  "), ClientCommand::Empty);
        assert_eq!(classify_input("hi"), ClientCommand::Send);
        assert_eq!(classify_input("/QUIT bye"), ClientCommand::Quit);
        assert_eq!(classify_input("/exit"), ClientCommand::Quit);
        // /logout ends the session too: reconnecting would log straight back in.
        assert_eq!(classify_input("/logout"), ClientCommand::Quit);
        assert_eq!(classify_input("/LOGOUT now"), ClientCommand::Quit);
        assert_eq!(classify_input("/help"), ClientCommand::Help);
        assert_eq!(classify_input("/clear"), ClientCommand::Clear);
        assert_eq!(classify_input("//quit"), ClientCommand::Send);
        assert_eq!(classify_input("/msg a b"), ClientCommand::Send);
        // The room commands are the server's: passed through, never
        // swallowed.
        assert_eq!(classify_input("/join #rust"), ClientCommand::Send);
        assert_eq!(classify_input("/JOIN #rust"), ClientCommand::Send);
        assert_eq!(classify_input("/rooms"), ClientCommand::Send);
        assert_eq!(classify_input("/topic be kind"), ClientCommand::Send);
    }
}
