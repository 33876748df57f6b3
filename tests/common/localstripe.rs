//! localstripe, the Stripe emulator, as a private process.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A private `localstripe` (the Stripe emulator) on a free port, killed on
/// drop. `scripts/test.sh` installs it into `.venv`.
pub struct Localstripe {
    child: Child,
    port: u16,
}

impl Localstripe {
    pub fn start() -> Self {
        let bin = std::env::var("LOCALSTRIPE_BIN")
            .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/localstripe").to_owned());
        assert!(
            std::path::Path::new(&bin).exists(),
            "{bin} is missing: run scripts/test.sh (it installs localstripe into .venv)"
        );
        for _ in 0..10 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--from-scratch"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("localstripe did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Localstripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
