//! The cosocket operations of [`Io`]: TCP (plain, TLS, Unix) and UDP sockets, with the
//! keepalive pool, name resolution and the egress policy. Each operation finishes at once when
//! it can (buffered data, a write the kernel takes, a pooled connection) and otherwise starts a
//! future the call waits for.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::store::X509StoreBuilder;

use super::conn::{self, Conn, Read};
use super::{dns, egress, pool, GiveBack, Io, Outcome, Sock, Step, SLOT_SPAN};

impl Io {
    /// `settimeouts(connect, send, read)` (milliseconds; None keeps a value).
    pub fn set_timeouts(&mut self, h: usize, t: [Option<Duration>; 3]) {
        match self.slot_mut(h) {
            Some(Sock::Tcp(tcp)) => {
                for (slot, v) in tcp.timeouts.iter_mut().zip(t) {
                    if let Some(v) = v {
                        *slot = v;
                    }
                }
            }
            Some(Sock::Udp(u)) => {
                if let Some(v) = t[2] {
                    u.timeout = v;
                }
            }
            _ => {}
        }
    }

    /// `tcpsock:connect(host, port, {pool = ...})`, or a Unix socket path with port None.
    pub fn connect(
        &mut self,
        h: usize,
        host: String,
        port: Option<u16>,
        pool: Option<String>,
    ) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        // Connecting again closes the previous connection, as in OpenResty.
        tcp.conn = None;
        let name = pool.unwrap_or_else(|| match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        });
        tcp.pool = name.clone();
        if let Some(conn) = pool::take(&name) {
            egress::count_connection(egress::Outcome::Reused);
            tcp.conn = Some(conn);
            return Ok(Step::Now(Outcome::Int(1)));
        }
        let limit = tcp.timeouts[0];
        let target = match port {
            None => {
                let path = host.strip_prefix("unix:").unwrap_or(&host).to_string();
                if let Err(e) = egress::check_unix(&path) {
                    return Ok(Step::Now(Outcome::fail(e)));
                }
                Target::Unix(path)
            }
            Some(port) => match egress::check_name(&host, port) {
                Err(e) => return Ok(Step::Now(Outcome::fail(e))),
                Ok(by_name) => Target::Tcp {
                    host,
                    port,
                    check_ip: !by_name,
                },
            },
        };
        tcp.busy = true;
        let resolver = matches!(target, Target::Tcp { .. }).then(dns::resolver);
        Ok(self.start(h % SLOT_SPAN, async move {
            let r = match (target, resolver) {
                (Target::Unix(path), _) => Conn::unix(&path, limit).await.map_err(|f| f.err),
                (
                    Target::Tcp {
                        host,
                        port,
                        check_ip,
                    },
                    Some(resolver),
                ) => match dns::resolve(&resolver, &host).await {
                    Err(e) => Err(e),
                    Ok(ip) => match check_ip.then(|| egress::check_ip(&host, ip, port)) {
                        Some(Err(e)) => Err(e),
                        _ => Conn::tcp((ip, port).into(), limit).await.map_err(|f| f.err),
                    },
                },
                _ => Err("no resolver".into()),
            };
            match r {
                Ok(conn) => {
                    egress::count_connection(egress::Outcome::Connected);
                    (GiveBack::Tcp(conn), Outcome::Int(1))
                }
                Err(e) => {
                    if !e.contains("egress policy") {
                        egress::count_connection(egress::Outcome::Failed);
                    }
                    (GiveBack::Closed, Outcome::fail(e))
                }
            }
        }))
    }

    /// `tcpsock:sslhandshake(_, server_name, verify)`: TLS over the connection (nothing to do
    /// on a connection from the pool that already speaks TLS).
    pub fn handshake(
        &mut self,
        h: usize,
        server_name: Option<String>,
        verify: bool,
    ) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        let Some(conn) = tcp.conn.take() else {
            return Err("closed".into());
        };
        if conn.is_tls() {
            tcp.conn = Some(conn);
            return Ok(Step::Now(Outcome::Int(1)));
        }
        let connector = match tls_connector() {
            Ok(c) => c,
            Err(e) => {
                tcp.conn = Some(conn);
                return Ok(Step::Now(Outcome::fail(e)));
            }
        };
        tcp.busy = true;
        let limit = tcp.timeouts[0];
        Ok(self.start(h % SLOT_SPAN, async move {
            match conn
                .handshake(&connector, server_name.as_deref(), verify, limit)
                .await
            {
                Ok(conn) => (GiveBack::Tcp(conn), Outcome::Int(1)),
                Err(f) => (GiveBack::Closed, Outcome::fail(f.err)),
            }
        }))
    }

    /// `tcpsock:send(data)`: the bytes sent.
    pub fn send(&mut self, h: usize, data: Bytes) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy writing".into());
        }
        let Some(conn) = tcp.conn.as_mut() else {
            return Err("closed".into());
        };
        let offset = match conn.try_send(&data) {
            Some(Ok(n)) if n == data.len() => {
                egress::count_bytes(true, n);
                return Ok(Step::Now(Outcome::Int(n as i64)));
            }
            Some(Ok(n)) => n,
            Some(Err(f)) => {
                tcp.conn = None;
                return Ok(Step::Now(Outcome::fail(f.err)));
            }
            None => 0,
        };
        let mut conn = tcp.conn.take().expect("checked above");
        tcp.busy = true;
        let limit = tcp.timeouts[1];
        Ok(self.start(h % SLOT_SPAN, async move {
            match conn.send(&data[offset..], limit).await {
                Ok(_) => {
                    egress::count_bytes(true, data.len());
                    (GiveBack::Tcp(conn), Outcome::Int(data.len() as i64))
                }
                Err(f) => (GiveBack::Closed, Outcome::fail(f.err)),
            }
        }))
    }

    /// `tcpsock:receive(...)`, `receiveany`, a `receiveuntil` iterator.
    pub fn receive(&mut self, h: usize, read: Read) -> Result<Step, String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy reading".into());
        }
        let Some(conn) = tcp.conn.as_mut() else {
            return Err("closed".into());
        };
        if let Some(r) = conn.try_read(&read) {
            let outcome = Outcome::of(r.as_ref());
            count_received(&outcome);
            if matches!(&r, Err(f) if f.fatal) {
                tcp.conn = None;
            }
            return Ok(Step::Now(outcome));
        }
        let mut conn = tcp.conn.take().expect("checked above");
        tcp.busy = true;
        let limit = tcp.timeouts[2];
        Ok(self.start(h % SLOT_SPAN, async move {
            let r = conn.read(&read, limit).await;
            let outcome = Outcome::of(r.as_ref());
            count_received(&outcome);
            match r {
                Err(f) if f.fatal => (GiveBack::Closed, outcome),
                _ => (GiveBack::Tcp(conn), outcome),
            }
        }))
    }

    /// `tcpsock:setkeepalive(timeout, size)`: the connection goes to its pool and the socket
    /// is closed for the plugin.
    pub fn keepalive(&mut self, h: usize, idle: Duration, size: usize) -> Result<(), String> {
        let tcp = self.tcp_mut(h)?;
        if tcp.busy {
            return Err("socket busy".into());
        }
        let Some(conn) = tcp.conn.take() else {
            return Err("closed".into());
        };
        if conn.buffered() > 0 {
            return Err("unread data in buffer".into());
        }
        let name = std::mem::take(&mut tcp.pool);
        pool::put(&name, conn, idle, size);
        Ok(())
    }

    /// `tcpsock:getreusedtimes()`.
    pub fn reused(&mut self, h: usize) -> Result<u32, String> {
        match &self.tcp_mut(h)?.conn {
            Some(conn) => Ok(conn.reused),
            None => Err("closed".into()),
        }
    }

    /// `tcpsock:close()` / `udpsock:close()`.
    pub fn close(&mut self, h: usize) -> Result<(), String> {
        let open = match self.slot_mut(h) {
            Some(Sock::Tcp(t)) if !t.busy => t.conn.take().is_some(),
            Some(Sock::Udp(u)) if !u.busy => u.sock.take().is_some(),
            Some(_) => return Err("socket busy".into()),
            None => false,
        };
        if open {
            Ok(())
        } else {
            Err("closed".into())
        }
    }

    /// `udpsock:setpeername(host, port)`.
    pub fn udp_peer(&mut self, h: usize, host: String, port: u16) -> Result<Step, String> {
        let udp = self.udp_mut(h)?;
        if udp.busy {
            return Err("socket busy".into());
        }
        udp.sock = None;
        let check_ip = match egress::check_name(&host, port) {
            Err(e) => return Ok(Step::Now(Outcome::fail(e))),
            Ok(by_name) => !by_name,
        };
        udp.busy = true;
        let resolver = dns::resolver();
        Ok(self.start(h % SLOT_SPAN, async move {
            let r = async {
                let ip = dns::resolve(&resolver, &host).await?;
                if check_ip {
                    egress::check_ip(&host, ip, port)?;
                }
                let local: std::net::SocketAddr = if ip.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = tokio::net::UdpSocket::bind(local)
                    .await
                    .map_err(|e| conn::describe(&e))?;
                sock.connect((ip, port))
                    .await
                    .map_err(|e| conn::describe(&e))?;
                Ok::<_, String>(sock)
            };
            match r.await {
                Ok(sock) => {
                    egress::count_connection(egress::Outcome::Connected);
                    (GiveBack::Udp(Arc::new(sock)), Outcome::Int(1))
                }
                Err(e) => {
                    egress::count_connection(egress::Outcome::Failed);
                    (GiveBack::Closed, Outcome::fail(e))
                }
            }
        }))
    }

    /// `udpsock:send(data)`: datagrams go out at once (or fail).
    pub fn udp_send(&mut self, h: usize, data: &[u8]) -> Result<Outcome, String> {
        let udp = self.udp_mut(h)?;
        let Some(sock) = &udp.sock else {
            return Err("closed".into());
        };
        match sock.try_send(data) {
            Ok(n) => {
                egress::count_bytes(true, n);
                Ok(Outcome::Int(1))
            }
            Err(e) => Ok(Outcome::fail(conn::describe(&e))),
        }
    }

    /// `udpsock:receive(size)`.
    pub fn udp_receive(&mut self, h: usize, size: usize) -> Result<Step, String> {
        let udp = self.udp_mut(h)?;
        if udp.busy {
            return Err("socket busy".into());
        }
        let Some(sock) = udp.sock.clone() else {
            return Err("closed".into());
        };
        udp.busy = true;
        let limit = udp.timeout;
        Ok(self.start(h % SLOT_SPAN, async move {
            let r = conn::udp_receive(&sock, size, limit).await;
            match r {
                Ok(d) => {
                    egress::count_bytes(false, d.len());
                    (GiveBack::Udp(sock), Outcome::Data(d))
                }
                Err(f) => (GiveBack::Udp(sock), Outcome::fail(f.err)),
            }
        }))
    }
}

