//! Real IRC clients against the real server (issue 10, "Tests"): ii, sic,
//! weechat-headless and irssi (under tmux), each started with its own nick,
//! joining `#lobby` on the loopchat port, where an `nc`-style line user
//! waits. Each test: the client joins (its own output shows the join, and
//! the line user sees `* NICK has entered the room`); the line user says
//! `hello from nc` and the client shows it; the client says
//! `hello from CLIENT` and the line user gets `[NICK] hello from CLIENT`;
//! the client quits, the line user sees `* NICK has left the room ...` and
//! the client's process ends. One more test has ii and sic talk to each
//! other.
//!
//! How each client is driven, and what is read back, is in
//! `tests/irc_support/mod.rs`. Every step waits on files, sockets or
//! processes with a 20 s deadline, never on a fixed sleep; a failure prints
//! what the client showed, its raw traffic (a recording proxy sits between
//! each client and the server), what the line user got and the server log.
//!
//! Without a client installed, its test prints `SKIPPED: CLIENT not
//! installed` and passes, unless `CI` is set: `.ci/run` installs them
//! (`apt-get install -y --no-install-recommends ii sic weechat-headless
//! weechat-plugins irssi`, and tmux), so there a missing client fails.
//!
//! ## The harness self-check (ignored by default)
//!
//! The `selfcheck_ngircd_*` tests run the same scenarios against ngIRCd
//! (the other user is then a raw IRC connection instead of a line user),
//! to show the harness itself drives each client correctly, independently
//! of loopchat. They need ngIRCd (`apt-get install -y ngircd`; CI does not
//! install it) and run with:
//!
//! ```sh
//! cargo test --test irc_clients -- --ignored --nocapture
//! ```
//!
//! `--nocapture` also prints each client's raw traffic: what it sends at
//! connect and while joining, which is what loopchat's IRC dialect has to
//! answer.

mod common;
mod irc_support;

use irc_support::{Backend, Kind, chat_with_other_user, require, two_clients};

// --- Against loopchat: the client and an nc-style line user in #lobby.

#[test]
fn ii_chats_with_a_line_user() {
    if require(&[Kind::Ii]) {
        chat_with_other_user(Backend::loopchat(), Kind::Ii);
    }
}

#[test]
fn sic_chats_with_a_line_user() {
    if require(&[Kind::Sic]) {
        chat_with_other_user(Backend::loopchat(), Kind::Sic);
    }
}

#[test]
fn weechat_chats_with_a_line_user() {
    if require(&[Kind::Weechat]) {
        chat_with_other_user(Backend::loopchat(), Kind::Weechat);
    }
}

#[test]
fn irssi_chats_with_a_line_user() {
    if require(&[Kind::Irssi]) {
        chat_with_other_user(Backend::loopchat(), Kind::Irssi);
    }
}

#[test]
fn ii_and_sic_chat_with_each_other() {
    if require(&[Kind::Ii, Kind::Sic]) {
        two_clients(Backend::loopchat(), Kind::Ii, Kind::Sic);
    }
}

// --- The harness self-check: the same scenarios against ngIRCd.

#[test]
#[ignore = "harness self-check: needs ngircd; cargo test --test irc_clients -- --ignored"]
fn selfcheck_ngircd_ii() {
    if require(&[Kind::Ii]) {
        chat_with_other_user(Backend::ngircd(), Kind::Ii);
    }
}

#[test]
#[ignore = "harness self-check: needs ngircd; cargo test --test irc_clients -- --ignored"]
fn selfcheck_ngircd_sic() {
    if require(&[Kind::Sic]) {
        chat_with_other_user(Backend::ngircd(), Kind::Sic);
    }
}

#[test]
#[ignore = "harness self-check: needs ngircd; cargo test --test irc_clients -- --ignored"]
fn selfcheck_ngircd_weechat() {
    if require(&[Kind::Weechat]) {
        chat_with_other_user(Backend::ngircd(), Kind::Weechat);
    }
}

#[test]
#[ignore = "harness self-check: needs ngircd; cargo test --test irc_clients -- --ignored"]
fn selfcheck_ngircd_irssi() {
    if require(&[Kind::Irssi]) {
        chat_with_other_user(Backend::ngircd(), Kind::Irssi);
    }
}

#[test]
#[ignore = "harness self-check: needs ngircd; cargo test --test irc_clients -- --ignored"]
fn selfcheck_ngircd_ii_and_sic() {
    if require(&[Kind::Ii, Kind::Sic]) {
        two_clients(Backend::ngircd(), Kind::Ii, Kind::Sic);
    }
}
