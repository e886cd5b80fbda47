//! `loopchat-server`: parse the command line, set up logging, bind, serve.

use std::io::Write;
use std::process::ExitCode;

use loopchat::config::{self, Command, Config};

fn main() -> ExitCode {
    let config = match config::parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help(usage)) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("loopchat-server {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loopchat-server: {e}\n\n{}", config::usage());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("loopchat-server: {e}");
        return ExitCode::from(1);
    }
    let listener = match mio::net::TcpListener::bind(config.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("loopchat-server: cannot listen on {}: {e}", config.listen);
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    // One stable line on stdout, for scripts and tests to read the port from.
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    log::info!("listening on {addr}");
    match loopchat::server::run(listener, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr, and with `--log-file` also appended to that file.
fn init_logging(config: &Config) -> Result<(), String> {
    use simplelog::{CombinedLogger, ConfigBuilder, SharedLogger, WriteLogger};
    let mut builder = ConfigBuilder::new();
    builder.set_target_level(log::LevelFilter::Off);
    builder.set_thread_level(log::LevelFilter::Off);
    // Single-threaded, so the local offset can be read safely.
    let _ = builder.set_time_offset_to_local();
    let log_config = builder.build();
    let mut loggers: Vec<Box<dyn SharedLogger>> = vec![WriteLogger::new(
        config.log_level,
        log_config.clone(),
        std::io::stderr(),
    )];
    if let Some(path) = &config.log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        loggers.push(WriteLogger::new(config.log_level, log_config, file));
    }
    CombinedLogger::init(loggers).map_err(|e| e.to_string())
}
