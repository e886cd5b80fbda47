//! A private tmux server (its own `-L` socket, killed on drop) for tests
//! that drive a program on a real terminal: type keys, read the screen.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is installed (tests skip without it, except in CI).
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `tag` keeps tests running in parallel on separate tmux servers.
    pub fn new(tag: &str) -> Tmux {
        Tmux {
            socket: format!("loopchat-test-{}-{tag}", std::process::id()),
        }
    }

    /// Runs one tmux command on this server; panics if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `cmd` (a shell command line) in a new `width`x`height`
    /// session called `name`.
    pub fn session(&self, name: &str, width: u16, height: u16, cmd: &str) {
        let (w, h) = (width.to_string(), height.to_string());
        self.run(&["new-session", "-d", "-s", name, "-x", &w, "-y", &h, cmd]);
    }

    pub fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", name])
    }

    /// Polls `name`'s screen until `pred` holds; panics with the screen
    /// after `timeout`.
    pub fn wait_for(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen(name);
            if pred(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what} in {name}'s screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn keys(&self, name: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", name];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The pid of the program in `name`'s pane.
    pub fn pane_pid(&self, name: &str) -> u32 {
        self.run(&["display-message", "-p", "-t", name, "#{pane_pid}"])
            .trim()
            .parse()
            .expect("pane pid")
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
