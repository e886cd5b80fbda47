//! The load generator (placeholder until the bench lands).
fn main() {
    eprintln!("loopchat-bench: not built yet");
    std::process::exit(1);
}
