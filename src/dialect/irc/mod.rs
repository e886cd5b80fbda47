//! The IRC dialect: real IRC clients (irssi, weechat, hexchat, ii, sic)
//! in the same rooms as line users, on the same port.
//!
//! - [`message`]: one line's grammar, parsed and written (pure).
//! - [`commands`]: what a client sends: registration (CAP, NICK, USER,
//!   PASS), the command table, and the queries answered from the core's
//!   state (NAMES, WHO, WHOIS, LIST, ...).
//! - [`render`]: the core's events as IRC lines, numerics included.
//!
//! What is supported, and every numeric sent, is in docs/irc.md.

pub mod commands;
pub mod message;
pub mod render;

pub use commands::{Action, handle};
pub use render::render;

/// What an IRC connection has said about itself so far.
#[derive(Debug, Default)]
pub struct IrcConn {
    /// The nickname asked for (before registration) or held (after).
    pub nick: Option<String>,
    /// `USER`'s user name, cleaned for use in prefixes.
    pub user: Option<String>,
    /// `USER`'s real name, for WHO and WHOIS.
    pub realname: String,
    /// `CAP LS`/`CAP REQ` was sent: registration waits for `CAP END`.
    pub cap_open: bool,
    /// `PASS`, for an account login when registration completes.
    pub password: Option<String>,
    /// Registration is complete: the core knows this user by its nick.
    pub registered: bool,
    /// `AWAY` message, if set.
    pub away: Option<String>,
    /// `AUTHENTICATE PLAIN` was sent: the next AUTHENTICATE is the
    /// credentials.
    pub sasl_started: bool,
    /// The credentials are with the core: registration goes that way, not
    /// through NICK and USER.
    pub sasl_sent: bool,
    /// The welcome burst (001...) was sent. With SASL, the core registers
    /// the user before `CAP END`, and the burst waits for it.
    pub welcomed: bool,
}

impl IrcConn {
    /// The target of numerics: the nick, or `*` before one was accepted.
    pub fn target(&self) -> &str {
        match &self.nick {
            Some(nick) if self.registered => nick,
            _ => "*",
        }
    }
}

/// The server's identity in the IRC dialect.
#[derive(Debug, Clone)]
pub struct IrcConfig {
    /// `--server-name`: the source of numerics, and the host part of every
    /// user's prefix (`nick!user@loopchat`: addresses are not shown).
    pub server: String,
    /// `--network`: the `NETWORK` token.
    pub network: String,
    /// `--motd FILE`'s lines; `None` answers 422.
    pub motd: Option<Vec<String>>,
    /// Start-up time, for 003.
    pub created: String,
    /// Accounts are on: `sasl` is offered in CAP (PLAIN only).
    pub sasl: bool,
}

impl Default for IrcConfig {
    fn default() -> IrcConfig {
        IrcConfig {
            server: crate::config::DEFAULT_SERVER_NAME.to_string(),
            network: crate::config::DEFAULT_NETWORK.to_string(),
            motd: None,
            created: "today".to_string(),
            sasl: false,
        }
    }
}

/// This server's version string, for 002, 004 and VERSION.
pub const VERSION: &str = concat!("loopchat-", env!("CARGO_PKG_VERSION"));
