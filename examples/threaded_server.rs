//! The thread-per-client baseline server (see `loopchat::bench::baseline`),
//! for comparison runs: `cargo run --release --example threaded_server -- --listen 127.0.0.1:7879`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(loopchat::bench::baseline::main_with_args(&args));
}
