//! `loopchat`: the terminal client. All the logic is in `loopchat::client`.
use loopchat::client::{Command, parse_args, run};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse_args(&args) {
        Ok(Command::Run(opts)) => run(&opts),
        Ok(Command::Help(text)) => {
            print!("{text}");
            0
        }
        Ok(Command::Version) => {
            println!("loopchat {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Err(e) => {
            eprintln!("loopchat: {e} (try --help)");
            2
        }
    };
    std::process::exit(code);
}
