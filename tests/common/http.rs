//! Hand-written HTTP clients for the tests: HTTP/1.1 (keep-alive, Content-Length or chunked
//! responses) and a minimal HTTP/2 client (one stream at a time, flow control, SETTINGS, PING,
//! GOAWAY, HPACK). hyper's `client` feature is not enabled in this crate, so hyper cannot be the
//! client here.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::hpack;

/// Deadline for one request/response exchange, connection set-up included.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Which HTTP version to speak (and offer in ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1, ALPN `http/1.1`.
    Http1,
    /// HTTP/2, ALPN `h2`.
    Http2,
}

impl Proto {
    /// Both versions.
    pub const ALL: [Self; 2] = [Self::Http1, Self::Http2];

    /// The ALPN protocol id.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            Self::Http1 => b"http/1.1",
            Self::Http2 => b"h2",
        }
    }
}

/// A response, whatever the protocol.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

/// A TLS client configuration trusting only `ca`, offering `alpn`, without session resumption
/// (every connection does a full handshake and sees the certificate served now).
pub fn connector(ca: CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// Opens a TLS connection to `addr` for server name `name`.
pub async fn connect_tls(
    connector: &TlsConnector,
    addr: SocketAddr,
    name: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(name.to_owned()).map_err(io::Error::other)?;
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        connector.connect(name, tcp).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS connect timed out"))?
}

/// One kept-alive connection speaking HTTP/1.1 or HTTP/2 over TLS.
pub enum Client {
    /// HTTP/1.1.
    H1(Box<H1<TlsStream<TcpStream>>>),
    /// HTTP/2.
    H2(Box<H2<TlsStream<TcpStream>>>),
}

impl Client {
    /// Connects and checks that ALPN picked the protocol asked for.
    pub async fn connect(
        connector: &TlsConnector,
        addr: SocketAddr,
        proto: Proto,
    ) -> io::Result<Self> {
        let stream = connect_tls(connector, addr, "localhost").await?;
        let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        if alpn.as_deref() != Some(proto.alpn()) {
            return Err(io::Error::other(format!(
                "ALPN negotiated {alpn:?}, wanted {proto:?}"
            )));
        }
        Ok(match proto {
            Proto::Http1 => Self::H1(Box::new(H1::new(stream))),
            Proto::Http2 => Self::H2(Box::new(H2::handshake(stream).await?)),
        })
    }

    /// The TLS session.
    pub fn tls(&self) -> &rustls::ClientConnection {
        match self {
            Self::H1(c) => c.io.get_ref().1,
            Self::H2(c) => c.io.get_ref().1,
        }
    }

    /// The DER of the server's leaf certificate.
    pub fn peer_leaf(&self) -> Vec<u8> {
        self.tls().peer_certificates().unwrap()[0].to_vec()
    }

    /// Sends one request and reads its response, within [`IO_TIMEOUT`].
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let fut = async {
            match self {
                Self::H1(c) => c.request(method, path, headers, body).await,
                Self::H2(c) => c.request(method, path, headers, body).await,
            }
        };
        tokio::time::timeout(IO_TIMEOUT, fut)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))?
    }

    /// POSTs a JSON body; panics on transport errors.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Response {
        self.request("POST", path, &[("content-type", "application/json")], body)
            .await
            .unwrap_or_else(|e| panic!("POST {path} failed: {e}"))
    }
}

// === HTTP/1.1 ===

