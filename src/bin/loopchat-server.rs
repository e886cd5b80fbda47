//! `loopchat-server`: parse the command line, set up logging, bind, serve.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use loopchat::accounts::{self, Accounts, FileLock};
use loopchat::config::{self, Command, Config};

fn main() -> ExitCode {
    let mut config = match config::parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(config)) => *config,
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
    if let Some(path) = &config.motd_file {
        match std::fs::read_to_string(path) {
            Ok(text) => config.irc.motd = Some(text.lines().map(str::to_string).collect()),
            Err(e) => {
                eprintln!(
                    "loopchat-server: cannot read the MOTD {}: {e}",
                    path.display()
                );
                return ExitCode::from(1);
            }
        }
    }
    config.irc.created = loopchat::logging::timestamp();
    // A certificate that cannot be used stops the server here, with the
    // reason, rather than failing every handshake later.
    let tls = match config.tls.as_ref().map(|files| files.load()).transpose() {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            return ExitCode::from(1);
        }
    };
    // Locked, loaded and checked before binding: a file another server
    // uses, a malformed file or one that cannot be written stops the
    // server at once. The lock is held until the process exits.
    let (store, _lock) = match config.accounts.as_deref().map(open_accounts).transpose() {
        Ok(Some((store, lock))) => (Some(store), Some(lock)),
        Ok(None) => (None, None),
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
    // Sockets passed by systemd (LISTEN_FDS) replace --listen.
    let (listener, mut irc_listeners, mut tls_listeners) = match loopchat::activation::listeners() {
        Ok(Some(passed)) if !passed.tls.is_empty() && tls.is_none() => {
            eprintln!(
                "loopchat-server: socket activation: a socket named tls needs --tls-cert and --tls-key"
            );
            return ExitCode::from(1);
        }
        Ok(Some(passed)) => {
            log::info!(
                "socket activation: {} socket(s) from systemd",
                1 + passed.irc.len() + passed.tls.len()
            );
            (passed.main, passed.irc, passed.tls)
        }
        Ok(None) => match loopchat::server::bind_with(config.listen, config.reuse_port) {
            Ok(l) => (l, Vec::new(), Vec::new()),
            Err(e) => {
                eprintln!("loopchat-server: cannot listen on {}: {e}", config.listen);
                return ExitCode::from(1);
            }
        },
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            return ExitCode::from(1);
        }
    };
    let addr = listener.local_addr().map_or(config.listen, |a| a);
    // One stable line on stdout, for scripts and tests to read the port from.
    println!("listening on {addr}");
    let _ = std::io::stdout().flush();
    log::info!("listening on {addr}");
    for l in &irc_listeners {
        if let Ok(addr) = l.local_addr() {
            println!("irc listening on {addr}");
            log::info!("irc listening on {addr}");
        }
    }
    for l in &tls_listeners {
        if let Ok(addr) = l.local_addr() {
            println!("tls listening on {addr}");
            log::info!("tls listening on {addr}");
        }
    }
    for want in config.irc_listen.clone() {
        match loopchat::server::bind_with(want, config.reuse_port) {
            Ok(l) => {
                let addr = l.local_addr().map_or(want, |a| a);
                println!("irc listening on {addr}");
                log::info!("irc listening on {addr}");
                irc_listeners.push(l);
            }
            Err(e) => {
                eprintln!("loopchat-server: cannot listen on {want}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    for want in config.tls_listen.clone() {
        match loopchat::server::bind_with(want, config.reuse_port) {
            Ok(l) => {
                let addr = l.local_addr().map_or(want, |a| a);
                println!("tls listening on {addr}");
                log::info!("tls listening on {addr}");
                tls_listeners.push(l);
            }
            Err(e) => {
                eprintln!("loopchat-server: cannot listen on {want}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let _ = std::io::stdout().flush();
    let served = serve(listener, irc_listeners, tls_listeners, tls, config, store);
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Builds the server from its listeners and runs it until shutdown.
fn serve(
    listener: mio::net::TcpListener,
    irc_listeners: Vec<mio::net::TcpListener>,
    tls_listeners: Vec<mio::net::TcpListener>,
    tls: Option<loopchat::tls::Acceptor>,
    config: Config,
    store: Option<Accounts>,
) -> std::io::Result<()> {
    // Resolved here, once, before the loop: getaddrinfo blocks, and the
    // loop must not (docs/scale-out.md).
    let bridge = match &config.redis {
        Some(target) => {
            let addr = target
                .resolve()
                .map_err(|e| std::io::Error::other(format!("--redis {}: {e}", target.host)))?;
            let node = config
                .node_id
                .clone()
                .unwrap_or_else(loopchat::bridge::default_node_id);
            Some((target.clone(), addr, node))
        }
        None => None,
    };
    let mut server = loopchat::server::Server::new(listener, config)?;
    if let Some((target, addr, node)) = bridge {
        server.set_bridge(target, addr, node);
    }
    for socket in irc_listeners {
        server.add_irc_listener(socket)?;
    }
    if let Some(tls) = tls {
        server.set_tls(tls);
    }
    for socket in tls_listeners {
        server.add_tls_listener(socket)?;
    }
    match store {
        Some(store) => server.with_accounts(store).serve(),
        None => server.serve(),
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

/// The server's accounts: locked against other processes, loaded, and
/// shown to be writable.
fn open_accounts(file: &Path) -> Result<(Accounts, FileLock), String> {
    let lock = FileLock::acquire(file)?;
    let mut store = Accounts::load(file)?;
    store.ensure_writable()?;
    Ok((store, lock))
}

/// `--add-user NAME`: the password is typed twice at a prompt, without
/// echo, when stdin is a terminal; otherwise it is the first line of stdin.
/// Works beside a running server: the file is edited under the edit lock
/// (taken after the prompt and the hash, so a server's save waits
/// milliseconds at most), and the server re-reads it on SIGHUP.
fn add_user(file: &Path, name: &str) -> Result<String, String> {
    loopchat::protocol::validate_nick(name).map_err(|e| format!("invalid name {name:?}: {e}"))?;
    let exists = |store: &Accounts| {
        if store.lookup(name).is_some() {
            Err(format!(
                "account {name} already exists (--remove-user it first to reset its password)"
            ))
        } else {
            Ok(())
        }
    };
    exists(&Accounts::load(file)?)?;
    let password = if std::io::stdin().is_terminal() {
        let first = terminal::read_password(&format!("Password for {name}: "))?;
        accounts::check_new_password(&first)?;
        let again = terminal::read_password(&format!("Password for {name} (again): "))?;
        if again != first {
            return Err("the two passwords differ; nothing was changed".into());
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("reading the password from stdin: {e}"))?;
        let password = line.strip_suffix('\n').unwrap_or(&line);
        password.strip_suffix('\r').unwrap_or(password).to_string()
    };
    let password = password.as_str();
    accounts::check_new_password(password)?;
    let phc = accounts::hash_password(password)?;
    let _edit = FileLock::edit(file)?;
    let mut store = Accounts::load(file)?;
    exists(&store)?;
    store.add(name, &phc)?;
    store
        .save_atomic()
        .map_err(|e| format!("cannot save {}: {e}", file.display()))?;
    Ok(format!("added account {name} to {}", file.display()))
}

/// `--remove-user NAME` (beside a running server too, as `--add-user`).
fn remove_user(file: &Path, name: &str) -> Result<String, String> {
    let _edit = FileLock::edit(file)?;
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

/// Reading a password at a terminal without showing it.
mod terminal {
    use std::io::{BufRead, Write};
    use std::sync::OnceLock;

    /// The terminal's attributes before echo was turned off, for the
    /// signal handler (set once: both prompts start from the same state).
    static SAVED: OnceLock<libc::termios> = OnceLock::new();

    /// Signals that end the process while echo is off.
    const FATAL: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

    /// Restores the terminal, then dies of `sig` as it would have.
    extern "C" fn restore_and_die(sig: libc::c_int) {
        // SAFETY: tcsetattr, signal and raise are async-signal-safe; SAVED
        // was set before this handler was installed.
        unsafe {
            if let Some(saved) = SAVED.get() {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved);
            }
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig); // delivered when this handler returns
        }
    }

    /// Echo off on stdin for as long as it lives. Dropping it, or a signal
    /// that kills the process meanwhile (Ctrl-C), turns echo back on: the
    /// shell is not bound to repair the terminal after us.
    struct EchoOff {
        saved: libc::termios,
        /// The signal actions replaced, restored on drop.
        previous: Vec<(libc::c_int, libc::sigaction)>,
    }

    impl EchoOff {
        fn new() -> std::io::Result<EchoOff> {
            // SAFETY: tcgetattr fills the struct we pass; zeroed is valid.
            let mut saved: libc::termios = unsafe { std::mem::zeroed() };
            if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let saved = *SAVED.get_or_init(|| saved);
            let mut echo_off = EchoOff {
                saved,
                previous: Vec::new(),
            };
            for sig in FATAL {
                // SAFETY: installs a handler for a signal, keeping the old
                // action; zeroed sigaction is valid (empty mask, no flags).
                unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                        || old.sa_sigaction == libc::SIG_IGN
                    {
                        continue; // ignored (nohup): leave it so
                    }
                    let mut new: libc::sigaction = std::mem::zeroed();
                    new.sa_sigaction = restore_and_die as *const () as libc::sighandler_t;
                    if libc::sigaction(sig, &new, std::ptr::null_mut()) == 0 {
                        echo_off.previous.push((sig, old));
                    }
                }
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            // SAFETY: sets the attributes of stdin from a valid struct.
            if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(echo_off)
        }
    }

    impl Drop for EchoOff {
        fn drop(&mut self) {
            // SAFETY: restores the attributes and signal actions saved in `new`.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
                for (sig, old) in self.previous.drain(..) {
                    libc::sigaction(sig, &old, std::ptr::null_mut());
                }
            }
        }
    }

    /// Turns echo off, then prints `prompt` on stderr (so that what is
    /// typed once the prompt shows is never echoed) and reads one line
    /// from the terminal on stdin; the newline the user typed is not
    /// echoed either, so one is printed after.
    pub fn read_password(prompt: &str) -> Result<String, String> {
        let echo_off =
            EchoOff::new().map_err(|e| format!("cannot turn the terminal's echo off: {e}"))?;
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        drop(echo_off);
        eprintln!();
        match read {
            Ok(0) => Err("no password typed (end of input)".into()),
            Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
            Err(e) => Err(format!("reading the password: {e}")),
        }
    }
}
