//! What the server answers a browser: the chat page's files (compiled into
//! the binary from `web/`), and the decision for each HTTP request. No
//! sockets: the loop hands a parsed request in and gets bytes to send, or
//! "upgrade this connection to WebSocket", or "render the metrics".
//!
//! The page is served with a strict Content-Security-Policy: scripts and
//! styles only from this server, no inline code, WebSocket only back to
//! it, and Trusted Types, so that a chat line can never become markup
//! (the page inserts every server string with `textContent`; the policy
//! makes an `innerHTML` throw).

use crate::transport::http::{self, PageFile, Request, Route, Status, Subprotocol};

/// The page's files, as in `web/`.
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// The page's Content-Security-Policy (see the module docs).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes (a whole response) and close.
    Respond(Vec<u8>),
    /// Send the metrics (the loop renders them: it has the numbers), then
    /// close.
    Metrics { head_only: bool },
    /// Send `response` (101) and carry WebSocket frames from now on, in
    /// the IRC dialect if `irc` (`binary`: as binary frames).
    Upgrade {
        response: Vec<u8>,
        irc: bool,
        binary: bool,
    },
}

/// Who may do what, from the command line.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// `--allow-origin`: pages on these origins may open a WebSocket here.
    pub allow_origins: Vec<String>,
}

/// The answer to `req`, from a peer that may (`metrics_ok`) or may not
/// read `/metrics`.
pub fn answer(req: &Request<'_>, policy: &Policy, metrics_ok: bool) -> Answer {
    let head_only = req.is_head();
    match http::route(req) {
        Route::Page(file) => Answer::Respond(page(file, head_only)),
        Route::Health => Answer::Respond(http::response(
            Status::Ok,
            "text/plain; charset=utf-8",
            "no-store",
            &[],
            b"ok\n",
            head_only,
        )),
        Route::Metrics if metrics_ok => Answer::Metrics { head_only },
        Route::Metrics => Answer::Respond(http::error_response(Status::Forbidden, head_only)),
        Route::WebSocket(_) if !http::origin_allowed(req, &policy.allow_origins) => {
            Answer::Respond(http::error_response(Status::Forbidden, false))
        }
        Route::WebSocket(upgrade) => Answer::Upgrade {
            response: http::upgrade_response(&upgrade),
            irc: upgrade.protocol.is_some(),
            binary: upgrade.protocol == Some(Subprotocol::IrcBinary),
        },
        Route::Error(status) => Answer::Respond(http::error_response(status, head_only)),
    }
}

/// One of the page's files, with its type and the page's policy.
fn page(file: PageFile, head_only: bool) -> Vec<u8> {
    let (body, content_type) = match file {
        PageFile::Html => (INDEX_HTML, "text/html; charset=utf-8"),
        PageFile::Script => (APP_JS, "text/javascript; charset=utf-8"),
        PageFile::Style => (STYLE_CSS, "text/css; charset=utf-8"),
    };
    http::response(
        Status::Ok,
        content_type,
        "no-cache",
        &[
            ("Content-Security-Policy", CSP),
            ("Referrer-Policy", "no-referrer"),
        ],
        body.as_bytes(),
        head_only,
    )
}

/// The metrics response around `body` (Prometheus text format 0.0.4).
pub fn metrics_response(body: &str, head_only: bool) -> Vec<u8> {
    http::response(
        Status::Ok,
        "text/plain; version=0.0.4; charset=utf-8",
        "no-store",
        &[],
        body.as_bytes(),
        head_only,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(lines: &[&str], policy: &Policy, metrics_ok: bool) -> Answer {
        let mut text = lines.join("\r\n");
        text.push_str("\r\n\r\n");
        let (req, _) = http::parse_head(text.as_bytes())
            .expect("valid")
            .expect("complete");
        answer(&req, policy, metrics_ok)
    }

    fn body_of(a: &Answer) -> String {
        match a {
            Answer::Respond(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not a response: {other:?}"),
        }
    }

    #[test]
    fn the_page_and_its_files_carry_their_type_and_policy() {
        let p = Policy::default();
        for (path, ty) in [
            ("/", "text/html"),
            ("/app.js", "text/javascript"),
            ("/style.css", "text/css"),
        ] {
            let a = body_of(&ask(
                &[&format!("GET {path} HTTP/1.1"), "Host: x"],
                &p,
                false,
            ));
            assert!(a.starts_with("HTTP/1.1 200 OK\r\n"), "{a}");
            assert!(a.contains(&format!("Content-Type: {ty}")), "{a}");
            assert!(
                a.contains(&format!("Content-Security-Policy: {CSP}\r\n")),
                "{a}"
            );
        }
        let head = body_of(&ask(&["HEAD / HTTP/1.1", "Host: x"], &p, false));
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body");
    }

    #[test]
    fn metrics_only_to_the_allowed() {
        let p = Policy::default();
        let req = ["GET /metrics HTTP/1.1", "Host: x"];
        assert_eq!(ask(&req, &p, true), Answer::Metrics { head_only: false });
        assert!(body_of(&ask(&req, &p, false)).starts_with("HTTP/1.1 403"));
    }

    #[test]
    fn upgrades_follow_the_origin_and_the_subprotocol() {
        let ws = |origin: &str, proto: &str| {
            let mut lines = vec![
                "GET /ws HTTP/1.1".to_string(),
                "Host: chat.example:7878".to_string(),
                "Upgrade: websocket".to_string(),
                "Connection: Upgrade".to_string(),
                "Sec-WebSocket-Version: 13".to_string(),
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_string(),
            ];
            if !origin.is_empty() {
                lines.push(format!("Origin: {origin}"));
            }
            if !proto.is_empty() {
                lines.push(format!("Sec-WebSocket-Protocol: {proto}"));
            }
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            ask(
                &refs,
                &Policy {
                    allow_origins: vec!["https://friend.example".into()],
                },
                false,
            )
        };
        assert!(matches!(
            ws("http://chat.example:7878", ""),
            Answer::Upgrade { irc: false, .. }
        ));
        assert!(matches!(
            ws("", "text.ircv3.net"),
            Answer::Upgrade {
                irc: true,
                binary: false,
                ..
            }
        ));
        assert!(matches!(
            ws("https://friend.example", "binary.ircv3.net"),
            Answer::Upgrade {
                irc: true,
                binary: true,
                ..
            }
        ));
        assert!(body_of(&ws("http://evil.example", "")).starts_with("HTTP/1.1 403"));
    }
}
