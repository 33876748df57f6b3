//! A private 3-master Redis Cluster.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::redis::{raw_command, spawn_redis};
use super::*;

/// A private 3-master Redis Cluster on loopback, killed (and its files
/// removed) on drop.
pub struct RedisCluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    dir: std::path::PathBuf,
}

impl RedisCluster {
    pub fn start() -> Self {
        for attempt in 0..5 {
            if let Some(cluster) = Self::try_start(attempt) {
                return cluster;
            }
        }
        panic!("could not start a 3-node redis cluster");
    }

    fn try_start(attempt: u32) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!("pastdue-cluster-{}-{}-{attempt}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).ok()?;
        // A node needs its port and port + 10000 (the cluster bus) free.
        let mut ports = Vec::new();
        while ports.len() < 3 {
            let p = free_port();
            if p < 55_000 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() && !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut cluster = Self { nodes: Vec::new(), ports: ports.clone(), dir: dir.clone() };
        for &p in &ports {
            let conf = dir.join(format!("nodes-{p}.conf"));
            let child = spawn_redis(p, &["--cluster-enabled", "yes", "--cluster-config-file", conf.to_str()?, "--dir", dir.to_str()?])?;
            cluster.nodes.push(child);
        }
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut create = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&hosts)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // `--cluster create` waits for the nodes to join with no time limit:
        // a node whose bus port was taken meanwhile would hang the suite.
        // Give it 20 s, then try again on fresh ports.
        let deadline = Instant::now() + Duration::from_secs(20);
        let created = loop {
            if let Some(status) = create.try_wait().ok()? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = create.kill();
                let _ = create.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !created.success() {
            return None;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = ports.iter().all(|&p| raw_command(p, "CLUSTER INFO").is_some_and(|i| i.contains("cluster_state:ok")));
            if ok {
                return Some(cluster);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
