//! WebSocket frames written and read back (src/transport/websocket.rs).
//!
//! Input: a script (read with `arbitrary`) of
//! - server frames (`encode_text`, `encode_binary`, `encode_ping`,
//!   `encode_close`, `frame_header` + payload), all written into one
//!   stream and parsed back by the client-side `parse_unmasked`: each
//!   frame comes back whole with the same opcode and payload (pings cut
//!   to 125 bytes, close reasons at a character boundary), every proper
//!   prefix of a frame is "incomplete", never a frame or an error;
//! - client messages (text or binary, cut into fragments, pings in
//!   between, any mask), written by `encode_masked` and fed to the
//!   server's `WsFramer` in reads of arbitrary sizes: the same messages
//!   come out, in order, and one pong per ping with its payload;
//! - the rest of the input as a server stream for `parse_unmasked`: it
//!   never claims more bytes than it has.
#![no_main]

use std::ops::ControlFlow;

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use loopchat::transport::websocket::{
    MAX_CONTROL, Opcode, WsEvent, WsFramer, encode_binary, encode_close, encode_masked,
    encode_ping, encode_text, frame_header, parse_unmasked,
};

#[derive(Arbitrary, Debug)]
enum ServerFrame {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Close(u16, String),
    Header(bool, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct ClientMessage {
    text: bool,
    payload: Vec<u8>,
    /// Fragment lengths (cycled); a ping after each fragment if set.
    cuts: Vec<u8>,
    pings: Option<Vec<u8>>,
    mask: [u8; 4],
}

fn server_side(u: &mut Unstructured<'_>) -> Result<()> {
    let frames: Vec<ServerFrame> = u.arbitrary()?;
    let mut stream = Vec::new();
    let mut want: Vec<(Opcode, Vec<u8>)> = Vec::new();
    for f in &frames {
        match f {
            ServerFrame::Text(t) => {
                encode_text(t.as_bytes(), &mut stream);
                want.push((Opcode::Text, t.as_bytes().to_vec()));
            }
            ServerFrame::Binary(b) => {
                encode_binary(b, &mut stream);
                want.push((Opcode::Binary, b.clone()));
            }
            ServerFrame::Ping(p) => {
                encode_ping(p, &mut stream);
                want.push((Opcode::Ping, p[..p.len().min(MAX_CONTROL)].to_vec()));
            }
            ServerFrame::Close(code, reason) => {
                encode_close(*code, reason, &mut stream);
                let mut end = reason.len().min(MAX_CONTROL - 2);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                let mut p = code.to_be_bytes().to_vec();
                p.extend_from_slice(&reason.as_bytes()[..end]);
                want.push((Opcode::Close, p));
            }
            ServerFrame::Header(text, payload) => {
                let op = if *text { Opcode::Text } else { Opcode::Binary };
                let (head, n) = frame_header(op, payload.len());
                stream.extend_from_slice(&head[..n]);
                stream.extend_from_slice(payload);
                want.push((op, payload.clone()));
            }
        }
    }
    let mut at = 0;
    for (op, payload) in &want {
        let (frame, used) = parse_unmasked(&stream[at..])
            .expect("our own frame is malformed")
            .expect("our own frame is incomplete");
        assert_eq!((frame.opcode, frame.fin), (*op, true));
        assert_eq!(frame.payload, &payload[..]);
        // Every proper prefix is incomplete.
        for cut in [0, 1, used / 2, used - 1] {
            if cut < used {
                assert_eq!(parse_unmasked(&stream[at..at + cut]), Ok(None), "cut {cut}");
            }
        }
        at += used;
    }
    assert_eq!(at, stream.len());
    Ok(())
}

fn client_side(u: &mut Unstructured<'_>) -> Result<()> {
    let msgs: Vec<ClientMessage> = u.arbitrary()?;
    let reads: Vec<u8> = u.arbitrary()?;
    let mut wire = Vec::new();
    let mut want = Vec::new();
    for m in &msgs {
        let payload = if m.text {
            String::from_utf8_lossy(&m.payload)
                .into_owned()
                .into_bytes()
        } else {
            m.payload.clone()
        };
        let first = if m.text { Opcode::Text } else { Opcode::Binary };
        let mut rest = &payload[..];
        let mut i = 0;
        loop {
            let n = match m.cuts.get(i % m.cuts.len().max(1)) {
                Some(&c) if !m.cuts.is_empty() => usize::from(c).min(rest.len()),
                _ => rest.len(),
            };
            let (piece, tail) = rest.split_at(n);
            let op = if i == 0 { first } else { Opcode::Continuation };
            let fin = tail.is_empty() || i > 64;
            let piece = if i > 64 { rest } else { piece };
            let mut mask = m.mask;
            mask[0] = mask[0].wrapping_add(i as u8);
            encode_masked(op, fin, piece, mask, &mut wire);
            if let Some(p) = &m.pings {
                let p = &p[..p.len().min(MAX_CONTROL)];
                encode_masked(Opcode::Ping, true, p, m.mask, &mut wire);
                let mut pong = vec![0x8A, p.len() as u8];
                pong.extend_from_slice(p);
                want.push(Ok(pong));
            }
            if fin {
                break;
            }
            rest = tail;
            i += 1;
        }
        want.push(Err((m.text, payload)));
    }
    // Pongs come as soon as their ping is read; messages when complete.
    // Reorder `want` into that order: a message after its last pong.
    let mut framer = WsFramer::new(1 << 20);
    let mut got = Vec::new();
    let mut at = 0;
    let mut k = 0;
    while at < wire.len() {
        let n = match reads.get(k) {
            Some(&r) => (usize::from(r) + 1).min(wire.len() - at),
            None => wire.len() - at,
        };
        k += 1;
        let mut read = wire[at..at + n].to_vec();
        at += n;
        framer.feed(&mut read, &mut |e| {
            got.push(match e {
                WsEvent::Text(t) => Err((true, t.to_vec())),
                WsEvent::Binary(b) => Err((false, b.to_vec())),
                WsEvent::Reply(r) => Ok(r.to_vec()),
                other => panic!("unexpected {other:?}"),
            });
            ControlFlow::Continue(())
        });
    }
    // Order: each message's pongs (one per fragment) then the message,
    // except that the last fragment's ping follows the message.
    let mut expected = Vec::new();
    let mut pending_pong = None;
    for w in want {
        match w {
            Ok(p) => {
                if let Some(prev) = pending_pong.take() {
                    expected.push(Ok(prev));
                }
                pending_pong = Some(p);
            }
            Err(m) => {
                expected.push(Err(m));
                if let Some(p) = pending_pong.take() {
                    expected.push(Ok(p));
                }
            }
        }
    }
    assert_eq!(got, expected);
    // Our close, read back.
    let mut out = Vec::new();
    framer.close(1000, "bye", &mut out);
    let (f, used) = parse_unmasked(&out).unwrap().unwrap();
    assert_eq!(
        (f.opcode, used, f.payload),
        (Opcode::Close, out.len(), &b"\x03\xe8bye"[..])
    );
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = server_side(&mut u);
    let _ = client_side(&mut u);
    let rest = u.take_rest();
    let mut at = 0;
    while let Ok(Some((f, used))) = parse_unmasked(&rest[at..]) {
        assert!(used >= 2 + f.payload.len() && at + used <= rest.len());
        at += used;
    }
});