enum Target {
    Tcp {
        host: String,
        port: u16,
        check_ip: bool,
    },
    Unix(String),
}

fn count_received(o: &Outcome) {
    match o {
        Outcome::Data(d) | Outcome::Until(d, _) => egress::count_bytes(false, d.len()),
        Outcome::Fail(_, p) => egress::count_bytes(false, p.len()),
        _ => {}
    }
}

static TRUSTED_CA: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();

/// Sets the CA bundle plugin sockets verify TLS peers with (Kong's
/// `lua_ssl_trusted_certificate`); without it, the system's store.
pub fn set_trusted_certificate(path: Option<std::path::PathBuf>) {
    let _ = TRUSTED_CA.set(path);
}

/// Checks that the CA bundle can be loaded (at startup, so a bad path fails fast).
pub fn check_trusted_certificate() -> Result<(), String> {
    tls_connector().map(|_| ())
}

pub(crate) fn tls_connector() -> Result<SslConnector, String> {
    static CONNECTOR: OnceLock<Result<SslConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            // The builder already trusts the system store (the CA bundle is parsed once here).
            let mut b =
                SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
            if let Some(path) = TRUSTED_CA.get().and_then(|p| p.as_ref()) {
                // A configured bundle replaces the system store, as nginx's
                // `lua_ssl_trusted_certificate` does.
                let empty = X509StoreBuilder::new().map_err(|e| e.to_string())?;
                b.set_cert_store(empty.build());
                b.set_ca_file(path)
                    .map_err(|e| format!("cannot load {}: {e}", path.display()))?;
            }
            Ok(b.build())
        })
        .clone()
}
