//! The server's command line as a user meets it: a bad value is one line on
//! stderr and exit status 2, never a screenful of usage; out-of-range values
//! are refused instead of breaking the room.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the server with `args` on a free port; returns (exit code, stdout,
/// stderr). A server that starts instead of refusing is killed after a few
/// seconds and reported as exit code `None`.
fn server(args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loopchat-server"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run loopchat-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    (code, out, err)
}

/// A bad value prints exactly one line, naming the option and the valid
/// range, with a pointer to --help, and exits 2.
#[test]
fn bad_value_is_one_line_and_exit_2() {
    let (code, out, err) = server(&["--register-timeout", "0"]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err,
        "loopchat-server: --register-timeout: 0 is out of range (1 to 3600 seconds) (try --help)\n"
    );
    assert_eq!(out, "");
}

/// Zero and absurd values that used to be accepted are refused, each with
/// one line.
#[test]
fn out_of_range_values_are_refused() {
    for args in [
        &["--register-timeout", "0"][..],
        &["--invite-timeout", "0"],
        &["--max-line", "100000000"],
        &["--max-clients", "100000000000"],
        &["--burst", "0"],
        &["--max-sendq", "100g"],
        &["--idle-timeout", "-1"],
        &["--nonsense"],
        &["stray"],
    ] {
        let (code, _, err) = server(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("loopchat-server: "), "{args:?}: {err}");
        assert!(err.ends_with(" (try --help)\n"), "{args:?}: {err}");
    }
}

/// --help shows each option's valid range and the clear-text warning.
#[test]
fn help_shows_ranges_and_warns_about_clear_text() {
    let (code, help, _) = server(&["--help"]);
    assert_eq!(code, Some(0));
    for want in [
        "1 to 3600",
        "64 to 65536",
        "off or 1 to 86400",
        "0 = every room (0 to 1000000; default off)",
        "in clear text",
    ] {
        assert!(help.contains(want), "--help lacks {want:?}:\n{help}");
    }
}
