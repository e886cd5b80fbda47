//! loopchat-bench: load generator for loopchat and any Budget Chat server.
//! The logic lives in `loopchat::bench` so `cargo bench` reuses it.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(loopchat::bench::main_with_args(&args));
}
