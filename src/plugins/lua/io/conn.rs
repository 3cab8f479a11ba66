//! One cosocket connection (TCP, TLS over TCP, or a Unix socket) with its read buffer, and the
//! reads and writes of lua-nginx-module's `tcpsock` API as async operations. Every operation
//! takes its timeout; a read that times out keeps the socket usable (the data read so far is
//! handed back as the partial result), any other failure leaves it closed, as OpenResty does.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use openssl::ssl::{Ssl, SslConnector};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_openssl::SslStream;

/// What a read asks for (`receive`'s patterns, `receiveany`, a `receiveuntil` iterator).
#[derive(Debug, Clone)]
pub enum Read {
    /// `*l`: a line without its LF; CRs in it are dropped.
    Line,
    /// `*L`: a line with its LF (kept as received).
    LineKeep,
    /// A number: exactly this many bytes.
    Exactly(usize),
    /// `*a`: everything up to the end of the stream.
    All,
    /// `receiveany(max)`: whatever arrives first, at most `max` bytes.
    Any(usize),
    /// `receiveuntil`: the data before `pattern` (or, with `max`, at most `max` bytes of it).
    Until {
        pattern: Bytes,
        max: Option<usize>,
        inclusive: bool,
    },
}

/// A read's result.
#[derive(Debug)]
pub enum Got {
    /// The data asked for.
    Data(Bytes),
    /// `receiveuntil`: data, and whether the pattern was reached (and consumed).
    Until(Bytes, bool),
}

/// Why an operation failed: OpenResty's error string, and whatever was read before it.
#[derive(Debug)]
pub struct Failed {
    /// "timeout", "closed", "connection reset by peer", ...
    pub err: String,
    /// Data read before the failure (the third return value of `receive`).
    pub partial: Bytes,
    /// The connection cannot be used any more.
    pub fatal: bool,
}

impl Failed {
    /// A connect, handshake or send that timed out (the connection is given up).
    fn timeout() -> Failed {
        Failed {
            err: "timeout".into(),
            partial: Bytes::new(),
            fatal: true,
        }
    }

    fn io(e: &io::Error) -> Failed {
        Failed {
            err: describe(e),
            partial: Bytes::new(),
            fatal: true,
        }
    }
}

/// OpenResty's wording of an I/O error.
pub fn describe(e: &io::Error) -> String {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset by peer".into(),
        K::BrokenPipe => "broken pipe".into(),
        K::TimedOut => "timeout".into(),
        K::UnexpectedEof => "closed".into(),
        K::NotFound => "no such file or directory".into(),
        K::PermissionDenied => "permission denied".into(),
        _ => match e.raw_os_error() {
            Some(libc::EHOSTUNREACH) => "no route to host".into(),
            Some(libc::ENETUNREACH) => "network is unreachable".into(),
            _ => e.to_string().to_lowercase(),
        },
    }
}

/// A TLS handshake over `tcp` with OpenResty's semantics: SNI and hostname verification only
/// when `server_name` is given, no verification at all unless `verify`. Errors are OpenResty's
/// strings ("timeout", "20: unable to get local issuer certificate", "handshake failed: ...").
pub async fn tls(
    tcp: TcpStream,
    connector: &SslConnector,
    server_name: Option<&str>,
    verify: bool,
    limit: Duration,
) -> Result<SslStream<TcpStream>, String> {
    let setup = || -> Result<Ssl, openssl::error::ErrorStack> {
        let mut config = connector.configure()?;
        config.set_verify_hostname(verify && server_name.is_some());
        if !verify {
            config.set_verify(openssl::ssl::SslVerifyMode::NONE);
        }
        config.set_use_server_name_indication(server_name.is_some());
        config.into_ssl(server_name.unwrap_or(""))
    };
    let ssl = setup().map_err(|e| format!("handshake failed: {e}"))?;
    let mut tls = SslStream::new(ssl, tcp).map_err(|e| format!("handshake failed: {e}"))?;
    match tokio::time::timeout(limit, std::pin::Pin::new(&mut tls).connect()).await {
        Err(_) => Err("timeout".into()),
        Ok(Err(e)) => {
            let verify_error = tls.ssl().verify_result();
            Err(if verify_error != openssl::x509::X509VerifyResult::OK {
                format!("{}: {}", verify_error.as_raw(), verify_error.error_string())
            } else {
                format!("handshake failed: {e}")
            })
        }
        Ok(Ok(())) => Ok(tls),
    }
}

enum Stream {
    Tcp(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
    Unix(UnixStream),
}

/// A connected cosocket.
pub struct Conn {
    stream: Stream,
    buf: BytesMut,
    /// Reached the end of the stream (the peer closed its side).
    eof: bool,
    /// How many times the connection was taken from the keepalive pool.
    pub reused: u32,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.stream {
            Stream::Tcp(_) => "tcp",
            Stream::Tls(_) => "tls",
            Stream::Unix(_) => "unix",
        };
        f.debug_struct("Conn")
            .field("kind", &kind)
            .field("buffered", &self.buf.len())
            .finish()
    }
}

