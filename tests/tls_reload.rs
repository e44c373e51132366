//! End-to-end TLS: a real listener serving through the reloadable resolver, reached by a client
//! that verifies the chain against a test CA.
#![cfg(unix)]
// Test helpers outside `#[test]` functions are not covered by `allow-unwrap-in-tests`.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;

use pullthrough::metrics::Metrics;
use pullthrough::reload::Outcome;
use pullthrough::tls::{
    CertPaths, CertReloader, CertResolver, read_cert_files, server_config, write_self_signed,
};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

struct TestCa {
    cert: Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "e2e CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, san: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![san.to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
        )
    }
}

/// Kubelet's Secret volume layout: `..<timestamp>/` dirs, `..data` pointing at the current one,
/// visible files linked through `..data`.
fn kubelet_write(root: &Path, generation: u32, cert: &str, key: &str) {
    let ts = format!("..2026_01_01_00_00_0{generation}.12345");
    fs::create_dir(root.join(&ts)).unwrap();
    fs::write(root.join(&ts).join("tls.crt"), cert).unwrap();
    fs::write(root.join(&ts).join("tls.key"), key).unwrap();
    symlink(&ts, root.join("..data_tmp")).unwrap();
    fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    if generation == 1 {
        symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        symlink("..data/tls.key", root.join("tls.key")).unwrap();
    }
}

/// Accepts TLS connections and echoes what each one sends, until the listener is dropped.
async fn serve(resolver: Arc<CertResolver>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(resolver).unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn connector(ca_der: CertificateDer<'static>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection does a full handshake, so it sees the certificate served now.
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

async fn connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
    name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_owned()).unwrap();
    connector.connect(name, tcp).await
}

fn peer_dns_sans(stream: &TlsStream<TcpStream>) -> Vec<String> {
    let leaf = &stream.get_ref().1.peer_certificates().unwrap()[0];
    let (_, cert) = X509Certificate::from_der(leaf).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            _ => None,
        })
        .collect()
}

async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn a_client_sees_the_new_certificate_after_a_kubelet_swap_and_old_connections_survive() {
    install_provider();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (chain1, key1) = ca.leaf("first.test");
    kubelet_write(dir.path(), 1, &chain1, &key1);
    let paths = CertPaths {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };

    let (loaded, content) = read_cert_files(&paths).unwrap();
    let resolver = Arc::new(CertResolver::new(loaded.key));
    let metrics = Metrics::new().unwrap().tls;
    let mut reloader = CertReloader::new(paths, resolver.clone(), metrics.clone(), content);
    let addr = serve(resolver.clone()).await;
    let client = connector(ca.cert.der().clone(), &[b"h2", b"http/1.1"]);

    let mut first = connect(&client, addr, "first.test").await.unwrap();
    assert_eq!(peer_dns_sans(&first), vec!["first.test".to_owned()]);
    assert_eq!(first.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    assert_eq!(echo(&mut first, b"before").await, b"before");

    let (chain2, key2) = ca.leaf("second.test");
    kubelet_write(dir.path(), 2, &chain2, &key2);
    assert_eq!(reloader.poll_once(), Outcome::Reloaded);

    let mut second = connect(&client, addr, "second.test").await.unwrap();
    assert_eq!(peer_dns_sans(&second), vec!["second.test".to_owned()]);
    assert_eq!(echo(&mut second, b"new").await, b"new");
    // The connection made with the previous certificate is still served.
    assert_eq!(echo(&mut first, b"after").await, b"after");
    // The previous name is no longer served.
    assert!(connect(&client, addr, "first.test").await.is_err());
    assert_eq!(metrics.reloads.with_label_values(&["success"]).get(), 1);
}

#[tokio::test]
async fn the_server_negotiates_http1_when_the_client_offers_only_http1() {
    install_provider();
    let ca = TestCa::new();
    let (chain, key) = ca.leaf("only.test");
    let loaded = pullthrough::tls::load_certified_key(chain.as_bytes(), key.as_bytes()).unwrap();
    let addr = serve(Arc::new(CertResolver::new(loaded.key))).await;

    let h1 = connector(ca.cert.der().clone(), &[b"http/1.1"]);
    let stream = connect(&h1, addr, "only.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    let h2 = connector(ca.cert.der().clone(), &[b"h2"]);
    let stream = connect(&h2, addr, "only.test").await.unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
}

#[tokio::test]
async fn a_client_trusting_the_self_signed_ca_completes_a_handshake_to_localhost() {
    install_provider();
    let dir = tempfile::tempdir().unwrap();
    let out = write_self_signed(dir.path(), &["pullthrough.default.svc".to_owned()]).unwrap();
    let (loaded, _) = read_cert_files(&out.cert).unwrap();
    let addr = serve(Arc::new(CertResolver::new(loaded.key))).await;

    let ca_der = CertificateDer::from_pem_file(&out.ca_path).unwrap();
    let client = connector(ca_der, &[b"h2"]);
    for name in ["localhost", "pullthrough.default.svc", "127.0.0.1", "::1"] {
        let mut stream = connect(&client, addr, name).await.unwrap();
        assert_eq!(echo(&mut stream, name.as_bytes()).await, name.as_bytes());
    }
    assert!(connect(&client, addr, "elsewhere.test").await.is_err());
}
