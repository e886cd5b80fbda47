//! `loopchat-server --add-user` on a terminal: a prompt on stderr, the
//! password not echoed, asked twice, and the terminal's echo restored
//! afterwards, also when Ctrl-C interrupts the prompt. Driven in a real
//! terminal under tmux; skipped with a note when tmux is not installed.

mod common;

use std::time::Duration;

use common::accounts::accounts_file_in;
use common::tmux;

/// A private tmux server (its own socket name), killed on drop.
/// The tmux server of one test, running the admin command in session
/// `admin`.
struct Tmux(tmux::Tmux);

impl Tmux {
    fn available() -> bool {
        tmux::Tmux::available()
    }

    fn new(tag: &str) -> Tmux {
        Tmux(tmux::Tmux::new(&format!("admin-{tag}")))
    }

    fn add_user(&self, file: &std::path::Path, name: &str) {
        let cmd = format!(
            "trap 'echo interrupted' INT; {} --accounts {} --add-user {name}; echo \"exit status $?\"; read x",
            env!("CARGO_BIN_EXE_loopchat-server"),
            file.display()
        );
        self.0.session("admin", 100, 20, &cmd);
    }

    /// Polls the screen until `pred` holds; panics with the screen otherwise.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.0
            .wait_for("admin", what, Duration::from_secs(20), pred)
    }

    fn keys(&self, keys: &[&str]) {
        self.0.keys("admin", keys);
    }
}

/// Runs `--add-user zed` on the terminal, types `first` and `second` at
/// its two prompts, and returns the screen once the exit status shows.
fn add_zed(tmux: &Tmux, file: &std::path::Path, first: &str, second: &str) -> String {
    tmux.add_user(file, "zed");
    tmux.wait_for("the prompt", |s| s.contains("Password for zed:"));
    tmux.keys(&["-l", first]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the second prompt", |s| {
        s.contains("Password for zed (again):")
    });
    tmux.keys(&["-l", second]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("the exit status", |s| s.contains("exit status"))
}

/// The prompt appears, the typed password is never on screen, a mismatch
/// is refused, and echo is back once the command is done.
#[test]
fn add_user_on_a_terminal_prompts_without_echo() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the terminal test");
        return;
    }
    let file = accounts_file_in("admin-tty");
    let tmux = Tmux::new("prompt");
    let s = add_zed(&tmux, &file, "Sw0rdfish-1", "Sw0rdfish-1");
    assert!(s.contains("exit status 0"), "{s}");
    assert!(!s.contains("Sw0rdfish"), "the password was echoed:\n{s}");
    // Echo is on again: the shell's `read` shows what is typed.
    tmux.keys(&["-l", "echo-is-back"]);
    tmux.wait_for("the echo", |s| s.contains("echo-is-back"));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nzed $argon2id$"), "{text}");
    assert!(!text.contains("Sw0rdfish"), "{text}");
}

/// Two different passwords: refused (exit 1), nothing added. Ctrl-C at the
/// prompt: the command dies, and the terminal echoes again.
#[test]
fn add_user_on_a_terminal_mismatch_and_ctrl_c() {
    if !Tmux::available() {
        eprintln!("note: tmux is not installed; skipping the terminal test");
        return;
    }
    let file = accounts_file_in("admin-tty");
    let tmux = Tmux::new("mismatch");
    let s = add_zed(&tmux, &file, "Sw0rdfish-1", "Sw0rdfish-2");
    assert!(
        s.contains("loopchat-server: the two passwords differ; nothing was changed"),
        "{s}"
    );
    assert!(s.contains("exit status 1"), "{s}");
    assert!(!s.contains("Sw0rdfish"), "{s}");
    assert!(!file.exists() || !std::fs::read_to_string(&file).unwrap().contains("zed"));

    // A tmux server of its own: a new session on the first one could race
    // with that server's exit once its session is gone.
    let tmux = Tmux::new("ctrl-c");
    tmux.add_user(&file, "zed");
    tmux.wait_for("the prompt", |s| s.contains("Password for zed:"));
    tmux.keys(&["-l", "half-typed"]);
    tmux.keys(&["C-c"]);
    let s = tmux.wait_for("the exit status", |s| s.contains("exit status"));
    assert!(s.contains("exit status 130"), "{s}");
    assert!(!s.contains("half-typed"), "{s}");
    tmux.keys(&["-l", "echo-is-back"]);
    tmux.wait_for("the echo", |s| s.contains("echo-is-back"));
}
