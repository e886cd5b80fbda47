//! The learner's docs cannot drift from the code: every file and every Rust
//! name that docs/tour.md and docs/architecture.md mention must exist in
//! the tree. Rename `Server::read_from` and forget the docs, and this test
//! fails and names the doc and line.
//!
//! What counts as a mention, and how each is checked:
//!
//! - **A path**: a word that starts with `src/`, `tests/`, `examples/`,
//!   `benches/` or `docs/` (not in the middle of a longer path such as
//!   `target/debug/examples/tiny_loop` or `../src/x.rs`), made of letters,
//!   digits, `_`, `-`, `.` and `/`, trailing `.` dropped. Anywhere in the
//!   doc, code blocks included. It must exist, as a file or a folder.
//! - **A qualified name**: the whole text of a backticked span outside code
//!   blocks, an argument list `(...)` dropped, that is a Rust path of two or
//!   more segments, optionally after `crate::`. Paths into other crates
//!   (`std::`, `mio::`, ...) and methods of their types (`Poll::poll`,
//!   `TcpStream::set_nodelay`: see [`EXTERNAL_TYPES`]) are skipped.
//!   - `Type::member` (`Server::read_from`, `LineFramer::buf`,
//!     `Timer::Refill`): `struct`, `enum`, `trait` or `type Type` is
//!     defined somewhere in the tree, and in the same file (or, for a
//!     `mod.rs` or `x.rs`, in its module folder) a snake_case member is a
//!     `fn member` or a field `member:`; a CamelCase or UPPER_CASE member
//!     (a variant or an associated constant) occurs as a word.
//!   - `module::item` (`accounts::run_job`, `dialect::irc::handle`,
//!     `config::GREETING_HOLD`, `chat::Core`): the module is a file
//!     `src/a/b.rs` or a folder `src/a/b/`, and it defines the item by its
//!     case: `fn` for snake_case, a type for CamelCase, `const` or `static`
//!     for UPPER_CASE. A trailing `*` (`config::AUTH_DELAY_*`) matches any
//!     ending. `module::Type::member` checks the type in that module.
//! - **A bare snake_case name with an underscore** in backticks
//!   (`read_from`, `flush_list`, a test's name such as
//!   `idle_server_uses_no_cpu`): it occurs as a whole word in some `.rs`
//!   file under `src/`, `tests/`, `examples/` or `benches/`. So does a
//!   bare UPPER_CASE name with an underscore (`FAIR_READ`; with a trailing
//!   `*`, as in `ARGON2_*`, any word it starts). Words that name things
//!   outside Rust (a `/proc` field, a socket option we do not use) are in
//!   [`NOT_RUST`].
//!
//! A doc that names something this rule cannot check should be reworded
//! (or the thing added to one of the two lists, with a reason), not
//! skipped silently.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The docs checked.
const DOCS: &[&str] = &["docs/tour.md", "docs/architecture.md"];

/// Folders a path mention may start with.
const PATH_ROOTS: &[&str] = &["src/", "tests/", "examples/", "benches/", "docs/"];

/// Folders whose `.rs` files are the source tree.
const SOURCE_ROOTS: &[&str] = &["src", "tests", "examples", "benches"];

/// Crates (and std modules) whose paths the docs may name.
const EXTERNAL_MODULES: &[&str] = &[
    "std", "core", "alloc", "io", "thread", "mio", "slab", "libc", "socket2", "log", "argon2",
];

/// Types from other crates whose methods the docs name.
const EXTERNAL_TYPES: &[&str] = &[
    "Poll",        // mio: `Poll::poll`
    "TcpStream",   // mio: `TcpStream::set_nodelay`
    "TcpListener", // mio
    "Interest",    // mio: `Interest::READABLE`
    "Slab",        // slab
    "Instant",     // std
    "Duration",    // std
];

/// Backticked snake_case words that are not Rust names.
const NOT_RUST: &[&str] = &[
    "voluntary_ctxt_switches", // a field of /proc/PID/status (tour, step 5)
    "SO_REUSEPORT",            // what a multi-core server would use (architecture)
];

