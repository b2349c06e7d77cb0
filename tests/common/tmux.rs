//! A terminal program for real: a tmux pane running a shell, keys typed
//! with `send-keys`, the screen read with `capture-pane`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::require_program;

pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// A 140×45 pane with a bash whose prompt is `PROMPT$ `.
    pub fn new() -> Self {
        Tmux::sized_in(140, 45, None)
    }

    /// A pane of `width`×`height`, its shell started in `cwd`.
    pub fn sized_in(width: u16, height: u16, cwd: Option<&Path>) -> Self {
        require_program("tmux");
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let socket = format!("snapstorm-test-{}-{n}", std::process::id());
        let tmux = Tmux { socket };
        let (width, height) = (width.to_string(), height.to_string());
        let mut args = vec!["new-session", "-d", "-s", "t", "-x", &width, "-y", &height];
        let cwd = cwd.map(|dir| dir.to_str().expect("UTF-8 path").to_owned());
        if let Some(dir) = &cwd {
            args.extend(["-c", dir]);
        }
        args.push("env PS1='PROMPT$ ' bash --norc --noprofile");
        let status = tmux.cmd(&args).status().unwrap();
        assert!(status.success(), "tmux new-session");
        tmux
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut command = Command::new("tmux");
        command
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args);
        command
    }

    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status().unwrap().success());
    }

    pub fn screen(&self) -> String {
        let out = self
            .cmd(&["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the screen to satisfy `check`; fails with the screen shown.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]).status();
    }
}