const READ_CHUNK: usize = 16 * 1024;
/// Chunks a read may take from the socket without waiting (64 KiB).
const SYNC_CHUNKS: usize = 4;

/// Most data a socket buffers for one read: what a worker's VM may hold.
fn max_buffered() -> usize {
    crate::plugins::lua::sandbox::limits().memory
}

impl Conn {
    fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            buf: BytesMut::new(),
            eof: false,
            reused: 0,
        }
    }

    /// Connects over TCP.
    pub async fn tcp(addr: std::net::SocketAddr, limit: Duration) -> Result<Conn, Failed> {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Err(_) => Err(Failed::timeout()),
            Ok(Err(e)) => Err(Failed::io(&e)),
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                Ok(Conn::new(Stream::Tcp(s)))
            }
        }
    }

    /// Connects to a Unix domain socket.
    pub async fn unix(path: &str, limit: Duration) -> Result<Conn, Failed> {
        match tokio::time::timeout(limit, UnixStream::connect(path)).await {
            Err(_) => Err(Failed::timeout()),
            Ok(Err(e)) => Err(Failed::io(&e)),
            Ok(Ok(s)) => Ok(Conn::new(Stream::Unix(s))),
        }
    }

    /// Whether TLS is on.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Bytes received and not yet read by the plugin.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Runs the TLS handshake over the TCP connection (`sslhandshake`).
    pub async fn handshake(
        self,
        connector: &SslConnector,
        server_name: Option<&str>,
        verify: bool,
        limit: Duration,
    ) -> Result<Conn, Failed> {
        let Stream::Tcp(tcp) = self.stream else {
            return Err(Failed {
                err: "TLS is only available over a TCP connection".into(),
                partial: Bytes::new(),
                fatal: false,
            });
        };
        match tls(tcp, connector, server_name, verify, limit).await {
            Ok(tls) => Ok(Conn {
                stream: Stream::Tls(Box::new(tls)),
                buf: self.buf,
                eof: false,
                reused: self.reused,
            }),
            Err(err) => Err(Failed {
                fatal: true,
                partial: Bytes::new(),
                err,
            }),
        }
    }

    /// Writes without waiting what the socket takes now (plain TCP and Unix sockets): the bytes
    /// written (possibly fewer than given: the caller sends the rest with [`Conn::send`]), or
    /// None when nothing could be written.
    pub fn try_send(&mut self, data: &[u8]) -> Option<Result<usize, Failed>> {
        let mut written = 0;
        while written < data.len() {
            let r = match &self.stream {
                Stream::Tcp(s) => s.try_write(&data[written..]),
                Stream::Unix(s) => s.try_write(&data[written..]),
                Stream::Tls(_) => return None,
            };
            match r {
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if written == 0 {
                        return None;
                    }
                    // Part of it went out: the caller sends the rest with `send`.
                    return Some(Ok(written));
                }
                Err(e) => return Some(Err(Failed::io(&e))),
            }
        }
        Some(Ok(written))
    }

    /// Writes all of `data` within `limit`.
    pub async fn send(&mut self, data: &[u8], limit: Duration) -> Result<usize, Failed> {
        let write = async {
            match &mut self.stream {
                Stream::Tcp(s) => s.write_all(data).await,
                Stream::Tls(s) => s.write_all(data).await,
                Stream::Unix(s) => s.write_all(data).await,
            }
        };
        match tokio::time::timeout(limit, write).await {
            Err(_) => Err(Failed::timeout()),
            Ok(Err(e)) => Err(Failed::io(&e)),
            Ok(Ok(())) => Ok(data.len()),
        }
    }

    /// Serves `read` from what is already buffered, or from the socket without waiting (plain
    /// TCP and Unix sockets). None when the caller must wait.
    pub fn try_read(&mut self, read: &Read) -> Option<Result<Got, Failed>> {
        // What a call reads without waiting is bounded: a peer that keeps sending is read on by
        // the asynchronous path, where the worker serves others meanwhile.
        for _ in 0..SYNC_CHUNKS {
            if let Some(got) = self.take(read) {
                return Some(Ok(got));
            }
            if self.eof {
                return Some(self.at_eof(read));
            }
            if let Err(f) = self.check_room() {
                return Some(Err(f));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let r = match &self.stream {
                Stream::Tcp(s) => s.try_read(&mut chunk),
                Stream::Unix(s) => s.try_read(&mut chunk),
                Stream::Tls(_) => return None,
            };
            match r {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => return Some(Err(self.fail(&e))),
            }
        }
        None
    }

    /// Fails once more is buffered than a plugin's VM could hold as a string: a peer cannot
    /// make the gateway buffer without bound (`*a` of an endless stream, a huge `receive(n)`).
    fn check_room(&mut self) -> Result<(), Failed> {
        if self.buf.len() <= max_buffered() {
            return Ok(());
        }
        self.buf.clear();
        Err(Failed {
            err: "too much data: more than a plugin's Lua VM may hold".into(),
            partial: Bytes::new(),
            fatal: true,
        })
    }

    /// Reads what `read` asks for within `limit` (a timeout keeps the connection; the data
    /// read so far is returned as partial and stays consumed, as in OpenResty).
    pub async fn read(&mut self, read: &Read, limit: Duration) -> Result<Got, Failed> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(got) = self.take(read) {
                return Ok(got);
            }
            if self.eof {
                return self.at_eof(read);
            }
            self.check_room()?;
            let mut chunk = [0u8; READ_CHUNK];
            let n = match tokio::time::timeout_at(deadline, self.read_some(&mut chunk)).await {
                Err(_) => {
                    let partial = match read {
                        // receiveany/until keep unread data for the next call.
                        Read::Any(_) | Read::Until { .. } => Bytes::new(),
                        _ => self.buf.split().freeze(),
                    };
                    return Err(Failed {
                        err: "timeout".into(),
                        partial,
                        fatal: false,
                    });
                }
                Ok(Err(e)) => return Err(self.fail(&e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                self.eof = true;
            } else {
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    async fn read_some(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(s) => s.read(chunk).await,
            Stream::Tls(s) => s.read(chunk).await,
            Stream::Unix(s) => s.read(chunk).await,
        }
    }

    fn fail(&mut self, e: &io::Error) -> Failed {
        Failed {
            err: describe(e),
            partial: self.buf.split().freeze(),
            fatal: true,
        }
    }

    /// The result of `read` once the peer closed: `*a` gets what is left, the others "closed"
    /// with the rest as partial data.
    fn at_eof(&mut self, read: &Read) -> Result<Got, Failed> {
        match read {
            Read::All => Ok(Got::Data(self.buf.split().freeze())),
            _ => Err(Failed {
                err: "closed".into(),
                partial: self.buf.split().freeze(),
                fatal: true,
            }),
        }
    }

    /// Takes what `read` asks for from the buffer, if it is all there.
    fn take(&mut self, read: &Read) -> Option<Got> {
        match read {
            Read::Line | Read::LineKeep => {
                let at = memchr::memchr(b'\n', &self.buf)?;
                let mut line = self.buf.split_to(at + 1);
                if matches!(read, Read::Line) {
                    line.truncate(at);
                    if line.contains(&b'\r') {
                        let kept: Vec<u8> = line.iter().copied().filter(|b| *b != b'\r').collect();
                        return Some(Got::Data(Bytes::from(kept)));
                    }
                }
                Some(Got::Data(line.freeze()))
            }
            Read::Exactly(n) => {
                (self.buf.len() >= *n).then(|| Got::Data(self.buf.split_to(*n).freeze()))
            }
            Read::All => None,
            Read::Any(max) => (!self.buf.is_empty()).then(|| {
                let n = (*max).min(self.buf.len());
                Got::Data(self.buf.split_to(n).freeze())
            }),
            Read::Until {
                pattern,
                max,
                inclusive,
            } => {
                if let Some(at) = memchr::memmem::find(&self.buf, pattern) {
                    if let Some(max) = max {
                        if at > *max {
                            return Some(Got::Until(self.buf.split_to(*max).freeze(), false));
                        }
                    }
                    let mut data = self.buf.split_to(at);
                    if *inclusive {
                        data.extend_from_slice(pattern);
                    }
                    self.buf.advance(pattern.len());
                    return Some(Got::Until(data.freeze(), true));
                }
                // Bytes that cannot be the start of the pattern may go out in `max`-sized pieces.
                let max = (*max)?;
                let safe = self
                    .buf
                    .len()
                    .saturating_sub(pattern.len().saturating_sub(1));
                (safe >= max).then(|| Got::Until(self.buf.split_to(max).freeze(), false))
            }
        }
    }

    /// Whether the idle connection is still usable: not closed by the peer and with nothing
    /// unexpected to read (checked before a pooled connection is handed out again).
    pub fn alive(&self) -> bool {
        if self.eof || !self.buf.is_empty() {
            return false;
        }
        let mut probe = [0u8; 1];
        let r = match &self.stream {
            Stream::Tcp(s) => s.try_read(&mut probe),
            Stream::Tls(s) => s.get_ref().try_read(&mut probe),
            Stream::Unix(s) => s.try_read(&mut probe),
        };
        matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Reads and writes a datagram socket (`ngx.socket.udp`).
pub async fn udp_receive(
    sock: &tokio::net::UdpSocket,
    size: usize,
    limit: Duration,
) -> Result<Bytes, Failed> {
    let mut buf = vec![0u8; size.clamp(1, 65536)];
    match tokio::time::timeout(limit, sock.recv(&mut buf)).await {
        Err(_) => Err(Failed {
            fatal: false,
            ..Failed::timeout()
        }),
        Ok(Err(e)) => Err(Failed::io(&e)),
        Ok(Ok(n)) => {
            buf.truncate(n);
            Ok(Bytes::from(buf))
        }
    }
}
