//! The accounts file against the real binary: a running server locks it
//! against the admin commands, a folder that does not exist stops start-up,
//! the file is private (0600).

mod common;

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::accounts::{accounts_file_in, admin, login, start};

fn accounts_file() -> std::path::PathBuf {
    accounts_file_in("accounts-file")
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Runs the server with `args` and waits (bounded) for it to exit, as it
/// should at start-up; kills it and panics if it starts serving instead.
fn start_up_fails(args: &[&OsStr]) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started instead of exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// While a server runs on the file, a second server on the same file does
/// not start (exit 1, with the reason), and the file is left as it was;
/// the admin commands work beside it (tests/accounts_ops.rs).
#[test]
fn a_running_server_locks_its_accounts_file() {
    let file = accounts_file();
    let mut s = start(&file, &[]);
    drop(login(&s, "alice", "alice-password"));
    let before = std::fs::read(&file).unwrap();
    let busy = format!(
        "loopchat-server: accounts file {} is in use by a running loopchat-server; stop it first\n",
        file.display()
    );
    assert_eq!(
        start_up_fails(&[OsStr::new("--accounts"), file.as_os_str()]),
        (1, busy)
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "the file changed");

    s.signal(libc::SIGTERM);
    assert!(s.wait_exit(Duration::from_secs(10)).is_some());
    assert_eq!(
        admin(&file, &["--add-user", "erin"], "erin-password\n").0,
        0
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nerin $argon2id$"), "{text}");
}

/// `--accounts` in a folder that does not exist stops the server at
/// start-up with the reason (exit 1), instead of failing every
/// registration later.
#[test]
fn accounts_in_a_missing_folder_stop_start_up() {
    let file = accounts_file();
    let missing = file.parent().unwrap().join("no-such-folder");
    let file = missing.join("accounts.txt");
    let (code, err) = start_up_fails(&[OsStr::new("--accounts"), file.as_os_str()]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        format!(
            "loopchat-server: accounts file {}: folder {} does not exist\n",
            file.display(),
            missing.display()
        )
    );
}

/// The accounts file holds password hashes: it is created 0600 by a
/// registration and by `--add-user`, and a later save never widens an
/// existing file's mode (an administrator's group bits are kept, access
/// for others is dropped).
#[test]
fn the_accounts_file_is_private() {
    let file = accounts_file();
    {
        let s = start(&file, &[]);
        drop(login(&s, "alice", "alice-password"));
        assert_eq!(mode(&file), 0o600);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(login(&s, "bob", "bob-password1"));
        assert_eq!(mode(&file), 0o640);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        drop(login(&s, "carl", "carl-password"));
        assert_eq!(mode(&file), 0o400);
    }
    let other = accounts_file();
    assert_eq!(
        admin(&other, &["--add-user", "erin"], "erin-password\n").0,
        0
    );
    assert_eq!(mode(&other), 0o600);
    let dir = other.parent().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path) & 0o077, 0, "{} is not private", path.display());
    }
}
