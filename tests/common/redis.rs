//! A real `redis-server` for the tests, on an ephemeral loopback port, killed on drop.
//! `scripts/deps` installs it; a test that needs it fails loudly when it is missing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server`.
pub struct Redis {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// Starts one (with `extra` arguments, e.g. `["--requirepass", "pw"]`) and waits, bounded,
    /// until it listens.
    pub async fn start(extra: &[&str]) -> Redis {
        for _ in 0..5 {
            if let Some(r) = Self::try_on(super::free_port(), extra).await {
                return r;
            }
        }
        panic!("redis-server did not start listening");
    }

    /// Starts one on `port` (a server that was stopped comes back there).
    pub async fn start_on(port: u16, extra: &[&str]) -> Redis {
        for _ in 0..50 {
            if let Some(r) = Self::try_on(port, extra).await {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not start listening on {port}");
    }

    /// Starts one that speaks only TLS (with the certificate and key PEM files given), without
    /// asking clients for certificates.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Redis {
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        for _ in 0..5 {
            let tls = [
                "--tls-cert-file",
                cert,
                "--tls-key-file",
                key,
                "--tls-auth-clients",
                "no",
            ];
            if let Some(r) = Self::try_at(super::free_port(), true, &tls).await {
                return r;
            }
        }
        panic!("redis-server did not start listening with TLS");
    }

    async fn try_on(port: u16, extra: &[&str]) -> Option<Redis> {
        Self::try_at(port, false, extra).await
    }

    async fn try_at(port: u16, tls: bool, extra: &[&str]) -> Option<Redis> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<String> = if tls {
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]
        } else {
            vec!["--port".into(), port.to_string()]
        };
        let mut child = Command::new("redis-server")
            .args(&ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install it with scripts/deps (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if super::listens(child.id(), port) {
                return Some(Redis {
                    port,
                    child,
                    _dir: dir,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Runs `redis-cli` against this server with `args` (e.g. `["-n", "2", "GET", "k"]`);
    /// what it printed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--no-auth-warning"])
            .args(args)
            .output()
            .expect(
                "redis-cli not found: install it with scripts/deps (apt-get install redis-server)",
            );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
