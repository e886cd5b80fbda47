//! `loopchat-server`: parse the command line, set up logging, bind, serve.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use loopchat::accounts::{self, Accounts};
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
        Ok(Command::AddUser { accounts, name }) => return admin(add_user(&accounts, &name)),
        Ok(Command::RemoveUser { accounts, name }) => {
            return admin(remove_user(&accounts, &name));
        }
        Err(e) => {
            eprintln!("loopchat-server: {e} (try --help)");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&config) {
        eprintln!("loopchat-server: {e}");
        return ExitCode::from(1);
    }
    // Loaded before binding: a malformed file stops the server at once.
    let store = match config.accounts.as_deref().map(Accounts::load).transpose() {
        Ok(store) => store,
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(store) = &store {
        log::info!(
            "accounts on: {} accounts in {}",
            store.len(),
            store.path().display()
        );
    }
    let listener = match loopchat::server::bind(config.listen) {
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
    let served = match store {
        Some(store) => loopchat::server::run_with_accounts(listener, config, store),
        None => loopchat::server::run(listener, config),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Exit status of an admin command: 0, or 1 with the error on stderr.
fn admin(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// `--add-user NAME`: the password is the first line of stdin.
fn add_user(file: &Path, name: &str) -> Result<String, String> {
    let mut store = Accounts::load(file)?;
    loopchat::protocol::validate_nick(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    if store.lookup(name).is_some() {
        return Err(format!(
            "account {name} already exists (--remove-user it first to reset its password)"
        ));
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    accounts::check_new_password(password)?;
    let phc = accounts::hash_password(password)?;
    store.add(name, &phc)?;
    store
        .save_atomic()
        .map_err(|e| format!("cannot save {}: {e}", file.display()))?;
    Ok(format!("added account {name} to {}", file.display()))
}

/// `--remove-user NAME`.
fn remove_user(file: &Path, name: &str) -> Result<String, String> {
    let mut store = Accounts::load(file)?;
    if !store.remove(name) {
        return Err(format!("no account {name} in {}", file.display()));
    }
    store
        .save_atomic()
        .map_err(|e| format!("cannot save {}: {e}", file.display()))?;
    Ok(format!("removed account {name} from {}", file.display()))
}

/// Logs go to stderr, and with `--log-file` also appended to that file
/// (see `loopchat::logging`).
fn init_logging(config: &Config) -> Result<(), String> {
    loopchat::logging::init(config.log_level, config.log_file.as_deref())
}
