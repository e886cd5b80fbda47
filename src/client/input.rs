//! The input line's editor: cursor movement, deletion and history.
//!
//! Kept apart from the terminal so that arriving messages can never touch
//! what is being typed: the screen redraws from this state, it does not
//! echo keystrokes.

/// How many submitted lines the history keeps.
pub const HISTORY_LEN: usize = 500;
/// Longest input line, in characters (the server takes 4096 bytes).
pub const MAX_INPUT: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct LineEditor {
    chars: Vec<char>,
    /// Cursor position, in characters, `0..=chars.len()`.
    cursor: usize,
    history: Vec<String>,
    /// Index into `history` while browsing it.
    browsing: Option<usize>,
    /// The unfinished line put aside while browsing.
    draft: Vec<char>,
}

impl LineEditor {
    pub fn new() -> LineEditor {
        LineEditor::default()
    }

    pub fn text(&self) -> String {
        self.chars.iter().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    pub fn insert(&mut self, c: char) {
        // Control characters would be refused by the server anyway.
        if c.is_control() || self.chars.len() >= MAX_INPUT {
            return;
        }
        self.chars.insert(self.cursor, c);
        self.cursor += 1;
    }

    pub fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    pub fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.chars.len());
    }

    pub fn home(&mut self) {
        self.cursor = 0;
    }

    pub fn end(&mut self) {
        self.cursor = self.chars.len();
    }

    pub fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.chars.remove(self.cursor);
        }
    }

    pub fn delete(&mut self) {
        if self.cursor < self.chars.len() {
            self.chars.remove(self.cursor);
        }
    }

    /// Ctrl-W: deletes the word before the cursor (and the spaces after it).
    pub fn delete_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.chars[start - 1].is_whitespace() {
            start -= 1;
        }
        self.chars.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Ctrl-U: deletes from the start of the line to the cursor.
    pub fn delete_to_start(&mut self) {
        self.chars.drain(..self.cursor);
        self.cursor = 0;
    }

    /// Up: the previous history entry.
    pub fn history_prev(&mut self) {
        let i = match self.browsing {
            None if self.history.is_empty() => return,
            None => {
                self.draft = std::mem::take(&mut self.chars);
                self.history.len() - 1
            }
            Some(0) => return,
            Some(i) => i - 1,
        };
        self.browsing = Some(i);
        self.set(self.history[i].chars().collect());
    }

    /// Down: the next history entry, then back to the draft.
    pub fn history_next(&mut self) {
        let Some(i) = self.browsing else { return };
        if i + 1 < self.history.len() {
            self.browsing = Some(i + 1);
            self.set(self.history[i + 1].chars().collect());
        } else {
            self.browsing = None;
            let draft = std::mem::take(&mut self.draft);
            self.set(draft);
        }
    }

    fn set(&mut self, chars: Vec<char>) {
        self.chars = chars;
        self.cursor = self.chars.len();
    }

    /// Empties the editor and returns its line without remembering it in the
    /// history: for a password, and for a draft put aside.
    pub fn take(&mut self) -> String {
        let line = self.text();
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        line
    }

    /// Replaces the line (a draft put aside comes back), cursor at the end.
    pub fn replace(&mut self, text: &str) {
        self.browsing = None;
        self.set(text.chars().collect());
    }

    /// Enter: returns the line, empties the editor and remembers the line.
    pub fn submit(&mut self) -> String {
        let line = self.text();
        self.chars.clear();
        self.cursor = 0;
        self.browsing = None;
        self.draft.clear();
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() >= HISTORY_LEN {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> LineEditor {
        let mut e = LineEditor::new();
        s.chars().for_each(|c| e.insert(c));
        e
    }

    #[test]
    fn edits_in_the_middle() {
        let mut e = typed("helo");
        e.left();
        e.insert('l');
        assert_eq!(e.text(), "hello");
        e.home();
        e.delete();
        e.insert('J');
        e.end();
        e.backspace();
        assert_eq!(e.text(), "Jell");
        assert_eq!(e.cursor(), 4);
        e.right();
        assert_eq!(e.cursor(), 4);
        e.home();
        e.backspace();
        e.left();
        assert_eq!((e.text().as_str(), e.cursor()), ("Jell", 0));
    }

    #[test]
    fn word_and_line_deletion() {
        let mut e = typed("say hello  world  ");
        e.delete_word();
        assert_eq!(e.text(), "say hello  ");
        e.delete_word();
        assert_eq!(e.text(), "say ");
        e.insert('x');
        e.left();
        e.delete_to_start();
        assert_eq!((e.text().as_str(), e.cursor()), ("x", 0));
        e.delete_word();
        assert_eq!(e.text(), "x");
    }

    #[test]
    fn history_keeps_the_draft() {
        let mut e = typed("one");
        assert_eq!(e.submit(), "one");
        "two".chars().for_each(|c| e.insert(c));
        e.submit();
        "dra".chars().for_each(|c| e.insert(c));
        e.history_prev();
        assert_eq!(e.text(), "two");
        e.history_prev();
        e.history_prev();
        assert_eq!(e.text(), "one");
        e.history_next();
        assert_eq!(e.text(), "two");
        e.history_next();
        assert_eq!(e.text(), "dra");
        e.history_next();
        assert_eq!(e.text(), "dra");
    }

    #[test]
    fn take_leaves_no_history() {
        let mut e = typed("secret pw");
        assert_eq!(e.take(), "secret pw");
        assert!(e.is_empty());
        e.history_prev();
        assert!(e.is_empty());
        e.replace("draft");
        assert_eq!((e.text().as_str(), e.cursor()), ("draft", 5));
    }

    #[test]
    fn unicode_and_controls() {
        let mut e = typed("é✓\u{1b}");
        assert_eq!(e.text(), "é✓");
        e.left();
        e.backspace();
        assert_eq!(e.text(), "✓");
    }
}
