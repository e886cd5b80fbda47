//! The full-screen interface's state and drawing (no terminal, no socket).
//!
//! [`App`] holds everything the screen shows; [`draw`] renders it into a
//! ratatui frame. The event loop in `tui.rs` feeds it and redraws after every
//! batch of events, so a message arriving never touches the half-typed input
//! line: the screen is always rebuilt from state, nothing is echoed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::input::LineEditor;
use super::scrollback::{Entry, Kind, Scrollback};
use super::session::{Phase, Session, SessionEvent};
use super::text::display_str;
use super::{is_password_quit, sendable_password};
use crate::protocol::{NOTICE, ROOM_CONTAINS, ServerLine};

/// Width of the user list on the right (hidden on narrow terminals).
const USERS_WIDTH: u16 = 22;
/// Below this width the user list is hidden.
const MIN_WIDTH_FOR_USERS: u16 = 60;
/// Continuation rows of a wrapped line start under the text, after the time.
const INDENT: usize = 6;

/// Everything the full-screen interface shows.
#[derive(Debug)]
pub struct App {
    pub scrollback: Scrollback,
    pub input: LineEditor,
    pub session: Session,
    /// The server as given on the command line.
    pub server: String,
    /// Connection state for the status bar ("connected", "retrying in 4 s").
    pub conn_label: String,
    /// Rows scrolled up from the bottom (0: following new lines).
    scroll: usize,
    /// Lines that arrived while scrolled up.
    unseen: usize,
    /// The scrollback pane's size at the last draw.
    pane: (u16, u16),
    /// A half-typed line put aside while a password is typed, given back
    /// once in the room (so it is neither masked nor sent as the password).
    stash: Option<String>,
    /// The login just completed went through a password check, so the text
    /// in the editor was typed masked and may be a password.
    typed_masked: bool,
}

/// What Enter means while a password is wanted.
#[derive(Debug, PartialEq, Eq)]
pub enum PasswordEntry {
    /// Nothing to send (blank: the server would ignore it and never answer).
    Nothing,
    /// `/quit`, `/exit` or `/logout` as the whole line: leave.
    Quit(String),
    /// Send this line as the password.
    Send(String),
}

impl App {
    pub fn new(server: &str, nick: Option<String>) -> App {
        App {
            scrollback: Scrollback::default(),
            input: LineEditor::new(),
            session: Session::new(nick),
            server: server.to_string(),
            conn_label: "connecting".into(),
            scroll: 0,
            unseen: 0,
            pane: (80, 20),
            stash: None,
            typed_masked: false,
        }
    }

    /// The server asks for the password and the user must type it (the
    /// draft was put aside by [`server_line`](Self::server_line)).
    pub fn password_wanted(&mut self, time: &str, name: &str) {
        self.note(
            time,
            &format!("password for {name}: type it and press Enter (it is shown as *)"),
        );
    }

    /// Enter while a password is wanted: the line leaves the editor without
    /// entering the history or the scrollback. The session is told of a
    /// password to send; the caller sends it.
    pub fn enter_password(&mut self) -> PasswordEntry {
        let text = self.input.take();
        if is_password_quit(&text) {
            return PasswordEntry::Quit(text);
        }
        if !sendable_password(&text) {
            return PasswordEntry::Nothing;
        }
        self.session.password_sent(&text);
        PasswordEntry::Send(text)
    }

    /// Whether the input line holds a password, or may: while one is
    /// wanted, and while one is being checked (a user who expects a refusal
    /// types the next attempt ahead). It is then drawn as `*`.
    pub fn masked(&self) -> bool {
        matches!(
            self.session.phase(),
            Phase::NeedPassword(_) | Phase::PasswordSent(_)
        )
    }

    /// In the room: a line typed while the password was checked is dropped
    /// (it may be a password, and would now be shown in clear), and the
    /// draft put aside for the password comes back. Without a password
    /// check (no accounts) the editor is left alone: a line kept while
    /// offline is still there to send.
    pub fn joined(&mut self, time: &str) {
        if std::mem::take(&mut self.typed_masked) && !self.input.is_empty() {
            self.input.take();
            self.note(
                time,
                "the line typed while the password was checked was dropped",
            );
        }
        if let Some(draft) = self.stash.take() {
            self.input.replace(&draft);
        }
    }

    /// The connection is gone. A half-typed password is dropped: once the
    /// phase changes the editor would show it in clear.
    pub fn disconnected(&mut self) {
        if self.masked() {
            self.input.take();
        }
        self.typed_masked = false;
        self.session.on_disconnected();
    }

    fn push(&mut self, e: Entry) {
        self.keep_view(&e);
        self.scrollback.push(e);
    }

