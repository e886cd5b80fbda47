//! Making untrusted bytes safe to show, and the local clock.
//!
//! Whatever the server sends is shown, never interpreted: an ESC or a bidi
//! override in a line must not move the cursor, recolour the screen or
//! reorder text, in the full-screen interface or in a terminal reading the
//! plain tool's output. So invalid UTF-8 is decoded lossily and every
//! control or text-direction character is replaced by a visible stand-in.

/// Turns a raw line into text that is safe to print.
///
/// C0 controls and DEL become caret notation (`^[`, `^?`), a TAB becomes a
/// space, C1 controls and bidirectional-formatting characters become `<U+XXXX>`.
pub fn display_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_visible(&mut out, c);
    }
    out
}

/// Same as [`display_line`] for text that is already a `str`.
pub fn display_str(text: &str) -> String {
    display_line(text.as_bytes())
}

fn push_visible(out: &mut String, c: char) {
    match c {
        '\t' => out.push(' '),
        '\0'..='\x1f' => {
            out.push('^');
            out.push((c as u8 + 0x40) as char);
        }
        '\x7f' => out.push_str("^?"),
        '\u{80}'..='\u{9f}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}' => {
            out.push_str(&format!("<U+{:04X}>", c as u32));
        }
        _ => out.push(c),
    }
}

/// The local wall-clock time as `HH:MM`.
pub fn clock_hhmm() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t = now as libc::time_t;
    // SAFETY: localtime_r writes only into `tm`, which lives on this frame.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
    } else {
        format!("{:02}:{:02}", now / 3600 % 24, now / 60 % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_visible() {
        assert_eq!(display_line(b"a\x1b[2Jb"), "a^[[2Jb");
        assert_eq!(display_line(b"x\ty\x7f\x00"), "x y^?^@");
        assert_eq!(
            display_line("\u{202e}evil\u{85}".as_bytes()),
            "<U+202E>evil<U+0085>"
        );
        assert_eq!(display_line("héllo ✓".as_bytes()), "héllo ✓");
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        assert_eq!(display_line(b"a\xffb\xc3"), "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn clock_shape() {
        let c = clock_hhmm();
        assert_eq!(c.len(), 5);
        assert_eq!(&c[2..3], ":");
    }
}
