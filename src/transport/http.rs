//! HTTP/1.1 on the chat port: telling a browser from a chat client, reading
//! its request head, deciding the answer, and writing it. No sockets here.
//!
//! A connection's first bytes decide what it speaks ([`looks_like_http`]):
//! `GET ` or `HEAD ` is a browser (or curl, or a WebSocket client about to
//! upgrade); anything else is a chat client's nickname or IRC registration.
//!
//! The request head (the request line and the headers, up to the blank
//! line) is parsed by [`parse_head`] with the `httparse` crate, which reads
//! it in place without allocating. The loop keeps the bytes of a head that
//! is not complete yet (an answer of "incomplete" is normal: wait for more,
//! within the registration timeout), up to [`MAX_HEAD`] bytes: past that
//! the answer is 431. One request per connection: every response says
//! `Connection: close`, except the WebSocket upgrade, after which the
//! connection carries frames ([`super::websocket`]).
//!
//! [`route`] maps the request to a [`Route`]:
//!
//! | request | route |
//! |---|---|
//! | `GET /` (`/index.html`), `/app.js`, `/style.css` | [`Route::Page`] |
//! | `GET /ws` with a valid upgrade | [`Route::WebSocket`] (else 400, or 426 for another protocol version) |
//! | `GET /metrics` | [`Route::Metrics`] |
//! | `GET /healthz` | [`Route::Health`] (answer `ok`) |
//! | another path | 404 |
//! | `HEAD` | as `GET`, the answer without its body (but not `/ws`: 400) |
//! | another method | 405 |
//!
//! A query string (`/?x=1`) is ignored for routing. Before accepting a
//! WebSocket upgrade, the caller checks [`origin_allowed`]: a browser
//! sends every page's WebSocket requests with the page's `Origin`, so a
//! page on another site cannot use a visitor's browser to chat here
//! (cross-site WebSocket hijacking).
//!
//! The responses ([`response`], [`error_response`], [`upgrade_response`])
//! are complete byte strings for the connection's send queue.

use std::fmt::Write as _;

use super::websocket::{accept_key, valid_key};

/// The longest request head accepted (request line and headers): 8 KiB,
/// what common servers allow; browsers send under 2 KiB.
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers per request; more is answered 431. Browsers send about 15.
const MAX_HEADERS: usize = 48;

/// Whether a connection whose first bytes are `first` speaks HTTP:
/// `Some(true)` once they start with `GET `, `HEAD ` or another method and
/// a space (those get 405), `Some(false)` as soon as they cannot, `None`
/// while they are a prefix of one (wait for more). The space matters:
/// `GETTY` and `HEADS` are nicknames. A line user whose nickname line is
/// `GET something` is taken for HTTP and gets a 400; nicknames have no
/// spaces, so no valid one is lost.
pub fn looks_like_http(first: &[u8]) -> Option<bool> {
    const METHODS: [&[u8]; 9] = [
        b"GET ",
        b"HEAD ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
    ];
    for method in METHODS {
        let n = first.len().min(method.len());
        if first[..n] == method[..n] {
            return if n == method.len() { Some(true) } else { None };
        }
    }
    Some(false)
}

/// The statuses we answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    SwitchingProtocols,
    Ok,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    UpgradeRequired,
    HeaderFieldsTooLarge,
    ServiceUnavailable,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::SwitchingProtocols => 101,
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::UpgradeRequired => 426,
            Status::HeaderFieldsTooLarge => 431,
            Status::ServiceUnavailable => 503,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::SwitchingProtocols => "Switching Protocols",
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::UpgradeRequired => "Upgrade Required",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }
}

/// A parsed request head, borrowing the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// As sent (`GET`, `HEAD`, ...; methods are case-sensitive).
    pub method: &'a str,
    /// The request target as sent, query included.
    pub target: &'a str,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    headers: [httparse::Header<'a>; MAX_HEADERS],
    n_headers: usize,
}