    /// Keeps the view still while the user reads older lines, as `e` is
    /// added below it.
    fn keep_view(&mut self, e: &Entry) {
        if self.scroll > 0 {
            self.scroll += wrap_entry(e, self.pane.0.max(1) as usize).len();
            self.unseen += 1;
        }
    }

    /// Marks a move to `room` in the scrollback with a rule, put before
    /// the move's `* The room contains:` line when it is the one before
    /// `* You are now in`, so that everything of the new room is below it.
    fn room_rule(&mut self, time: &str, room: &str) {
        let rule = Entry::new(time, Kind::Room, None, room);
        let contains = self.scrollback.from_newest(1).is_some_and(|e| {
            e.kind == Kind::Notice && e.text.starts_with(&ROOM_CONTAINS[NOTICE.len()..])
        });
        self.keep_view(&rule);
        if contains {
            self.scrollback.insert_before_newest(2, rule);
        } else {
            self.scrollback.push(rule);
        }
    }

    /// A line from the server (already lossily decoded).
    ///
    /// When it starts a password phase (asked of the user, or answered with
    /// the saved password), a draft in the editor is put aside: it was typed
    /// as chat, and must be neither masked nor sent as the password.
    pub fn server_line(&mut self, time: &str, line: &str) -> Option<SessionEvent> {
        self.push(Entry::from_server(time, line));
        let was_masked = self.masked();
        let event = self.session.on_line(&ServerLine::parse(line));
        if !was_masked && self.masked() && !self.input.is_empty() {
            let draft = self.input.take();
            self.stash.get_or_insert(draft);
        }
        if event == Some(SessionEvent::Joined) {
            self.typed_masked = was_masked;
        }
        if let Some(SessionEvent::Moved(room)) = &event {
            self.room_rule(time, room);
        }
        event
    }

    /// A line the user sent, shown locally because the server does not echo
    /// chat lines or actions to their sender.
    pub fn own_line(&mut self, time: &str, text: &str) {
        let nick = self.session.nick().unwrap_or("me").to_string();
        if let Some(rest) = text.strip_prefix("//") {
            self.push(Entry::new(
                time,
                Kind::Own,
                Some(&nick),
                &format!("/{rest}"),
            ));
        } else if let Some(rest) = strip_command(text, "/me") {
            self.push(Entry::new(time, Kind::Action, Some(&nick), rest));
        } else if !text.starts_with('/') {
            self.push(Entry::new(time, Kind::Own, Some(&nick), text));
        }
    }

    /// A remark of the client's own (connection state, help).
    pub fn note(&mut self, time: &str, text: &str) {
        self.push(Entry::new(time, Kind::Client, None, text));
    }

    pub fn clear(&mut self) {
        self.scrollback.clear();
        self.scroll = 0;
        self.unseen = 0;
    }

    pub fn page_up(&mut self) {
        self.scroll += self.page();
    }

    pub fn page_down(&mut self) {
        self.scroll = self.scroll.saturating_sub(self.page());
        if self.scroll == 0 {
            self.unseen = 0;
        }
    }

    /// Back to the newest lines (after sending: you see what you wrote).
    pub fn follow(&mut self) {
        self.scroll = 0;
        self.unseen = 0;
    }

    /// Rows scrolled up from the bottom.
    pub fn scroll(&self) -> usize {
        self.scroll
    }

    fn page(&self) -> usize {
        (self.pane.1 as usize).saturating_sub(1).max(1)
    }
}

/// `text` without the command word `cmd` (case-insensitive) and its space.
fn strip_command<'a>(text: &'a str, cmd: &str) -> Option<&'a str> {
    let head = text.get(..cmd.len())?;
    if !head.eq_ignore_ascii_case(cmd) {
        return None;
    }
    text[cmd.len()..].strip_prefix(' ')
}

/// A nickname's colour: a hash of the name (ignoring case, like the server)
/// picks one of twelve, so it stays the same across lines and sessions.
pub fn nick_color(nick: &str) -> Color {
    const PALETTE: [Color; 12] = [
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Blue,
        Color::Magenta,
        Color::Cyan,
        Color::LightRed,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightBlue,
        Color::LightMagenta,
        Color::LightCyan,
    ];
    // FNV-1a: fixed, unlike std's randomly seeded hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in nick.bytes() {
        h = (h ^ u32::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0193);
    }
    PALETTE[(h % PALETTE.len() as u32) as usize]
}

/// A room change's rule: `── now in #rust ───...` to the pane's edge.
const RULE: &str = "─";

