//! Active health checks: one background task for the whole process reads the current snapshot
//! and probes each target whose interval has passed (`healthy.interval` for healthy targets,
//! `unhealthy.interval` for unhealthy ones; 0 disables), at most `concurrency` at a time per
//! upstream. A probe is Kong's: connect (`tcp`), or `GET http_path HTTP/1.0` with the target
//! (or `host_header`) as Host and the configured headers, reading only the status line.
//! Reloads need no bookkeeping: the next round sees the new snapshot, and a target's probe
//! clock and health live in its shared state.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use super::health::Report;
use crate::config::model::CheckType;
use crate::snapshot::{CheckSource, Snapshot};

/// Longest pause between two looks at the snapshot (picks up reloads).
const MAX_TICK: Duration = Duration::from_millis(250);
/// Shortest pause.
const MIN_TICK: Duration = Duration::from_millis(10);

/// The process-wide active health checker.
pub struct HealthChecker {
    state: Arc<ArcSwap<Snapshot>>,
}

impl HealthChecker {
    /// A checker of the snapshots published in `state`.
    pub fn new(state: Arc<ArcSwap<Snapshot>>) -> Self {
        HealthChecker { state }
    }

    /// Starts the probes that are due; returns how long to wait before looking again.
    fn round(&self) -> Duration {
        let snap = self.state.load_full();
        let now = Instant::now();
        let mut tick = MAX_TICK;
        for (b, bal) in snap.balancers.iter().enumerate() {
            let active = &bal.checks.active;
            let (up, down) = (active.healthy.interval, active.unhealthy.interval);
            if up <= 0.0 && down <= 0.0 {
                continue;
            }
            for interval in [up, down].into_iter().filter(|&i| i > 0.0) {
                tick = tick.min(Duration::from_secs_f64(interval / 2.0));
            }
            let due: Vec<usize> = (0..bal.targets.len())
                .filter(|&i| {
                    let t = &bal.targets[i];
                    let interval = if t.state.health.is_healthy() {
                        up
                    } else {
                        down
                    };
                    t.weight > 0 && t.state.probe_due(interval, now)
                })
                .collect();
            if due.is_empty() {
                continue;
            }
            let snap = snap.clone();
            let limit = active.concurrency.max(1) as usize;
            tokio::spawn(async move {
                let mut running = JoinSet::new();
                for i in due {
                    if running.len() >= limit {
                        running.join_next().await;
                    }
                    running.spawn(probe_and_report(snap.clone(), b, i));
                }
                while running.join_next().await.is_some() {}
            });
        }
        tick.max(MIN_TICK)
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let wait = self.round();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn probe_and_report(snap: Arc<Snapshot>, b: usize, i: usize) {
    let bal = &snap.balancers[b];
    let outcome = probe(&snap, b, i).await;
    bal.targets[i].state.probe_done();
    match outcome {
        Probe::Status(s) => bal.report_status(i, CheckSource::Active, s),
        Probe::Done(r) => bal.report(i, CheckSource::Active, r),
    }
}

/// What a probe saw.
enum Probe {
    /// An HTTP status (0: unreadable status line).
    Status(u16),
    /// A verdict without a status: no answer, or a `tcp` probe that connected.
    Done(Report),
}

async fn probe(snap: &Snapshot, b: usize, i: usize) -> Probe {
    let bal = &snap.balancers[b];
    let t = &bal.targets[i];
    let a = &bal.checks.active;
    let limit = Duration::from_secs_f64(a.timeout.max(0.001));
    let addr = match tokio::time::timeout(limit, tokio::net::lookup_host((t.host.as_str(), t.port)))
        .await
    {
        Ok(Ok(mut addrs)) => addrs.next(),
        Ok(Err(_)) => None,
        Err(_) => return Probe::Done(Report::Timeout),
    };
    let Some(addr) = addr else {
        return Probe::Done(Report::TcpFailure);
    };
    let tcp = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Err(_) => return Probe::Done(Report::Timeout),
        Ok(Err(_)) => return Probe::Done(Report::TcpFailure),
        Ok(Ok(s)) => s,
    };
    let host = bal.host_header.clone().unwrap_or_else(|| t.host.clone());
    let mut head = format!("GET {} HTTP/1.0\r\n", a.http_path);
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Host: {host}\r\n\r\n"));
    match a.kind {
        CheckType::Tcp => Probe::Done(Report::Success),
        CheckType::Http => exchange(tcp, &head, limit).await,
        CheckType::Https => {
            let sni = a.https_sni.clone().unwrap_or(host);
            let verify = a.https_verify_certificate;
            let ssl = CONNECTORS[usize::from(verify)]
                .as_ref()
                .ok()
                .and_then(|c| c.configure().ok())
                .and_then(|c| c.verify_hostname(verify).into_ssl(&sni).ok());
            let Some(ssl) = ssl else {
                return Probe::Done(Report::TcpFailure);
            };
            let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, tcp) else {
                return Probe::Done(Report::TcpFailure);
            };
            match tokio::time::timeout(limit, std::pin::Pin::new(&mut tls).connect()).await {
                Err(_) => Probe::Done(Report::Timeout),
                Ok(Err(_)) => Probe::Done(Report::TcpFailure),
                Ok(Ok(())) => exchange(tls, &head, limit).await,
            }
        }
    }
}

/// TLS connectors without and with certificate verification.
static CONNECTORS: LazyLock<[Result<SslConnector, openssl::error::ErrorStack>; 2]> =
    LazyLock::new(|| {
        let build = |verify: bool| {
            let mut b = SslConnector::builder(SslMethod::tls_client())?;
            if !verify {
                b.set_verify(SslVerifyMode::NONE);
            }
            Ok(b.build())
        };
        [build(false), build(true)]
    });

/// Sends the request head and reads the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    head: &str,
    limit: Duration,
) -> Probe {
    let io = async {
        s.write_all(head.as_bytes()).await?;
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < 4096 {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(buf)
    };
    match tokio::time::timeout(limit, io).await {
        Err(_) => Probe::Done(Report::Timeout),
        Ok(Err(_)) => Probe::Done(Report::TcpFailure),
        Ok(Ok(buf)) if buf.is_empty() => Probe::Done(Report::TcpFailure),
        Ok(Ok(buf)) => Probe::Status(status_of(&buf)),
    }
}

/// The status of `HTTP/x.y NNN ...`, or 0.
fn status_of(line: &[u8]) -> u16 {
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::status_of;

    #[test]
    fn reads_the_status_line() {
        assert_eq!(status_of(b"HTTP/1.1 503 Service Unavailable\r\n"), 503);
        assert_eq!(status_of(b"HTTP/1.0 200 OK\r\nx: y"), 200);
        assert_eq!(status_of(b"garbage"), 0);
    }
}