/// Parses the request head at the start of `buf`: the request and the
/// head's length in bytes (any bytes after it are the client's next: a
/// WebSocket client may send frames right behind its upgrade), or `None`
/// while the head is incomplete (keep the bytes, read more). An error is
/// the status to answer with before closing: 431 for a head over
/// [`MAX_HEAD`] (or with too many headers), 400 for one that is not
/// HTTP/1.x.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request<'_>, usize)>, Status> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
            let (method, target) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
            let minor_version = req.version.unwrap_or(0);
            let n_headers = req.headers.len();
            let request = Request {
                method,
                target,
                minor_version,
                headers,
                n_headers,
            };
            Ok(Some((request, len)))
        }
        Ok(httparse::Status::Complete(_)) => Err(Status::HeaderFieldsTooLarge),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => Err(Status::HeaderFieldsTooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Status::HeaderFieldsTooLarge),
        Err(_) => Err(Status::BadRequest),
    }
}

impl<'a> Request<'a> {
    /// The path, without the query string.
    pub fn path(&self) -> &'a str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A `HEAD` request: answer with the headers only.
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Every value of header `name` (case-insensitive), in order, with
    /// surrounding spaces and tabs removed.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers[..self.n_headers]
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| trim(h.value))
    }

    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.header_values(name).next()
    }

    /// Whether the comma-separated list in header `name` (all its
    /// instances) holds `token`, compared case-insensitively (as
    /// `Connection: keep-alive, Upgrade` holds `upgrade`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_values(name)
            .flat_map(list)
            .any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Spaces and tabs removed from both ends (HTTP's optional whitespace).
fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The non-empty items of a comma-separated header value.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

/// The WebSocket subprotocols we speak (`Sec-WebSocket-Protocol`), from
/// the IRCv3 WebSocket specification: one IRC line per message, without
/// its CRLF. Without a subprotocol a WebSocket connection speaks the line
/// dialect, one line per text message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// `text.ircv3.net`: IRC in text messages (so UTF-8 only: a line that
    /// is not must be fixed or dropped before it is sent).
    IrcText,
    /// `binary.ircv3.net`: IRC in binary messages, any bytes.
    IrcBinary,
}

impl Subprotocol {
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::IrcText => "text.ircv3.net",
            Subprotocol::IrcBinary => "binary.ircv3.net",
        }
    }
}

/// The subprotocol to answer with: the first of the client's
/// `Sec-WebSocket-Protocol` list (in its order of preference) that we
/// speak; `None` if it offered none we know (then the line dialect, and no
/// `Sec-WebSocket-Protocol` in the answer: a client that required one
/// closes, as RFC 6455 says).
pub fn choose_subprotocol(req: &Request<'_>) -> Option<Subprotocol> {
    req.header_values("sec-websocket-protocol")
        .flat_map(list)
        .find_map(|p| match p {
            b"text.ircv3.net" => Some(Subprotocol::IrcText),
            b"binary.ircv3.net" => Some(Subprotocol::IrcBinary),
            _ => None,
        })
}

/// An accepted WebSocket handshake: what the 101 answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Accept`.
    pub accept: String,
    pub protocol: Option<Subprotocol>,
}

/// The files of the chat page (their bytes are in [`crate::web`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageFile {
    Html,
    Script,
    Style,
}

/// What to answer a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of the chat page's files.
    Page(PageFile),
    /// A valid WebSocket handshake (check [`origin_allowed`] first, then
    /// answer with [`upgrade_response`]).
    WebSocket(Upgrade),
    /// Prometheus metrics.
    Metrics,
    /// The health check: answer `ok`.
    Health,
    /// Refused: answer [`error_response`] with this status.
    Error(Status),
}

/// Decides what `req` gets (the table in the module docs). HTTP/1.1
/// requires exactly one `Host` header (RFC 9112 3.2): without it, 400.
pub fn route(req: &Request<'_>) -> Route {
    if !matches!(req.method, "GET" | "HEAD") {
        return Route::Error(Status::MethodNotAllowed);
    }
    if req.minor_version >= 1 && req.header_values("host").count() != 1 {
        return Route::Error(Status::BadRequest);
    }
    match req.path() {
        "/" | "/index.html" => Route::Page(PageFile::Html),
        "/app.js" => Route::Page(PageFile::Script),
        "/style.css" => Route::Page(PageFile::Style),
        "/ws" => upgrade(req),
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Health,
        _ => Route::Error(Status::NotFound),
    }
}