/// The spans of one scrollback line; `width` (the pane's) only sets how far
/// a room change's rule runs.
fn entry_spans(e: &Entry, width: usize) -> Vec<Span<'static>> {
    let nick = e.nick.clone().unwrap_or_default();
    let nick_style = Style::default().fg(nick_color(&nick));
    let mut spans = vec![Span::styled(
        format!("{} ", e.time),
        Style::default().fg(Color::DarkGray),
    )];
    let private = Style::default().fg(Color::Magenta);
    match e.kind {
        Kind::Chat => {
            spans.push(Span::styled(format!("<{nick}> "), nick_style));
            spans.push(Span::raw(e.text.clone()));
        }
        Kind::Own => {
            spans.push(Span::styled(
                format!("<{nick}> "),
                nick_style.add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(
                e.text.clone(),
                Style::default().add_modifier(Modifier::BOLD),
            ));
        }
        Kind::Private => {
            spans.push(Span::styled(
                "[private] ",
                private.add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(format!("<{nick}> "), nick_style));
            spans.push(Span::styled(e.text.clone(), private));
        }
        Kind::PrivateSent => {
            spans.push(Span::styled(
                format!("[to {nick}] "),
                private.add_modifier(Modifier::BOLD),
            ));
            spans.push(Span::styled(e.text.clone(), private));
        }
        Kind::Action => {
            let it = Style::default().add_modifier(Modifier::ITALIC);
            spans.push(Span::styled("* ", it));
            spans.push(Span::styled(
                format!("{nick} "),
                nick_style.add_modifier(Modifier::ITALIC),
            ));
            spans.push(Span::styled(e.text.clone(), it));
        }
        Kind::Notice => {
            spans.push(Span::styled(
                format!("* {}", e.text),
                Style::default().fg(Color::Cyan),
            ));
        }
        Kind::Error => {
            let red = Style::default().fg(Color::Red).add_modifier(Modifier::BOLD);
            spans.push(Span::styled(format!("! {}", e.text), red));
        }
        Kind::Client => {
            spans.push(Span::styled(
                format!("-- {}", e.text),
                Style::default().fg(Color::Yellow),
            ));
        }
        Kind::Room => {
            let head = format!("{RULE}{RULE} now in {} ", e.text);
            let used = e.time.chars().count() + 1 + head.chars().count();
            let rule = RULE.repeat(width.saturating_sub(used).max(2));
            spans.push(Span::styled(
                format!("{head}{rule}"),
                Style::default()
                    .fg(Color::LightGreen)
                    .add_modifier(Modifier::BOLD),
            ));
        }
        Kind::Other => spans.push(Span::raw(e.text.clone())),
    }
    spans
}

/// Display width of one character.
fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    Span::raw(&*c.encode_utf8(&mut buf)).width()
}

/// Cuts styled text into rows of at most `width` columns, breaking after a
/// space when the row has one (a word longer than a row is cut where it
/// must be). Continuation rows are indented under the text.
fn wrap_spans(spans: Vec<Span<'static>>, width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let indent = if width > INDENT * 2 { INDENT } else { 0 };
    // One cell per character: (char, style index, display width).
    let styles: Vec<Style> = spans.iter().map(|s| s.style).collect();
    let cells: Vec<(char, usize, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.content.chars().map(move |c| (c, i, char_width(c))))
        .collect();
    let mut rows = Vec::new();
    let mut start = 0;
    let mut first = true;
    while start < cells.len() || first {
        let room = if first { width } else { width - indent };
        let mut used = 0;
        let mut end = start;
        while end < cells.len() && (used + cells[end].2 <= room || end == start) {
            used += cells[end].2;
            end += 1;
        }
        if end < cells.len() {
            // Prefer breaking after the last space of the row.
            if let Some(sp) = (start + 1..=end).rev().find(|&i| cells[i - 1].0 == ' ') {
                end = sp;
            }
        }
        let mut line: Vec<Span<'static>> = Vec::new();
        if !first {
            line.push(Span::raw(" ".repeat(indent)));
        }
        let mut i = start;
        while i < end {
            let style = cells[i].1;
            let mut text = String::new();
            while i < end && cells[i].1 == style {
                text.push(cells[i].0);
                i += 1;
            }
            line.push(Span::styled(text, styles[style]));
        }
        rows.push(Line::from(line));
        start = end;
        first = false;
    }
    rows
}

fn wrap_entry(e: &Entry, width: usize) -> Vec<Line<'static>> {
    wrap_spans(entry_spans(e, width), width)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &mut App) {
    let area = frame.area();
    let [main, status, input] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    let (pane, users) = if main.width >= MIN_WIDTH_FOR_USERS {
        let [p, u] =
            Layout::horizontal([Constraint::Min(10), Constraint::Length(USERS_WIDTH)]).areas(main);
        (p, Some(u))
    } else {
        (main, None)
    };
    draw_scrollback(frame, app, pane);
    if let Some(u) = users {
        draw_users(frame, app, u);
    }
    draw_status(frame, app, status);
    draw_input(frame, app, input);
}

