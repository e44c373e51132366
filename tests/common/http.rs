//! HTTP clients for the tests: a hand-written HTTP/1.1 client (keep-alive, Content-Length or
//! chunked responses, raw writes for partial bodies) and hyper's HTTP/2 client.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::HeaderMap;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

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
    H2(Box<H2>),
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

    /// The DER of the server's leaf certificate.
    pub fn peer_leaf(&self) -> Vec<u8> {
        match self {
            Self::H1(c) => c.io.get_ref().1.peer_certificates().unwrap()[0].to_vec(),
            Self::H2(c) => c.peer_certificates[0].to_vec(),
        }
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

/// An HTTP/2 connection: hyper's client over the TLS stream, its connection driven by a task
/// that is aborted (closing the socket) when this is dropped.
pub struct H2 {
    sender: SendRequest<Full<Bytes>>,
    conn: JoinHandle<()>,
    peer_certificates: Vec<CertificateDer<'static>>,
}

impl H2 {
    /// Runs hyper's HTTP/2 handshake over `io` and spawns the connection task.
    pub async fn handshake(io: TlsStream<TcpStream>) -> io::Result<Self> {
        let peer_certificates = io
            .get_ref()
            .1
            .peer_certificates()
            .map(<[CertificateDer<'static>]>::to_vec)
            .unwrap_or_default();
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .map_err(io::Error::other)?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            conn,
            peer_certificates,
        })
    }

    /// Whether the connection is closed (after a GOAWAY, an error or the server closing it).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends a request on a new stream and reads its whole response (trailers are appended
    /// to the headers).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"));
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(io::Error::other)?;
        self.sender.ready().await.map_err(io::Error::other)?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(io::Error::other)?;
        let status = response.status().as_u16();
        let mut fields = header_pairs(response.headers());
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(io::Error::other)?;
        if let Some(trailers) = collected.trailers() {
            fields.extend(header_pairs(trailers));
        }
        Ok(Response {
            status,
            headers: fields,
            body: collected.to_bytes().to_vec(),
        })
    }
}

impl Drop for H2 {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

fn header_pairs(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