/// The request head, with Host and Content-Length.
pub fn h1_head(method: &str, path: &str, headers: &[(&str, &str)], body_len: usize) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: localhost\r\n");
    for (n, v) in headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    if method != "GET" || body_len > 0 {
        let _ = write!(head, "content-length: {body_len}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// An HTTP/1.1 connection over any stream.
pub struct H1<S> {
    /// The stream.
    pub io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1<S> {
    /// Wraps a connected stream.
    pub fn new(io: S) -> Self {
        Self {
            io,
            buf: Vec::new(),
        }
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Sends a request and reads the response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut msg = h1_head(method, path, headers, body.len());
        msg.extend_from_slice(body);
        // A server refusing the body may stop reading; its response is still read below.
        let written = self.write_raw(&msg).await;
        match self.read_response().await {
            Ok(r) => Ok(r),
            Err(e) => Err(written.err().unwrap_or(e)),
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        self.buf.reserve(16 * 1024);
        let n = self.io.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(())
    }

    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            self.fill().await?;
        }
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads one response (skipping 1xx), its body by Content-Length or chunked.
    pub async fn read_response(&mut self) -> io::Result<Response> {
        loop {
            let status_line = self.line().await?;
            let status = status_line
                .strip_prefix("HTTP/1.1 ")
                .and_then(|s| s.get(..3))
                .and_then(|s| s.parse::<u16>().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let line = self.line().await?;
                if line.is_empty() {
                    break;
                }
                let (n, v) = line
                    .split_once(':')
                    .ok_or_else(|| io::Error::other(format!("bad header {line:?}")))?;
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
            if (100..200).contains(&status) {
                continue;
            }
            let mut response = Response {
                status,
                headers,
                body: Vec::new(),
            };
            if response
                .header("transfer-encoding")
                .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
            {
                loop {
                    let size_line = self.line().await?;
                    let size = usize::from_str_radix(
                        size_line.split(';').next().unwrap_or_default().trim(),
                        16,
                    )
                    .map_err(|_| io::Error::other(format!("bad chunk size {size_line:?}")))?;
                    if size == 0 {
                        while !self.line().await?.is_empty() {}
                        break;
                    }
                    let chunk = self.take(size).await?;
                    response.body.extend_from_slice(&chunk);
                    self.take(2).await?;
                }
            } else {
                let len = response
                    .header("content-length")
                    .map(|v| v.parse::<usize>().map_err(io::Error::other))
                    .transpose()?
                    .unwrap_or(0);
                response.body = self.take(len).await?;
            }
            return Ok(response);
        }
    }
}

/// GET over plain HTTP/1.1 on a new connection (the admin port).
pub async fn plain_get(addr: SocketAddr, path: &str) -> io::Result<Response> {
    tokio::time::timeout(IO_TIMEOUT, async {
        let tcp = TcpStream::connect(addr).await?;
        H1::new(tcp).request("GET", path, &[], &[]).await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "GET timed out"))?
}

// === HTTP/2 ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Our receive window, per stream and for the connection.
const RECV_WINDOW: u32 = 1 << 24;
const DEFAULT_WINDOW: i64 = 65_535;

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// A minimal HTTP/2 client connection: requests run one at a time, each on a new stream.
pub struct H2<S> {
    /// The stream.
    pub io: S,
    next_stream: u32,
    conn_window: i64,
    initial_stream_window: i64,
    max_frame: usize,
    decoder: hpack::Decoder,
    /// Last stream id of a GOAWAY received, if any.
    pub goaway: Option<u32>,
}

/// The response being assembled for the active stream.
#[derive(Default)]
struct Pending {
    status: Option<u16>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H2<S> {
    /// Sends the preface and our SETTINGS (no push, large windows).
    pub async fn handshake(io: S) -> io::Result<Self> {
        let mut conn = Self {
            io,
            next_stream: 1,
            conn_window: DEFAULT_WINDOW,
            initial_stream_window: DEFAULT_WINDOW,
            max_frame: 16_384,
            decoder: hpack::Decoder::default(),
            goaway: None,
        };
        conn.io.write_all(PREFACE).await?;
        let mut settings = Vec::new();
        for (id, value) in [(0x2u16, 0u32), (0x4, RECV_WINDOW)] {
            settings.extend_from_slice(&id.to_be_bytes());
            settings.extend_from_slice(&value.to_be_bytes());
        }
        conn.write_frame(SETTINGS, 0, 0, &settings).await?;
        let increment = RECV_WINDOW - 65_535;
        conn.write_frame(WINDOW_UPDATE, 0, 0, &increment.to_be_bytes())
            .await?;
        Ok(conn)
    }

    async fn write_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len.to_be_bytes()[1..]);
        frame.push(kind);
        frame.push(flags);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.io.write_all(&frame).await?;
        self.io.flush().await
    }

    async fn read_frame(&mut self) -> io::Result<Frame> {
        let mut head = [0u8; 9];
        self.io.read_exact(&mut head).await?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.io.read_exact(&mut payload).await?;
        Ok(Frame {
            kind: head[3],
            flags: head[4],
            stream,
            payload,
        })
    }

    /// Sends a request on a new stream and reads its response, honouring flow control. If the
    /// response ends before the body is sent, the rest of the body is dropped and the stream
    /// cancelled.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let id = self.next_stream;
        self.next_stream += 2;
        let length = body.len().to_string();
        let mut fields = vec![
            (":method", method),
            (":scheme", "https"),
            (":authority", "localhost"),
            (":path", path),
        ];
        fields.extend_from_slice(headers);
        if !body.is_empty() {
            fields.push(("content-length", &length));
        }
        let block = hpack::encode(&fields);
        let flags = END_HEADERS | if body.is_empty() { END_STREAM } else { 0 };
        self.write_frame(HEADERS, flags, id, &block).await?;

        let mut stream_window = self.initial_stream_window;
        let mut sent = 0;
        let mut pending = Pending::default();
        while !pending.done {
            if sent < body.len() {
                let room = self.conn_window.min(stream_window).max(0);
                let n = (body.len() - sent)
                    .min(self.max_frame)
                    .min(usize::try_from(room).unwrap_or(0));
                if n > 0 {
                    let last = sent + n == body.len();
                    let flags = if last { END_STREAM } else { 0 };
                    self.write_frame(DATA, flags, id, &body[sent..sent + n])
                        .await?;
                    let n64 = i64::try_from(n).unwrap_or(i64::MAX);
                    self.conn_window -= n64;
                    stream_window -= n64;
                    sent += n;
                    continue;
                }
            }
            let frame = self.read_frame().await?;
            self.handle(frame, id, &mut pending, &mut stream_window)
                .await?;
        }
        if sent < body.len() {
            // CANCEL: the server answered without reading everything.
            self.write_frame(RST_STREAM, 0, id, &8u32.to_be_bytes())
                .await?;
        }
        Ok(Response {
            status: pending
                .status
                .ok_or_else(|| io::Error::other("response without :status"))?,
            headers: pending.headers,
            body: pending.body,
        })
    }

    async fn handle(
        &mut self,
        frame: Frame,
        id: u32,
        pending: &mut Pending,
        stream_window: &mut i64,
    ) -> io::Result<()> {
        let Frame {
            kind,
            flags,
            stream,
            mut payload,
        } = frame;
        match kind {
            DATA => {
                let consumed = u32::try_from(payload.len()).map_err(io::Error::other)?;
                if consumed > 0 {
                    self.write_frame(WINDOW_UPDATE, 0, 0, &consumed.to_be_bytes())
                        .await?;
                }
                strip_padding(&mut payload, flags)?;
                if stream == id {
                    pending.body.extend_from_slice(&payload);
                    pending.done |= flags & END_STREAM != 0;
                }
            }
            HEADERS => {
                strip_padding(&mut payload, flags)?;
                if flags & PRIORITY != 0 {
                    payload.drain(..5.min(payload.len()));
                }
                let mut end_headers = flags & END_HEADERS != 0;
                while !end_headers {
                    let next = self.read_frame().await?;
                    if next.kind != CONTINUATION || next.stream != stream {
                        return Err(io::Error::other("expected CONTINUATION"));
                    }
                    payload.extend_from_slice(&next.payload);
                    end_headers = next.flags & END_HEADERS != 0;
                }
                // Every block is decoded, to keep the dynamic table in step.
                let fields = self.decoder.decode(&payload)?;
                if stream == id {
                    let status = fields
                        .iter()
                        .find(|(n, _)| n == ":status")
                        .and_then(|(_, v)| v.parse::<u16>().ok());
                    match (pending.status, status) {
                        (_, Some(s)) if (100..200).contains(&s) => {}
                        (None, Some(s)) => pending.status = Some(s),
                        (None, None) => return Err(io::Error::other("HEADERS without :status")),
                        // Trailers.
                        (Some(_), _) => {}
                    }
                    pending
                        .headers
                        .extend(fields.into_iter().filter(|(n, _)| !n.starts_with(':')));
                    pending.done |= flags & END_STREAM != 0;
                }
            }
            RST_STREAM if stream == id && !pending.done => {
                let code = payload
                    .get(..4)
                    .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("stream {id} reset by the server, code {code}"),
                ));
            }
            SETTINGS if flags & ACK == 0 => {
                for entry in payload.chunks_exact(6) {
                    let key = u16::from_be_bytes([entry[0], entry[1]]);
                    let value = u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]);
                    match key {
                        0x4 => {
                            let delta = i64::from(value) - self.initial_stream_window;
                            *stream_window += delta;
                            self.initial_stream_window = i64::from(value);
                        }
                        0x5 => self.max_frame = usize::try_from(value).unwrap_or(16_384),
                        _ => {}
                    }
                }
                self.write_frame(SETTINGS, ACK, 0, &[]).await?;
            }
            PING if flags & ACK == 0 => {
                self.write_frame(PING, ACK, 0, &payload).await?;
            }
            GOAWAY => {
                let last = payload.get(..4).map_or(0, |b| {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
                });
                self.goaway = Some(last);
                if last < id && !pending.done {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("GOAWAY before stream {id} (last {last})"),
                    ));
                }
            }
            WINDOW_UPDATE => {
                let inc = payload.get(..4).map_or(0, |b| {
                    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff
                });
                if stream == 0 {
                    self.conn_window += i64::from(inc);
                } else if stream == id {
                    *stream_window += i64::from(inc);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn strip_padding(payload: &mut Vec<u8>, flags: u8) -> io::Result<()> {
    if flags & PADDED != 0 {
        let pad = usize::from(
            *payload
                .first()
                .ok_or_else(|| io::Error::other("empty padded frame"))?,
        );
        if pad + 1 > payload.len() {
            return Err(io::Error::other("padding longer than the frame"));
        }
        payload.truncate(payload.len() - pad);
        payload.remove(0);
    }
    Ok(())
}