fn draw_scrollback(frame: &mut Frame, app: &mut App, area: Rect) {
    app.pane = (area.width, area.height);
    let (width, height) = (area.width as usize, area.height as usize);
    // Rows from the newest backwards, only as far as the view needs.
    let mut rows: Vec<Line<'static>> = Vec::new();
    let want = app.scroll + height;
    for e in app.scrollback.iter_rev() {
        let mut r = wrap_entry(e, width);
        r.reverse();
        rows.extend(r);
        if rows.len() >= want {
            break;
        }
    }
    if rows.len() < want {
        app.scroll = rows.len().saturating_sub(height);
        if app.scroll == 0 {
            app.unseen = 0;
        }
    }
    let start = app.scroll;
    let end = (start + height).min(rows.len());
    let mut visible: Vec<Line<'static>> = rows[start..end].to_vec();
    visible.reverse();
    frame.render_widget(Paragraph::new(visible), area);
}

fn draw_users(frame: &mut Frame, app: &App, area: Rect) {
    let users = app.session.users();
    let me = app.session.nick().unwrap_or("");
    let lines: Vec<Line> = users
        .names()
        .iter()
        .map(|n| {
            let mut style = Style::default().fg(nick_color(n));
            if n.eq_ignore_ascii_case(me) {
                style = style.add_modifier(Modifier::BOLD);
            }
            Line::from(Span::styled(n.clone(), style))
        })
        .collect();
    // The list is the room's: titled with its name once the server has
    // named it.
    let title = match app.session.room() {
        Some(room) => format!(" {room} ({}) ", users.len()),
        None => format!(" Online ({}) ", users.len()),
    };
    let block = Block::default().borders(Borders::LEFT).title(title);
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect) {
    let nick = app.session.nick().unwrap_or("(no nickname)");
    // Said early in the bar, where a narrow terminal still shows it.
    let online = match app.session.phase() {
        Phase::NeedPassword(_) => "password wanted (hidden)".to_string(),
        _ => format!("{} online", app.session.users().len()),
    };
    let room = app
        .session
        .room()
        .map(|r| format!("{r} | "))
        .unwrap_or_default();
    let mut text = format!(
        " loopchat | {} | {} | {room}{} | {}",
        app.server, nick, online, app.conn_label
    );
    if app.scroll > 0 {
        text.push_str(" | scrolled up");
        if app.unseen > 0 {
            text.push_str(&format!(", {} new below", app.unseen));
        }
        text.push_str(" (PgDn)");
    }
    // Last: the least needed, and as long as the server allows.
    if let Some(topic) = app.session.topic() {
        text.push_str(" | topic: ");
        text.push_str(&display_str(topic));
    }
    let style = Style::default().fg(Color::Black).bg(Color::Blue);
    frame.render_widget(Paragraph::new(text).style(style), area);
}

