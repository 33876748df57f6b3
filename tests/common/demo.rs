//! The quickstart example binary, built and started on a free port.

use std::process::{Child, Command, Stdio};

use super::*;

/// The example binary, killed on drop.
pub struct Demo {
    child: Child,
    pub url: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The quickstart example binary, built.
pub fn demo_binary() -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--example", "quickstart"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building the quickstart example failed");
    let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target").into());
    format!("{target}/debug/examples/quickstart")
}

pub fn start_demo(envs: &[(&str, String)]) -> Demo {
    let bin = demo_binary();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.env("PASTDUE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PASTDUE_CONFIG")
        .env_remove("PASTDUE_STORE__URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // The demo prints its URL once it is listening.
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout);
    let mut first = String::new();
    std::io::BufRead::read_line(&mut lines, &mut first).unwrap();
    // Keep draining, so the demo's later prints never hit a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut lines, &mut std::io::sink()));
    assert!(first.contains(&format!("http://127.0.0.1:{port}")), "unexpected first line: {first:?}");
    Demo { child, url: format!("http://127.0.0.1:{port}") }
}
