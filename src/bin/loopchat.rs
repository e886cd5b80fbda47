//! The terminal client (placeholder until the client lands).
fn main() {
    eprintln!("loopchat: the terminal client is not built yet");
    std::process::exit(1);
}
