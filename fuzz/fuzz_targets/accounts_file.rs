//! The accounts file parser (src/accounts.rs), through the public
//! `Accounts::load` and `Accounts::save_atomic` (no src/ change needed).
//!
//! Input: the file's bytes, written to a file in /dev/shm (tmpfs: the
//! fsyncs of `save_atomic` cost nothing there). Properties:
//! - `load` either errors or gives a store whose every account can be
//!   looked up by its name in any ASCII case;
//! - saved and loaded again, it has the same accounts (names and PHC
//!   strings) in the same number;
//! - saving that again writes the same bytes (one round reaches the
//!   fixed point).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use loopchat::accounts::Accounts;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("loopchat-fuzz-accounts-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
}

/// Every account, as `(name, phc)`, looked up by the names in `text`.
fn accounts(store: &Accounts, text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some((n, phc)) = store.lookup(name) {
            assert!(n.eq_ignore_ascii_case(name));
            assert!(store.lookup(&name.to_ascii_uppercase()).is_some());
            assert!(store.lookup(&name.to_ascii_lowercase()).is_some());
            out.push((n.to_string(), phc.to_string()));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let first = dir().join("first");
    let second = dir().join("second");
    std::fs::write(&first, data).unwrap();
    let Ok(store) = Accounts::load(&first) else {
        return;
    };
    let text = String::from_utf8(data.to_vec()).expect("load took non-UTF-8");
    let before = accounts(&store, &text);
    // Re-serialise: save under another name, load that.
    std::fs::copy(&first, &second).unwrap();
    let mut moved = Accounts::load(&second).unwrap();
    moved.save_atomic().unwrap();
    let saved = std::fs::read_to_string(&second).unwrap();
    let mut again = Accounts::load(&second)
        .unwrap_or_else(|e| panic!("the saved file does not load: {e}\n{saved:?}"));
    assert_eq!(again.len(), store.len());
    assert_eq!(accounts(&again, &text), before);
    again.save_atomic().unwrap();
    let saved2 = std::fs::read_to_string(&second).unwrap();
    assert_eq!(saved, saved2, "saving twice changed the file");
});
