//! `loopchat-bench` run as a child process, its `--json` report read back.

use serde_json::Value;
use std::process::Command;

/// Runs the bench with `--json --quiet`, short join and drain timeouts,
/// then `args`; returns (exit code, JSON).
pub fn bench_json(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_loopchat-bench"))
        .args([
            "--json",
            "--quiet",
            "--join-timeout",
            "10",
            "--drain-timeout",
            "5",
        ])
        .args(args)
        .output()
        .expect("run loopchat-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text:?}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

/// The number at JSON pointer `key`.
pub fn n(v: &Value, key: &str) -> u64 {
    v.pointer(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}