/// One mention, and where it is.
struct Mention {
    doc: &'static str,
    line: usize,
    text: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under the source roots, with its text.
fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                if let Ok(text) = fs::read_to_string(&path) {
                    out.push((path, text));
                }
            }
        }
    }
    let mut out = Vec::new();
    for r in SOURCE_ROOTS {
        walk(&root().join(r), &mut out);
    }
    // Not this file: it quotes names (and misspellings of them) on purpose.
    out.retain(|(p, _)| !p.ends_with(file!()));
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `word` occurs in `text` with no word character on either side
/// (and, with `then`, followed, after spaces, by that byte).
fn has_word(text: &str, word: &str, then: Option<u8>) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        from = start + 1;
        if start > 0 && is_word_byte(bytes[start - 1]) {
            continue;
        }
        if end < bytes.len() && is_word_byte(bytes[end]) {
            continue;
        }
        match then {
            None => return true,
            Some(want) => {
                let rest = text[end..].trim_start_matches([' ', '\t']);
                if rest.as_bytes().first() == Some(&want) {
                    return true;
                }
            }
        }
    }
    false
}

/// Whether `text` has `<keyword> <name>` for one of the keywords, `name`
/// ending there (or, with `prefix`, merely starting there).
fn defines(text: &str, keywords: &[&str], name: &str, prefix: bool) -> bool {
    keywords.iter().any(|kw| {
        let needle = format!("{kw} {name}");
        text.match_indices(&needle).any(|(i, _)| {
            let before_ok = i == 0 || !is_word_byte(text.as_bytes()[i - 1]);
            let end = i + needle.len();
            let after_ok = prefix || end >= text.len() || !is_word_byte(text.as_bytes()[end]);
            before_ok && after_ok
        })
    })
}

const TYPE_KEYWORDS: &[&str] = &["struct", "enum", "trait", "type"];

enum Case {
    Snake,
    Camel,
    Upper,
}

fn case_of(name: &str) -> Case {
    let name = name.trim_end_matches('*');
    if name.starts_with(|c: char| c.is_ascii_uppercase()) {
        if name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            Case::Upper
        } else {
            Case::Camel
        }
    } else {
        Case::Snake
    }
}

/// Whether `files` define `item` (by its case; `*` at its end: any ending).
fn module_defines(files: &[&(PathBuf, String)], item: &str) -> bool {
    let (name, prefix) = match item.strip_suffix('*') {
        Some(p) => (p, true),
        None => (item, false),
    };
    let keywords: &[&str] = match case_of(item) {
        Case::Snake => &["fn"],
        Case::Camel => TYPE_KEYWORDS,
        Case::Upper => &["const", "static"],
    };
    files
        .iter()
        .any(|(_, text)| defines(text, keywords, name, prefix))
}

/// The source files of module `segments` (`["dialect", "irc"]`): the file
/// `src/dialect/irc.rs`, or every file under `src/dialect/irc/`.
fn module_files<'a>(src: &'a [(PathBuf, String)], segments: &[&str]) -> Vec<&'a (PathBuf, String)> {
    let base = root().join("src").join(segments.join("/"));
    let file = base.with_extension("rs");
    src.iter()
        .filter(|(p, _)| *p == file || p.starts_with(&base))
        .collect()
}

/// The files a type's members may be in: each file that defines it, and
/// for `x/mod.rs` or `x.rs` the files under the folder `x/`.
fn type_files<'a>(
    src: &'a [(PathBuf, String)],
    within: &[&'a (PathBuf, String)],
    ty: &str,
) -> Vec<&'a (PathBuf, String)> {
    let mut out: Vec<&(PathBuf, String)> = Vec::new();
    for (path, text) in within.iter().map(|f| (&f.0, &f.1)) {
        if !defines(text, TYPE_KEYWORDS, ty, false) {
            continue;
        }
        let folder = if path.file_name().is_some_and(|n| n == "mod.rs") {
            path.parent().map(Path::to_path_buf)
        } else {
            Some(path.with_extension(""))
        };
        for f in src {
            if &f.0 == path || folder.as_ref().is_some_and(|d| f.0.starts_with(d)) {
                out.push(f);
            }
        }
    }
    out
}