fn draw_input(frame: &mut Frame, app: &App, area: Rect) {
    let masked = app.masked();
    let prompt = match app.session.phase() {
        Phase::NeedNick => "nickname> ",
        Phase::NeedPassword(_) => "password> ",
        _ => "> ",
    };
    // A password is drawn as one `*` per character: the text itself never
    // reaches the screen.
    let stars;
    let chars = if masked {
        stars = vec!['*'; app.input.chars().len()];
        &stars[..]
    } else {
        app.input.chars()
    };
    let cursor = app.input.cursor();
    let avail = (area.width as usize).saturating_sub(prompt.len()).max(1);
    // Scroll the line horizontally so the cursor stays visible.
    let mut start = cursor;
    let mut w = 0;
    while start > 0 && w + char_width(chars[start - 1]) < avail {
        start -= 1;
        w += char_width(chars[start]);
    }
    let mut shown = String::new();
    let mut used = 0;
    for &c in &chars[start..] {
        let cw = char_width(c);
        if used + cw > avail {
            break;
        }
        shown.push(c);
        used += cw;
    }
    let line = Line::from(vec![
        Span::styled(prompt, Style::default().add_modifier(Modifier::BOLD)),
        Span::raw(shown),
    ]);
    frame.render_widget(Paragraph::new(line), area);
    let x = area.x as usize + prompt.len() + w;
    frame.set_cursor_position(Position::new(x.min(u16::MAX as usize) as u16, area.y));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::session::Secret;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn screen(t: &Terminal<TestBackend>) -> Vec<String> {
        let buf = t.backend().buffer();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn joined_app() -> App {
        let mut app = App::new("127.0.0.1:7878", Some("me".into()));
        app.session.on_connected();
        app.server_line("10:00", "* The room contains: ann");
        app.conn_label = "connected".into();
        app
    }

    fn render(t: &mut Terminal<TestBackend>, app: &mut App) -> Vec<String> {
        t.draw(|f| draw(f, app)).unwrap();
        screen(t)
    }

    #[test]
    fn typing_survives_arriving_messages() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(80, 10)).unwrap();
        "half typ".chars().for_each(|c| app.input.insert(c));
        app.input.left();
        render(&mut t, &mut app);
        app.server_line("10:01", "[ann] hello there");
        let s = render(&mut t, &mut app);
        assert!(s[9].starts_with("> half typ"), "{s:?}");
        assert!(
            s.iter().any(|l| l.contains("10:01 <ann> hello there")),
            "{s:?}"
        );
        assert_eq!(app.input.text(), "half typ");
        assert_eq!(t.get_cursor_position().unwrap(), Position::new(2 + 7, 9));
    }

    #[test]
    fn own_lines_and_kinds_are_shown() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(80, 12)).unwrap();
        app.own_line("10:02", "hi ann");
        app.own_line("10:02", "/me waves");
        app.own_line("10:02", "/who");
        app.own_line("10:02", "//slash");
        app.server_line("10:03", "(ann) secret");
        app.server_line("10:03", "! No such user: bob.");
        app.server_line("10:03", "[evil] \u{1b}[2J");
        let s = render(&mut t, &mut app).join("\n");
        assert!(s.contains("<me> hi ann"));
        assert!(s.contains("* me waves"));
        assert!(!s.contains("/who"));
        assert!(s.contains("<me> /slash"));
        assert!(s.contains("[private] <ann> secret"));
        assert!(s.contains("! No such user: bob."));
        assert!(s.contains("<evil> ^[[2J"));
        // Distinct styles: the private text is magenta, the error red.
        let buf = t.backend().buffer();
        let find = |needle: &str| {
            let rows = screen(&t);
            let y = rows.iter().position(|r| r.contains(needle)).unwrap();
            let x = rows[y].find(needle).unwrap();
            buf[(x as u16, y as u16)].fg
        };
        assert_eq!(find("secret"), Color::Magenta);
        assert_eq!(find("No such"), Color::Red);
        assert_eq!(find("<ann>"), nick_color("ann"));
    }

    #[test]
    fn user_list_follows_join_leave_nick() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(80, 10)).unwrap();
        // The list is the last 21 columns (after the border), one name a row.
        let users = |s: &[String]| -> Vec<String> {
            s[1..7]
                .iter()
                .map(|l| {
                    l.chars()
                        .skip(80 - 21)
                        .collect::<String>()
                        .trim()
                        .to_string()
                })
                .filter(|n| !n.is_empty())
                .collect()
        };
        let s = render(&mut t, &mut app);
        assert!(
            s[0].contains("Online (2)") && s[8].contains("| 2 online |"),
            "{s:?}"
        );
        assert_eq!(users(&s), ["ann", "me"]);
        app.server_line("10:05", "* zed has entered the room");
        app.server_line("10:05", "* ann is now known as anna");
        let s = render(&mut t, &mut app);
        assert_eq!(users(&s), ["anna", "me", "zed"]);
        assert!(s[0].contains("Online (3)"));
        app.server_line("10:06", "* zed has left the room (quit)");
        let s = render(&mut t, &mut app);
        assert_eq!(users(&s), ["anna", "me"]);
        app.server_line("10:07", "* 3 users online: anna, me, bo");
        let s = render(&mut t, &mut app);
        assert_eq!(users(&s), ["anna", "me", "bo"]);
        assert!(s[8].contains("| 3 online |"), "{s:?}");
    }

    /// The user list's names: the last 21 columns (after the border) of
    /// rows 1 to `last`, one name a row.
    fn listed(s: &[String], width: usize, last: usize) -> Vec<String> {
        s[1..=last]
            .iter()
            .map(|l| {
                l.chars()
                    .skip(width - 21)
                    .collect::<String>()
                    .trim()
                    .to_string()
            })
            .filter(|n| !n.is_empty())
            .collect()
    }

    /// In the room, as the server greets a line user: the room contains
    /// ann, and the welcome names the room.
    fn in_lobby() -> App {
        let mut app = joined_app();
        app.server_line(
            "10:00",
            "* Welcome, me! 2 users online in #lobby. Type /help for commands.",
        );
        app
    }

    /// The server's answer to `/join #rust`.
    fn move_to_rust(app: &mut App) {
        app.server_line("10:10", "* The room contains: carol, dan");
        let ev = app.server_line("10:10", "* You are now in #rust.");
        assert_eq!(ev, Some(SessionEvent::Moved("#rust".into())));
        app.server_line("10:10", "* Topic: ownership and borrowing");
    }

    #[test]
    fn the_status_bar_shows_the_room_after_the_welcome() {
        let mut t = Terminal::new(TestBackend::new(80, 10)).unwrap();
        let mut app = joined_app();
        // A server that does not name the room: no room shown.
        let s = render(&mut t, &mut app);
        assert!(s[8].contains("| me | 2 online |"), "{s:?}");
        let mut app = in_lobby();
        let s = render(&mut t, &mut app);
        assert!(
            s[8].contains("| me | #lobby | 2 online | connected"),
            "{s:?}"
        );
        // The user list is titled with the room.
        assert!(s[0].contains("#lobby (2)"), "{s:?}");
        assert_eq!(listed(&s, 80, 6), ["ann", "me"]);
    }

    #[test]
    fn a_move_shows_the_new_room_its_users_and_topic() {
        let mut t = Terminal::new(TestBackend::new(100, 14)).unwrap();
        let mut app = in_lobby();
        app.server_line("10:05", "[ann] bye");
        move_to_rust(&mut app);
        let s = render(&mut t, &mut app);
        let status = &s[12];
        assert!(
            status.contains("| me | #rust | 3 online | connected | topic: ownership and borrowing"),
            "{s:?}"
        );
        assert!(!status.contains("#lobby"), "{s:?}");
        // The list is replaced by the new room's.
        assert!(s[0].contains("#rust (3)"), "{s:?}");
        assert_eq!(listed(&s, 100, 10), ["carol", "dan", "me"]);
        // A rule across the pane marks the move, above the new room's lines.
        let row = |needle: &str| {
            s.iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in {s:?}"))
        };
        let rule = row("── now in #rust ──");
        assert!(row("<ann> bye") < rule, "{s:?}");
        assert_eq!(row("The room contains: carol, dan"), rule + 1, "{s:?}");
        assert_eq!(row("You are now in #rust."), rule + 2, "{s:?}");
        // The rule runs to the pane's edge (the list starts at column 78).
        let pane: String = s[rule].chars().take(78).collect();
        assert!(pane.ends_with("───"), "{pane:?}");
        let buf = t.backend().buffer();
        let x = s[rule].find("now in").unwrap();
        let cell = &buf[(s[rule][..x].chars().count() as u16, rule as u16)];
        assert_eq!(cell.fg, Color::LightGreen);
        assert!(cell.modifier.contains(Modifier::BOLD));
    }

    #[test]
    fn entered_and_left_keep_working_after_a_move() {
        let mut t = Terminal::new(TestBackend::new(100, 12)).unwrap();
        let mut app = in_lobby();
        move_to_rust(&mut app);
        app.server_line("10:11", "* eve has entered the room");
        app.server_line("10:11", "* carol has left the room (moved to #lobby)");
        app.server_line("10:12", "* dan is now known as danny");
        let s = render(&mut t, &mut app);
        assert_eq!(listed(&s, 100, 8), ["danny", "me", "eve"]);
        assert!(s[0].contains("#rust (3)"), "{s:?}");
        assert!(s[10].contains("| #rust | 3 online |"), "{s:?}");
        // Back to the lobby, where ann is alone: the topic goes with the
        // room it belonged to.
        app.server_line("10:13", "* The room contains: ann");
        app.server_line("10:13", "* You are now in #lobby.");
        let s = render(&mut t, &mut app);
        assert_eq!(listed(&s, 100, 8), ["ann", "me"]);
        assert!(s[10].contains("| #lobby | 2 online | connected"), "{s:?}");
        assert!(!s[10].contains("topic"), "{s:?}");
        // `/topic` tells it; setting it shows at once; control characters
        // in it are made visible.
        app.server_line("10:14", "* ann set the topic of #lobby: tea\u{1b}[2J");
        let s = render(&mut t, &mut app);
        assert!(s[10].contains("| topic: tea^[[2J"), "{s:?}");
    }

    /// A move while the user reads older lines does not move the view.
    #[test]
    fn a_move_while_scrolled_up_keeps_the_view() {
        let mut t = Terminal::new(TestBackend::new(100, 7)).unwrap();
        let mut app = in_lobby();
        for i in 0..30 {
            app.server_line("10:00", &format!("[ann] line {i}"));
        }
        render(&mut t, &mut app);
        app.page_up();
        let before = render(&mut t, &mut app);
        move_to_rust(&mut app);
        let after = render(&mut t, &mut app);
        // The pane's rows (the list, left of them, follows the room).
        let pane = |s: &[String]| -> Vec<String> {
            s[..5]
                .iter()
                .map(|l| l.chars().take(78).collect())
                .collect()
        };
        assert_eq!(pane(&before), pane(&after));
        assert!(after[5].contains("4 new below"), "{after:?}");
    }

    #[test]
    fn scrolling_keeps_the_view_and_clamps() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(100, 7)).unwrap();
        for i in 0..50 {
            app.server_line("10:00", &format!("[ann] line {i}"));
        }
        let s = render(&mut t, &mut app);
        assert!(s[4].contains("line 49"), "{s:?}");
        app.page_up();
        let s = render(&mut t, &mut app);
        assert!(s[4].contains("line 45"), "{s:?}");
        // A new line while scrolled up does not move the view.
        app.server_line("10:00", "[ann] line 50");
        let s = render(&mut t, &mut app);
        assert!(s[4].contains("line 45"), "{s:?}");
        assert!(s[5].contains("1 new below"), "{s:?}");
        for _ in 0..100 {
            app.page_up();
        }
        let s = render(&mut t, &mut app);
        assert!(s[0].contains("The room contains"), "{s:?}");
        for _ in 0..100 {
            app.page_down();
        }
        let s = render(&mut t, &mut app);
        assert!(s[4].contains("line 50"), "{s:?}");
        assert_eq!(app.scroll(), 0);
    }

    #[test]
    fn resize_rewraps() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(100, 14)).unwrap();
        app.server_line("10:00", &format!("[ann] {}", "word ".repeat(30)));
        let wide = render(&mut t, &mut app);
        assert!(wide.join("").contains("Online"));
        t.backend_mut().resize(30, 14);
        let narrow = render(&mut t, &mut app);
        // Narrow: no user list, the long line wraps over several rows, the
        // continuation rows indented under the text.
        assert!(!narrow.join("").contains("Online"));
        let first = narrow
            .iter()
            .position(|l| l.starts_with("10:00 <ann> word"))
            .unwrap();
        assert!(narrow[first + 1].starts_with("      "), "{narrow:?}");
        assert!(narrow[first + 2].starts_with("      "), "{narrow:?}");
        assert!(narrow.iter().all(|l| l.chars().count() == 30));
        // Words are not split: every row ends at a word's end.
        for row in &narrow[first..first + 3] {
            assert!(row.trim_end().ends_with("word"), "{narrow:?}");
        }
    }

    #[test]
    fn long_input_scrolls_horizontally() {
        let mut app = joined_app();
        let mut t = Terminal::new(TestBackend::new(20, 5)).unwrap();
        "abcdefghijklmnopqrstuvwxyz"
            .chars()
            .for_each(|c| app.input.insert(c));
        let s = render(&mut t, &mut app);
        assert!(s[4].ends_with("z "), "{s:?}");
        assert_eq!(t.get_cursor_position().unwrap().x, 19);
        app.input.home();
        let s = render(&mut t, &mut app);
        assert!(s[4].starts_with("> abc"), "{s:?}");
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_cuts_long_words() {
        let rows = |spans: Vec<Span<'static>>, w| -> Vec<String> {
            wrap_spans(spans, w).iter().map(|l| l.to_string()).collect()
        };
        assert_eq!(
            rows(vec![Span::raw("12:00 "), Span::raw("aaa bbb ccc")], 14),
            ["12:00 aaa bbb ", "      ccc"]
        );
        assert_eq!(
            rows(vec![Span::raw("x".repeat(20))], 13),
            ["xxxxxxxxxxxxx", "      xxxxxxx"]
        );
        assert_eq!(rows(vec![Span::raw("")], 10), [""]);
        // Wide characters are counted as two columns.
        assert_eq!(rows(vec![Span::raw("日本語")], 5), ["日本", "語"]);
    }

    #[test]
    fn nick_colours_are_stable() {
        assert_eq!(nick_color("Bob"), nick_color("bob"));
        let distinct: std::collections::HashSet<_> = ["a", "b", "c", "d", "e", "f", "alice", "bob"]
            .iter()
            .map(|n| nick_color(n))
            .collect();
        assert!(distinct.len() > 3);
    }

    #[test]
    fn a_password_never_reaches_the_screen() {
        let mut app = App::new("127.0.0.1:7878", Some("alice".into()));
        let mut t = Terminal::new(TestBackend::new(80, 10)).unwrap();
        app.session.on_connected();
        // A chat draft typed while connecting is put aside, not masked.
        "draft".chars().for_each(|c| app.input.insert(c));
        let ev = app.server_line(
            "10:00",
            "* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)",
        );
        assert_eq!(ev, Some(SessionEvent::PasswordWanted("alice".into())));
        app.password_wanted("10:00", "alice");
        assert!(app.input.is_empty());
        let secret = "Sw0rdfish pw";
        secret.chars().for_each(|c| app.input.insert(c));
        let s = render(&mut t, &mut app);
        let all = s.join("\n");
        assert!(!all.contains("Sw0rdfish") && !all.contains("rdfi"), "{s:?}");
        assert!(s[9].starts_with("password> ************ "), "{s:?}");
        assert!(s[8].contains("| alice | password wanted"), "{s:?}");
        assert!(all.contains("shown as *"), "{s:?}");
        // Enter: sent, but not kept in the history nor the scrollback.
        assert_eq!(app.enter_password(), PasswordEntry::Send(secret.into()));
        assert!(matches!(app.session.phase(), Phase::PasswordSent(_)));
        app.input.history_prev();
        assert!(app.input.is_empty());
        // Refused: asked again; the next attempt is masked too.
        app.server_line(
            "10:01",
            "! Wrong password for alice. Try again (2 attempts left).",
        );
        "other-Secret".chars().for_each(|c| app.input.insert(c));
        let s = render(&mut t, &mut app).join("\n");
        assert!(!s.contains("Secret") && s.contains("Wrong password"), "{s}");
        // Only the whole line /quit leaves; a blank line sends nothing.
        app.input.take();
        "/quit".chars().for_each(|c| app.input.insert(c));
        assert_eq!(app.enter_password(), PasswordEntry::Quit("/quit".into()));
        " ".chars().for_each(|c| app.input.insert(c));
        assert_eq!(app.enter_password(), PasswordEntry::Nothing);
        // A lost connection drops the half-typed password instead of
        // showing it in clear.
        "half".chars().for_each(|c| app.input.insert(c));
        app.disconnected();
        assert!(app.input.is_empty());
        let s = render(&mut t, &mut app).join("\n");
        assert!(!s.contains("half") && !s.contains("Sw0rdfish"), "{s}");
        // In the room the draft comes back.
        app.session.on_connected();
        app.server_line(
            "10:02",
            "* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)",
        );
        assert_eq!(app.enter_password(), PasswordEntry::Nothing);
        "Sw0rdfish pw".chars().for_each(|c| app.input.insert(c));
        app.enter_password();
        // Typed ahead while the password was checked: masked, then dropped.
        "typed-ahead".chars().for_each(|c| app.input.insert(c));
        let s = render(&mut t, &mut app).join("\n");
        assert!(
            !s.contains("typed-ahead") && s.contains("> ***********"),
            "{s}"
        );
        assert_eq!(
            app.server_line("10:02", "* The room contains: "),
            Some(SessionEvent::Joined)
        );
        app.joined("10:02");
        assert_eq!(app.input.text(), "draft");
        let s = render(&mut t, &mut app).join("\n");
        assert!(!s.contains("Sw0rdfish"), "{s}");
    }

    /// Enter while disconnected says the line was kept: after the
    /// reconnection it is still in the editor, plain or through an automatic
    /// login (where it is put aside, not masked), and nothing says "dropped".
    #[test]
    fn a_line_kept_while_offline_survives_the_reconnection() {
        let prompt = "* Password for alice? (A new name is registered with the password you send now: at least 8 characters.)";
        for saved_password in [false, true] {
            let mut app = App::new("127.0.0.1:7878", Some("alice".into()));
            let mut t = Terminal::new(TestBackend::new(80, 10)).unwrap();
            app.session.on_connected();
            if saved_password {
                app.session.set_password(Some(Secret::new("Sw0rdfish pw")));
                let ev = app.server_line("10:00", prompt);
                assert!(matches!(ev, Some(SessionEvent::SendPassword(_))));
            }
            assert_eq!(
                app.server_line("10:00", "* The room contains: "),
                Some(SessionEvent::Joined)
            );
            app.joined("10:00");
            app.disconnected();
            "kept line".chars().for_each(|c| app.input.insert(c));
            app.session.on_connected();
            if saved_password {
                let ev = app.server_line("10:01", prompt);
                assert!(matches!(ev, Some(SessionEvent::SendPassword(_))));
                assert!(app.input.is_empty(), "put aside, not masked");
            }
            assert_eq!(
                app.server_line("10:01", "* The room contains: "),
                Some(SessionEvent::Joined)
            );
            app.joined("10:01");
            assert_eq!(
                app.input.text(),
                "kept line",
                "saved_password: {saved_password}"
            );
            let s = render(&mut t, &mut app).join("\n");
            assert!(!s.contains("dropped"), "{s}");
            assert!(s.contains("> kept line"), "{s}");
        }
    }
}