/// RFC 6455 4.2.1: the handshake is an HTTP/1.1 GET with `Upgrade:
/// websocket`, `Connection: Upgrade`, version 13 and a key. Another
/// version gets 426 and the version we speak (4.2.2); anything else
/// wrong, 400.
fn upgrade(req: &Request<'_>) -> Route {
    let bad = Route::Error(Status::BadRequest);
    if req.method != "GET" || req.minor_version < 1 {
        return bad;
    }
    if !req.has_token("upgrade", "websocket") || !req.has_token("connection", "upgrade") {
        return bad;
    }
    match req.header("sec-websocket-version") {
        Some(b"13") => {}
        Some(_) => return Route::Error(Status::UpgradeRequired),
        None => return bad,
    }
    match req.header("sec-websocket-key") {
        Some(key) if valid_key(key) => Route::WebSocket(Upgrade {
            accept: accept_key(key),
            protocol: choose_subprotocol(req),
        }),
        _ => bad,
    }
}

/// Whether a WebSocket request may proceed, judging by its `Origin`:
///
/// - no `Origin`: yes (not a browser: a browser always sends one);
/// - an `Origin` in `allow` (`--allow-origin`): yes; compared as text,
///   ignoring ASCII case and a trailing `/`;
/// - an `Origin` naming the same host and port as the `Host` header: yes.
///   The scheme is not compared, and the ports are compared with their
///   defaults filled in: a missing port is the scheme's default in the
///   `Origin` (80 for `http`, 443 for `https`), and either default in
///   `Host`, which does not say which scheme the browser used. So
///   `https://chat.example.org` matches `Host: chat.example.org` (a TLS
///   proxy in front of a plain loopchat), `http://127.0.0.1:7878` matches
///   `Host: 127.0.0.1:7878`, and `http://evil.example` matches nothing;
/// - anything else (`null` included): no, answer 403.
pub fn origin_allowed<S: AsRef<str>>(req: &Request<'_>, allow: &[S]) -> bool {
    let Some(origin) = req.header("origin") else {
        return true;
    };
    let unslashed = |s: &[u8]| -> Vec<u8> {
        let s = s.strip_suffix(b"/").unwrap_or(s);
        s.to_ascii_lowercase()
    };
    let wanted = unslashed(origin);
    if allow
        .iter()
        .any(|a| unslashed(a.as_ref().as_bytes()) == wanted)
    {
        return true;
    }
    let Some(host) = req.header("host") else {
        return false;
    };
    let Some((scheme, authority)) = split_scheme(&wanted) else {
        return false;
    };
    let default = match scheme {
        b"http" | b"ws" => Some(80),
        b"https" | b"wss" => Some(443),
        _ => None,
    };
    let (o_host, o_port) = split_port(authority);
    let (h_host, h_port) = split_port(host);
    if !o_host.eq_ignore_ascii_case(h_host) || o_host.is_empty() {
        return false;
    }
    match (o_port.or(default), h_port) {
        (Some(o), Some(h)) => o == h,
        (Some(o), None) => o == 80 || o == 443,
        (None, _) => false,
    }
}

/// `scheme://rest` split at `://`.
fn split_scheme(origin: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = origin.windows(3).position(|w| w == b"://")?;
    Some((&origin[..i], &origin[i + 3..]))
}

/// `host[:port]` (or `[v6]:port`) split into the host and the port, if any
/// (a port that is not a number makes it "no port", which then matches
/// nothing but a default).
fn split_port(authority: &[u8]) -> (&[u8], Option<u16>) {
    let colon = match authority.iter().rposition(|&b| b == b':') {
        // In "[::1]" the colons are the address's, not a port's.
        Some(i) if !authority[i..].contains(&b']') => i,
        _ => return (authority, None),
    };
    let port = std::str::from_utf8(&authority[colon + 1..])
        .ok()
        .and_then(|p| p.parse().ok());
    (&authority[..colon], port)
}