/// Checks `Type::member` against the files `within` (the whole tree, or a
/// module). `Err` says what is missing.
fn check_member(
    src: &[(PathBuf, String)],
    within: &[&(PathBuf, String)],
    ty: &str,
    member: &str,
) -> Result<(), String> {
    let files = type_files(src, within, ty);
    if files.is_empty() {
        return Err(format!("no `struct`, `enum`, `trait` or `type {ty}`"));
    }
    let found = files.iter().any(|(_, text)| match case_of(member) {
        Case::Snake => defines(text, &["fn"], member, false) || has_word(text, member, Some(b':')),
        Case::Camel | Case::Upper => has_word(text, member, None),
    });
    if found {
        Ok(())
    } else {
        let names: Vec<_> = files
            .iter()
            .map(|(p, _)| p.strip_prefix(root()).unwrap_or(p).display().to_string())
            .collect();
        Err(format!(
            "no `fn {member}` (or field, or variant) with `{ty}` in {}",
            names.join(", ")
        ))
    }
}

/// Checks one backticked Rust path. `Ok` also for what is deliberately
/// skipped (other crates).
fn check_name(src: &[(PathBuf, String)], name: &str) -> Result<(), String> {
    let name = name.strip_prefix("crate::").unwrap_or(name);
    let segments: Vec<&str> = name.split("::").collect();
    let first = segments[0];
    if EXTERNAL_MODULES.contains(&first) || EXTERNAL_TYPES.contains(&first) {
        return Ok(());
    }
    let all: Vec<&(PathBuf, String)> = src.iter().collect();
    // Leading snake_case segments are modules; the rest is an item path.
    let modules = segments[..segments.len() - 1]
        .iter()
        .take_while(|s| matches!(case_of(s), Case::Snake))
        .count();
    match (modules, segments.len()) {
        // Type::member
        (0, 2) => check_member(src, &all, segments[0], segments[1]),
        // module::...::item
        (m, n) if m == n - 1 => {
            let files = module_files(src, &segments[..m]);
            if files.is_empty() {
                return Err(format!("no module src/{}(.rs)", segments[..m].join("/")));
            }
            if module_defines(&files, segments[m]) {
                Ok(())
            } else {
                Err(format!(
                    "module `{}` does not define `{}`",
                    segments[..m].join("::"),
                    segments[m]
                ))
            }
        }
        // module::...::Type::member
        (m, n) if m >= 1 && n == m + 2 => {
            let files = module_files(src, &segments[..m]);
            check_member(src, &files, segments[m], segments[m + 1])
        }
        _ => Err("this rule cannot check a path of that shape: reword the doc".into()),
    }
}

/// Splits a doc into its text outside code blocks (with code blocks blanked
/// out, so offsets and lines stay right).
fn outside_code_blocks(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut in_block = false;
    for line in doc.split_inclusive('\n') {
        let fence = line.trim_start().starts_with("```");
        if in_block || fence {
            out.extend(line.chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
        } else {
            out.push_str(line);
        }
        if fence {
            in_block = !in_block;
        }
    }
    out
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// Every path mention in `doc` (code blocks included).
fn paths(doc_name: &'static str, doc: &str) -> Vec<Mention> {
    let bytes = doc.as_bytes();
    let mut out = Vec::new();
    for root in PATH_ROOTS {
        for (i, _) in doc.match_indices(root) {
            let preceded =
                i > 0 && (is_word_byte(bytes[i - 1]) || matches!(bytes[i - 1], b'/' | b'.' | b'-'));
            if preceded {
                continue;
            }
            let end = doc[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c)))
                .map_or(doc.len(), |n| i + n);
            let path = doc[i..end].trim_end_matches('.');
            out.push(Mention {
                doc: doc_name,
                line: line_of(doc, i),
                text: path.to_string(),
            });
        }
    }
    out
}

/// Every backticked span outside code blocks, arguments dropped and
/// whitespace collapsed.
fn spans(doc_name: &'static str, doc: &str) -> Vec<Mention> {
    let text = outside_code_blocks(doc);
    let mut out = Vec::new();
    let mut rest = 0;
    while let Some(open) = text[rest..].find('`') {
        let start = rest + open + 1;
        let Some(len) = text[start..].find('`') else {
            break;
        };
        let span = &text[start..start + len];
        rest = start + len + 1;
        let span: String = span.split_whitespace().collect::<Vec<_>>().join(" ");
        let span = span.split('(').next().unwrap_or("").to_string();
        out.push(Mention {
            doc: doc_name,
            line: line_of(&text, start),
            text: span,
        });
    }
    out
}

