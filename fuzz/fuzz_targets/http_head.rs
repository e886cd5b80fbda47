//! The HTTP request head and the routes (src/transport/http.rs).
//!
//! Input: the first bytes a client sends on the shared port. Properties:
//! - `looks_like_http` decides from a prefix and never changes its mind
//!   once it has (a longer prefix gives the same answer);
//! - `parse_head` never claims more bytes than it was given nor more than
//!   `MAX_HEAD`; a complete head parses the same when cut right after
//!   it, and every shorter prefix is "incomplete" or an error, never a
//!   different request; more than `MAX_HEAD` bytes without a complete
//!   head is an error (the server cannot be made to buffer more);
//! - `route` always answers; a WebSocket upgrade carries a 28-character
//!   accept key and its 101 response parses back as one HTTP response head;
//!   error responses carry their status code; `origin_allowed` answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loopchat::transport::http::{
    MAX_HEAD, Route, choose_subprotocol, error_response, looks_like_http, origin_allowed,
    parse_head, route, upgrade_response,
};

fuzz_target!(|data: &[u8]| {
    // Sniffing: once decided, a longer prefix agrees.
    let mut decided = None;
    for n in 0..=data.len().min(16) {
        let d = looks_like_http(&data[..n]);
        if let Some(first) = decided {
            assert_eq!(d, Some(first), "changed its mind at {n} bytes");
        }
        decided = decided.or(d);
    }
    match parse_head(data) {
        Ok(Some((req, len))) => {
            assert!(len <= data.len() && len <= MAX_HEAD);
            // The head alone parses to the same request.
            let (again, len2) = parse_head(&data[..len]).unwrap().unwrap();
            assert_eq!(len, len2);
            assert_eq!((req.method, req.target), (again.method, again.target));
            // A prefix of it is never a complete request.
            if len > 0 {
                assert!(!matches!(parse_head(&data[..len - 1]), Ok(Some(_))));
            }
            assert!(req.path().len() <= req.target.len());
            let r = route(&req);
            assert_eq!(route(&again), r);
            let _ = choose_subprotocol(&req);
            let _ = origin_allowed(&req, &["http://example.org", ""]);
            let _ = origin_allowed::<&str>(&req, &[]);
            match r {
                Route::WebSocket(up) => {
                    assert_eq!(up.accept.len(), 28);
                    let resp = upgrade_response(&up);
                    assert!(resp.starts_with(b"HTTP/1.1 101 "));
                    assert!(resp.ends_with(b"\r\n\r\n"));
                    let mut h = [httparse::EMPTY_HEADER; 16];
                    let mut parsed = httparse::Response::new(&mut h);
                    assert_eq!(
                        parsed.parse(&resp).unwrap(),
                        httparse::Status::Complete(resp.len())
                    );
                }
                Route::Error(status) => {
                    assert!((400..500).contains(&status.code()));
                    let resp = error_response(status, req.is_head());
                    let want = format!("HTTP/1.1 {} ", status.code());
                    assert!(resp.starts_with(want.as_bytes()));
                }
                _ => {}
            }
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD, "{} bytes buffered", data.len()),
        Err(status) => {
            assert!(matches!(status.code(), 400 | 431));
        }
    }
});
