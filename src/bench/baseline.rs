//! The thread-per-client baseline server, built only for comparison.
//!
//! This is how the systems loopchat replaces are written, done correctly:
//! std::net, one OS thread per client, a `Mutex`-guarded client list, real
//! line framing with a `BufReader`, TCP_NODELAY like loopchat, no sleeps, and
//! a broadcast that writes each line to each recipient's socket under the
//! lock, one `write` per line per recipient. It speaks the same join lines
//! (`* The room contains: ...`, `* X has entered the room`) and relays
//! `[nick] text` to everyone but the sender, so the bench drives it unchanged.

use crate::protocol::validate_nick;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest accepted line, like loopchat's default `--max-line`.
const MAX_LINE: u64 = 4096;

struct Client {
    id: u64,
    nick: String,
    /// Shared with the client's own thread: one descriptor per client.
    stream: Arc<TcpStream>,
}

#[derive(Default)]
struct Room {
    clients: Mutex<Vec<Client>>,
}

impl Room {
    fn lock(&self) -> MutexGuard<'_, Vec<Client>> {
        // A panicking client thread must not take the server down.
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends `line` to every client but `except`, one write per recipient.
fn broadcast(clients: &[Client], except: u64, line: &[u8]) {
    for c in clients.iter().filter(|c| c.id != except) {
        // A failed write is that client's problem: its own thread sees the
        // connection end and removes it.
        let _ = (&*c.stream).write_all(line);
    }
}

/// Reads one line (without `\n` / `\r\n`). `Ok(None)` at end of file. A line
/// longer than MAX_LINE is discarded up to its newline.
fn read_line(reader: &mut BufReader<&TcpStream>, buf: &mut Vec<u8>) -> io::Result<Option<()>> {
    loop {
        buf.clear();
        let n = reader.by_ref().take(MAX_LINE + 1).read_until(b'\n', buf)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(()));
        }
        if (buf.len() as u64) <= MAX_LINE {
            return Ok(None); // partial line at end of file
        }
        // Too long: skip to the end of the line and try the next one.
        loop {
            buf.clear();
            let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', buf)?;
            if n == 0 {
                return Ok(None);
            }
            if buf.last() == Some(&b'\n') {
                break;
            }
        }
    }
}

fn handle(room: Arc<Room>, stream: TcpStream, id: u64) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let stream = Arc::new(stream);
    let mut reader = BufReader::new(&*stream);
    let mut out = &*stream;
    out.write_all(b"* Welcome to the thread-per-client baseline! What shall I call you?\n")?;
    let mut buf = Vec::new();
    if read_line(&mut reader, &mut buf)?.is_none() {
        return Ok(());
    }
    let nick = String::from_utf8_lossy(&buf).trim().to_string();
    if let Err(e) = validate_nick(&nick) {
        out.write_all(format!("! Invalid nickname: {e}.\n").as_bytes())?;
        return Ok(());
    }
    {
        let mut clients = room.lock();
        if clients.iter().any(|c| c.nick.eq_ignore_ascii_case(&nick)) {
            drop(clients);
            out.write_all(format!("! Nickname {nick} is taken.\n").as_bytes())?;
            return Ok(());
        }
        let names: Vec<&str> = clients.iter().map(|c| c.nick.as_str()).collect();
        out.write_all(format!("* The room contains: {}\n", names.join(", ")).as_bytes())?;
        broadcast(
            &clients,
            id,
            format!("* {nick} has entered the room\n").as_bytes(),
        );
        clients.push(Client {
            id,
            nick: nick.clone(),
            stream: Arc::clone(&stream),
        });
    }
    let prefix = format!("[{nick}] ");
    let mut line = Vec::with_capacity(256);
    let result = loop {
        match read_line(&mut reader, &mut buf) {
            Ok(Some(())) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
        if buf.iter().all(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        line.clear();
        line.extend_from_slice(prefix.as_bytes());
        line.extend_from_slice(&buf);
        line.push(b'\n');
        broadcast(&room.lock(), id, &line);
    };
    let mut clients = room.lock();
    clients.retain(|c| c.id != id);
    broadcast(
        &clients,
        id,
        format!("* {nick} has left the room\n").as_bytes(),
    );
    result
}

/// Binds `listen`, prints `listening on ADDR:PORT` and serves forever.
pub fn serve(listen: SocketAddr) -> io::Result<()> {
    super::proc_stats::raise_nofile_limit();
    // The same listening socket as loopchat's (backlog included), so the
    // comparison is about the architecture alone; blocking, as such
    // servers are.
    let listener = crate::server::bind(listen)?;
    let listener: TcpListener = std::os::fd::OwnedFd::from(listener).into();
    listener.set_nonblocking(false)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    serve_listener(listener)
}

/// Serves clients from `listener` forever (tests run it on a thread).
pub fn serve_listener(listener: TcpListener) -> io::Result<()> {
    let room = Arc::new(Room::default());
    let mut next_id = 0u64;
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("threaded_server: accept: {e}");
                // Out of descriptors: back off instead of spinning.
                if e.raw_os_error() == Some(libc::EMFILE) {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let room = Arc::clone(&room);
        if let Err(e) = std::thread::Builder::new().spawn(move || {
            let _ = handle(room, stream, id);
        }) {
            eprintln!("threaded_server: spawn: {e}");
        }
    }
    Ok(())
}

/// `threaded_server [--listen ADDR:PORT]` (default 127.0.0.1:7879).
pub fn main_with_args(args: &[String]) -> i32 {
    let mut opts = getopts::Options::new();
    opts.optopt(
        "l",
        "listen",
        "address to listen on (default 127.0.0.1:7879)",
        "ADDR:PORT",
    );
    opts.optflag("h", "help", "print this help");
    let usage = opts.usage("Usage: threaded_server [--listen ADDR:PORT]\n\nThe thread-per-client baseline chat server (Budget Chat grammar).");
    let m = match opts.parse(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("threaded_server: {e}\n\n{usage}");
            return 2;
        }
    };
    if m.opt_present("help") {
        print!("{usage}");
        return 0;
    }
    let text = m
        .opt_str("listen")
        .unwrap_or_else(|| "127.0.0.1:7879".into());
    let Ok(addr) = text.parse::<SocketAddr>() else {
        eprintln!("threaded_server: bad --listen address: {text:?}\n\n{usage}");
        return 2;
    };
    match serve(addr) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("threaded_server: {e}");
            1
        }
    }
}