fn is_rust_path(s: &str) -> bool {
    s.contains("::")
        && s.split("::").all(|seg| {
            let seg = seg.strip_suffix('*').unwrap_or(seg);
            !seg.is_empty()
                && seg.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// A bare snake_case or UPPER_CASE name with an underscore (`read_from`,
/// `FAIR_READ`, `ARGON2_*`).
fn is_bare_name(s: &str) -> bool {
    let s = s.strip_suffix('*').unwrap_or(s);
    let snake = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let upper = s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    s.contains('_') && (snake || upper)
}

/// Whether `name` occurs as a word in some source file (with a trailing
/// `*`: a word starting with it).
fn in_sources(src: &[(PathBuf, String)], name: &str) -> bool {
    match name.strip_suffix('*') {
        None => src.iter().any(|(_, text)| has_word(text, name, None)),
        Some(prefix) => src.iter().any(|(_, text)| {
            text.match_indices(prefix)
                .any(|(i, _)| i == 0 || !is_word_byte(text.as_bytes()[i - 1]))
        }),
    }
}

/// Every problem found in the docs, one line each.
fn problems() -> Vec<String> {
    let src = sources();
    assert!(src.len() > 20, "found only {} source files", src.len());
    let mut problems = Vec::new();
    let mut checked = BTreeSet::new();
    for doc_name in DOCS {
        let doc =
            fs::read_to_string(root().join(doc_name)).unwrap_or_else(|e| panic!("{doc_name}: {e}"));
        for m in paths(doc_name, &doc) {
            checked.insert(m.text.clone());
            if !root().join(&m.text).exists() {
                problems.push(format!("{}:{}: `{}` does not exist", m.doc, m.line, m.text));
            }
        }
        for m in spans(doc_name, &doc) {
            let result = if is_rust_path(&m.text) {
                check_name(&src, &m.text)
            } else if is_bare_name(&m.text) && !NOT_RUST.contains(&m.text.as_str()) {
                if in_sources(&src, &m.text) {
                    Ok(())
                } else {
                    Err("no such word in any .rs file".into())
                }
            } else {
                continue;
            };
            checked.insert(m.text.clone());
            if let Err(why) = result {
                problems.push(format!("{}:{}: `{}`: {why}", m.doc, m.line, m.text));
            }
        }
    }
    // The rule must keep finding things, or a change to it (or to the
    // docs' style) could make this test pass by checking nothing.
    assert!(
        checked.len() > 60,
        "only {} names and paths checked: {checked:?}",
        checked.len()
    );
    problems
}

#[test]
fn every_file_and_name_in_the_docs_exists() {
    let problems = problems();
    assert!(
        problems.is_empty(),
        "the docs name things that are not in the tree (fix the doc, or the name):\n{}",
        problems.join("\n")
    );
}

/// The rule itself, on made-up text: a renamed function, a missing file
/// and a wrong module are caught; other crates' names are not flagged.
#[test]
fn the_rule_catches_renames() {
    let src = sources();
    assert!(check_name(&src, "Server::read_from").is_ok());
    assert!(check_name(&src, "Server::read_form").is_err());
    assert!(check_name(&src, "Sevrer::read_from").is_err());
    assert!(check_name(&src, "Server::read_buf").is_ok(), "a field");
    assert!(check_name(&src, "Timer::Refill").is_ok(), "a variant");
    assert!(check_name(&src, "dialect::irc::handle").is_ok());
    assert!(check_name(&src, "dialect::line::handle").is_err());
    assert!(check_name(&src, "config::AUTH_DELAY_*").is_ok());
    assert!(check_name(&src, "config::AUTH_DELAI_*").is_err());
    assert!(check_name(&src, "TcpStream::set_nodelay").is_ok(), "mio's");
    assert!(in_sources(&src, "FAIR_READ") && !in_sources(&src, "FAIR_READS"));
    assert!(in_sources(&src, "ARGON2_*") && !in_sources(&src, "ARGON3_*"));
    let doc = "see `src/sendq.rs`, src/nowhere.rs and target/debug/examples/x.\n";
    let found: Vec<String> = paths("t", doc).into_iter().map(|m| m.text).collect();
    assert_eq!(found, ["src/sendq.rs", "src/nowhere.rs"]);
    let spans: Vec<String> = spans("t", "a `Hub::handle_frame(k, f)`\n```\n`x::y`\n```\n")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(spans, ["Hub::handle_frame"]);
}
