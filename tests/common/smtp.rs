//! A real SMTP receiver (aiosmtpd) writing into a maildir.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A private SMTP server (aiosmtpd from the test venv) writing every message
/// into a maildir; killed on drop.
pub struct SmtpServer {
    child: Option<Child>,
    pub port: u16,
    pub maildir: std::path::PathBuf,
}

impl SmtpServer {
    pub fn start() -> Self {
        let port = free_port();
        let maildir = std::env::temp_dir().join(format!("pastdue-maildir-{}-{port}", std::process::id()));
        let mut s = Self { child: None, port, maildir };
        s.restart();
        s
    }

    /// An address nothing listens on yet (for "SMTP down" tests).
    pub fn reserved() -> Self {
        let port = free_port();
        let maildir = std::env::temp_dir().join(format!("pastdue-maildir-{}-{port}", std::process::id()));
        Self { child: None, port, maildir }
    }

    pub fn restart(&mut self) {
        let python = std::env::var("AIOSMTPD_PYTHON")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned());
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(self.maildir.join(sub)).unwrap();
        }
        let child = Command::new(&python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{python} -m aiosmtpd: {e} (scripts/test.sh installs aiosmtpd into .venv)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, as raw text.
    pub fn messages(&self) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(self.maildir.join(sub)) {
                for e in entries.flatten() {
                    out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        out
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}