/// A complete response: status line, `Content-Type` (if not empty),
/// `Content-Length`, `Cache-Control`, `extra_headers`, `Connection: close`,
/// then `body` unless `head_only` (a `HEAD` request: the length is still
/// the body's, as RFC 9110 9.3.2 allows).
pub fn response(
    status: Status,
    content_type: &str,
    cache_control: &str,
    extra_headers: &[(&str, &str)],
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut head = String::with_capacity(256);
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", status.code(), status.reason());
    if !content_type.is_empty() {
        let _ = write!(head, "Content-Type: {content_type}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n", body.len());
    let _ = write!(head, "Cache-Control: {cache_control}\r\n");
    // Browsers must not guess another type than the one we say.
    head.push_str("X-Content-Type-Options: nosniff\r\n");
    for (name, value) in extra_headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A refusal: a short plain-text body naming the status, never cached,
/// with the headers the status calls for (405: `Allow`; 426: the
/// `Sec-WebSocket-Version` we speak).
pub fn error_response(status: Status, head_only: bool) -> Vec<u8> {
    let body = format!("{} {}\n", status.code(), status.reason());
    let extra: &[(&str, &str)] = match status {
        Status::MethodNotAllowed => &[("Allow", "GET, HEAD")],
        Status::UpgradeRequired => &[("Sec-WebSocket-Version", "13")],
        _ => &[],
    };
    response(
        status,
        "text/plain; charset=utf-8",
        "no-store",
        extra,
        body.as_bytes(),
        head_only,
    )
}

/// The 101 answer accepting a WebSocket handshake. It never carries
/// `Sec-WebSocket-Extensions`: no extension (permessage-deflate, which
/// browsers offer) is accepted, so frames stay as the framer reads them.
pub fn upgrade_response(upgrade: &Upgrade) -> Vec<u8> {
    let mut out = String::with_capacity(160);
    out.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    let _ = write!(out, "Sec-WebSocket-Accept: {}\r\n", upgrade.accept);
    if let Some(p) = upgrade.protocol {
        let _ = write!(out, "Sec-WebSocket-Protocol: {}\r\n", p.name());
    }
    out.push_str("\r\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request head from lines (CRLF added, and the blank line).
    fn head(lines: &[&str]) -> Vec<u8> {
        let mut s = lines.join("\r\n");
        s.push_str("\r\n\r\n");
        s.into_bytes()
    }

    fn parsed(buf: &[u8]) -> Request<'_> {
        match parse_head(buf) {
            Ok(Some((req, len))) => {
                assert_eq!(len, buf.len());
                req
            }
            other => panic!("{other:?}"),
        }
    }

    fn route_of(lines: &[&str]) -> Route {
        route(&parsed(&head(lines)))
    }

    const KEY: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// A browser's upgrade request, with `extra` headers.
    fn upgrade_lines<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut lines = vec![
            "GET /ws HTTP/1.1",
            "Host: 127.0.0.1:7878",
            "Connection: keep-alive, Upgrade",
            "Upgrade: websocket",
            "Sec-WebSocket-Version: 13",
            KEY,
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
        ];
        lines.extend(extra);
        lines
    }

    #[test]
    fn sniffing_needs_get_or_head_and_a_space() {
        for http in ["GET ", "GET / HTTP/1.1", "HEAD ", "HEAD /healthz HTTP/1.1"] {
            assert_eq!(looks_like_http(http.as_bytes()), Some(true), "{http:?}");
        }
        for undecided in ["", "G", "GE", "GET", "H", "HE", "HEA", "HEAD"] {
            assert_eq!(looks_like_http(undecided.as_bytes()), None, "{undecided:?}");
        }
        for chat in [
            "GETTY\n",
            "bob\n",
            "GET\n",
            "GET\r\n",
            "HEADS\n",
            "HEAD\n",
            "get / HTTP/1.1",
            "NICK bob\r\n",
            "CAP LS 302\r\n",
            "\u{1b}",
            "Gary\n",
            "HEx",
        ] {
            assert_eq!(looks_like_http(chat.as_bytes()), Some(false), "{chat:?}");
        }
        // Decided as early as possible: one byte is enough for most nicknames.
        assert_eq!(looks_like_http(b"b"), Some(false));
        assert_eq!(looks_like_http(b"GX"), Some(false));
        assert_eq!(looks_like_http(b"POST / HTTP/1.1\r\n"), Some(true));
        assert_eq!(looks_like_http(b"PO"), None);
        assert_eq!(looks_like_http(b"POSTMAN\n"), Some(false));
        assert_eq!(looks_like_http(b"DELETE\n"), Some(false));
    }

    #[test]
    fn heads_are_parsed_when_complete() {
        let buf = head(&[
            "GET /?room=lobby HTTP/1.1",
            "Host: a.example",
            "X-Two: 1",
            "x-two:  2 ",
        ]);
        for cut in 0..buf.len() {
            assert!(matches!(parse_head(&buf[..cut]), Ok(None)), "cut {cut}");
        }
        let req = parsed(&buf);
        assert_eq!(
            (req.method, req.target, req.path(), req.minor_version),
            ("GET", "/?room=lobby", "/", 1)
        );
        assert_eq!(req.header("HOST"), Some(&b"a.example"[..]));
        assert_eq!(
            req.header_values("X-Two").collect::<Vec<_>>(),
            vec![&b"1"[..], b"2"]
        );
        assert_eq!(req.header("missing"), None);
        // Bytes after the head (a WebSocket frame sent early) are not its.
        let mut more = buf.clone();
        more.extend([0x81, 0x80]);
        assert!(matches!(parse_head(&more), Ok(Some((_, len))) if len == buf.len()));
    }

    #[test]
    fn heads_over_8_kib_get_431() {
        let big = format!("X-Big: {}", "a".repeat(MAX_HEAD));
        let buf = head(&["GET / HTTP/1.1", "Host: a", &big]);
        assert_eq!(parse_head(&buf).err(), Some(Status::HeaderFieldsTooLarge));
        // Incomplete, and already too long: no need to wait for the end.
        assert_eq!(
            parse_head(&buf[..MAX_HEAD + 1]).err(),
            Some(Status::HeaderFieldsTooLarge)
        );
        assert!(matches!(parse_head(&buf[..MAX_HEAD]), Ok(None)));
        let many: Vec<String> = (0..100).map(|i| format!("X-{i}: 1")).collect();
        let mut lines = vec!["GET / HTTP/1.1"];
        lines.extend(many.iter().map(String::as_str));
        assert_eq!(
            parse_head(&head(&lines)).err(),
            Some(Status::HeaderFieldsTooLarge)
        );
    }

    #[test]
    fn garbage_gets_400() {
        for bad in [
            &b"GET / HTTP/2.0\r\n\r\n"[..],
            b"GET /\x01 HTTP/1.1\r\n\r\n",
            b"GET  HTTP/1.1 x\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        ] {
            assert_eq!(parse_head(bad).err(), Some(Status::BadRequest), "{bad:?}");
        }
    }

    #[test]
    fn routes() {
        let get = |path: &str| route_of(&[&format!("GET {path} HTTP/1.1"), "Host: x"]);
        assert_eq!(get("/"), Route::Page(PageFile::Html));
        assert_eq!(get("/?nick=bob"), Route::Page(PageFile::Html));
        assert_eq!(get("/app.js"), Route::Page(PageFile::Script));
        assert_eq!(get("/style.css"), Route::Page(PageFile::Style));
        assert_eq!(get("/metrics"), Route::Metrics);
        assert_eq!(get("/healthz"), Route::Health);
        assert_eq!(get("/index.html"), Route::Page(PageFile::Html));
        for missing in ["/ws/", "/WS", "//", "/metrics/x", "*", "http://x/"] {
            assert_eq!(get(missing), Route::Error(Status::NotFound), "{missing}");
        }
        assert_eq!(
            route_of(&["HEAD /healthz HTTP/1.1", "Host: x"]),
            Route::Health
        );
        for method in ["POST", "PUT", "DELETE", "OPTIONS", "get"] {
            let r = route_of(&[&format!("{method} / HTTP/1.1"), "Host: x"]);
            assert_eq!(r, Route::Error(Status::MethodNotAllowed), "{method}");
        }
        // HTTP/1.1 needs one Host; 1.0 none.
        assert_eq!(
            route_of(&["GET / HTTP/1.1"]),
            Route::Error(Status::BadRequest)
        );
        assert_eq!(
            route_of(&["GET / HTTP/1.1", "Host: a", "Host: b"]),
            Route::Error(Status::BadRequest)
        );
        assert_eq!(route_of(&["GET / HTTP/1.0"]), Route::Page(PageFile::Html));
    }

    #[test]
    fn a_valid_upgrade_is_accepted_without_extensions() {
        let Route::WebSocket(up) = route_of(&upgrade_lines(&[])) else {
            panic!("not an upgrade");
        };
        assert_eq!(
            up,
            Upgrade {
                accept: ACCEPT.into(),
                protocol: None
            }
        );
        let text = String::from_utf8(upgrade_response(&up)).unwrap();
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {ACCEPT}\r\n\r\n"
            )
        );
        assert!(!text.to_ascii_lowercase().contains("extensions"));
        // Header names and token values in any case, the tokens in lists.
        let lines = [
            "GET /ws?x=1 HTTP/1.1",
            "host: h",
            "connection: Upgrade",
            "UPGRADE: WebSocket",
            "sec-websocket-version: 13",
            "sec-websocket-key:  dGhlIHNhbXBsZSBub25jZQ== ",
        ];
        assert!(matches!(route_of(&lines), Route::WebSocket(_)));
    }

    #[test]
    fn bad_upgrades_get_400_or_426() {
        let without = |name: &str| -> Vec<&str> {
            upgrade_lines(&[])
                .into_iter()
                .filter(|l| !l.starts_with(name))
                .collect()
        };
        for name in [
            "Connection",
            "Upgrade",
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
        ] {
            assert_eq!(
                route_of(&without(name)),
                Route::Error(Status::BadRequest),
                "without {name}"
            );
        }
        let mut wrong_key = without("Sec-WebSocket-Key");
        wrong_key.push("Sec-WebSocket-Key: c2hvcnQ=");
        assert_eq!(route_of(&wrong_key), Route::Error(Status::BadRequest));
        let mut wrong_upgrade = without("Upgrade");
        wrong_upgrade.push("Upgrade: h2c");
        assert_eq!(route_of(&wrong_upgrade), Route::Error(Status::BadRequest));
        let mut v8 = without("Sec-WebSocket-Version");
        v8.push("Sec-WebSocket-Version: 8");
        assert_eq!(route_of(&v8), Route::Error(Status::UpgradeRequired));
        let mut old = upgrade_lines(&[]);
        old[0] = "GET /ws HTTP/1.0";
        assert_eq!(route_of(&old), Route::Error(Status::BadRequest));
        let mut head_req = upgrade_lines(&[]);
        head_req[0] = "HEAD /ws HTTP/1.1";
        assert_eq!(route_of(&head_req), Route::Error(Status::BadRequest));
        // A browser opening /ws as a page.
        assert_eq!(
            route_of(&["GET /ws HTTP/1.1", "Host: x"]),
            Route::Error(Status::BadRequest)
        );
    }

    #[test]
    fn subprotocols_pick_irc_or_none() {
        let pick = |offer: &[&str]| -> Option<Subprotocol> {
            let Route::WebSocket(up) = route_of(&upgrade_lines(offer)) else {
                panic!("not an upgrade");
            };
            up.protocol
        };
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick(&["Sec-WebSocket-Protocol: text.ircv3.net"]),
            Some(Subprotocol::IrcText)
        );
        assert_eq!(
            pick(&["Sec-WebSocket-Protocol: binary.ircv3.net, text.ircv3.net"]),
            Some(Subprotocol::IrcBinary)
        );
        assert_eq!(
            pick(&[
                "Sec-WebSocket-Protocol: chat, mqtt",
                "Sec-WebSocket-Protocol: text.ircv3.net"
            ]),
            Some(Subprotocol::IrcText)
        );
        assert_eq!(pick(&["Sec-WebSocket-Protocol: chat, superchat"]), None);
        assert_eq!(
            pick(&["Sec-WebSocket-Protocol: TEXT.IRCV3.NET"]),
            None,
            "tokens are case-sensitive"
        );
        let up = Upgrade {
            accept: ACCEPT.into(),
            protocol: Some(Subprotocol::IrcText),
        };
        let text = String::from_utf8(upgrade_response(&up)).unwrap();
        assert!(
            text.ends_with("\r\nSec-WebSocket-Protocol: text.ircv3.net\r\n\r\n"),
            "{text}"
        );
    }

    #[test]
    fn origin_must_match_host_or_be_allowed() {
        let check = |origin: Option<&str>, host: &str, allow: &[&str]| -> bool {
            let host_line = format!("Host: {host}");
            let origin_line = origin.map(|o| format!("Origin: {o}"));
            let mut lines = vec!["GET /ws HTTP/1.1", host_line.as_str()];
            lines.extend(origin_line.as_deref());
            origin_allowed(&parsed(&head(&lines)), allow)
        };
        let none: &[&str] = &[];
        assert!(check(None, "127.0.0.1:7878", none), "not a browser");
        assert!(check(Some("http://127.0.0.1:7878"), "127.0.0.1:7878", none));
        assert!(check(
            Some("HTTP://Chat.Example.org:7878"),
            "chat.example.org:7878",
            none
        ));
        // Scheme-insensitive, default ports filled in.
        assert!(check(
            Some("https://chat.example.org"),
            "chat.example.org",
            none
        ));
        assert!(check(
            Some("http://chat.example.org"),
            "chat.example.org",
            none
        ));
        assert!(check(
            Some("http://chat.example.org"),
            "chat.example.org:80",
            none
        ));
        assert!(check(
            Some("https://chat.example.org"),
            "chat.example.org:443",
            none
        ));
        assert!(check(Some("http://[::1]:7878"), "[::1]:7878", none));
        // Anything else is another site.
        assert!(!check(Some("http://evil.example"), "127.0.0.1:7878", none));
        assert!(!check(
            Some("http://127.0.0.1:7879"),
            "127.0.0.1:7878",
            none
        ));
        assert!(!check(Some("http://127.0.0.1"), "127.0.0.1:7878", none));
        assert!(!check(
            Some("https://chat.example.org"),
            "chat.example.org:80",
            none
        ));
        assert!(!check(
            Some("http://chat.example.org.evil.example"),
            "chat.example.org",
            none
        ));
        assert!(!check(Some("http://[::1]:7878"), "[::2]:7878", none));
        assert!(!check(Some("null"), "127.0.0.1:7878", none));
        assert!(!check(Some(""), "127.0.0.1:7878", none));
        // The allow list.
        let allow = ["https://web.example.org", "http://localhost:3000/"];
        assert!(check(
            Some("https://web.example.org"),
            "127.0.0.1:7878",
            &allow
        ));
        assert!(check(
            Some("http://LOCALHOST:3000"),
            "127.0.0.1:7878",
            &allow
        ));
        assert!(!check(
            Some("http://web.example.org"),
            "127.0.0.1:7878",
            &allow
        ));
        assert!(!check(Some("null"), "127.0.0.1:7878", &allow));
    }

    #[test]
    fn responses_are_complete() {
        let r = response(
            Status::Ok,
            "text/plain; charset=utf-8",
            "no-store",
            &[("X-A", "b")],
            b"ok\n",
            false,
        );
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-A: b\r\n\
             Connection: close\r\n\r\nok\n"
        );
        // HEAD: the same headers (the GET's length), no body.
        let h = response(Status::Ok, "text/plain", "no-store", &[], b"12345", true);
        let text = String::from_utf8(h).unwrap();
        assert!(text.contains("\r\nContent-Length: 5\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }

    #[test]
    fn error_responses_carry_what_their_status_needs() {
        let text = |s: Status| String::from_utf8(error_response(s, false)).unwrap();
        assert!(text(Status::NotFound).starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(Status::NotFound).ends_with("\r\n\r\n404 Not Found\n"));
        assert!(text(Status::MethodNotAllowed).contains("\r\nAllow: GET, HEAD\r\n"));
        assert!(text(Status::UpgradeRequired).contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(
            text(Status::HeaderFieldsTooLarge)
                .starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n")
        );
        assert!(
            String::from_utf8(error_response(Status::Forbidden, true))
                .unwrap()
                .ends_with("close\r\n\r\n")
        );
    }
}
