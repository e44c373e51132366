//! The floor of the load benchmark: the same server as `pullthrough webhook` (tokio multi-thread
//! runtime, rustls with the aws-lc-rs provider and the same `ServerConfig` and ALPN, the same
//! hyper-util connection loop with keep-alive, HTTP/1.1 and HTTP/2, the same body limit) that
//! reads the AdmissionReview body and answers `allowed: true` with the request's uid, without
//! looking at the Pod. What pullthrough costs is what it takes above this.
//!
//! ```sh
//! cargo run --release --example floor -- --listen 127.0.0.1:9443 \
//!     --tls-cert-file DIR/tls.crt --tls-key-file DIR/tls.key
//! ```
//!
//! It stops on SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use pullthrough::admission::ADMISSION_API_VERSION;
use pullthrough::server::{self, Limits, MUTATE_PATH, ServeOptions};
use pullthrough::telemetry::{self, LogFormat};
use pullthrough::tls::{self, CertPaths, CertResolver};
use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;

struct Args {
    listen: SocketAddr,
    cert: CertPaths,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 9443).into();
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = value.parse().context("--listen")?,
            "--tls-cert-file" => cert = Some(PathBuf::from(value)),
            "--tls-key-file" => key = Some(PathBuf::from(value)),
            _ => bail!("unknown flag {flag}"),
        }
    }
    let (Some(cert), Some(key)) = (cert, key) else {
        bail!("--tls-cert-file and --tls-key-file are required");
    };
    Ok(Args {
        listen,
        cert: CertPaths { cert, key },
    })
}

#[derive(Deserialize)]
struct ReviewUid<'a> {
    #[serde(borrow)]
    request: RequestUid<'a>,
}

#[derive(Deserialize)]
struct RequestUid<'a> {
    #[serde(borrow)]
    uid: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: Allowed<'a>,
}

#[derive(Serialize)]
struct Allowed<'a> {
    uid: &'a str,
    allowed: bool,
}

async fn allow(body: Bytes) -> Response {
    // The whole body is parsed, as it must be to find the uid; nothing else is looked at.
    let review: ReviewUid<'_> = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let answer = Answer {
        api_version: ADMISSION_API_VERSION,
        kind: "AdmissionReview",
        response: Allowed {
            uid: &review.request.uid,
            allowed: true,
        },
    };
    let bytes = serde_json::to_vec(&answer).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (loaded, _) = tls::read_cert_files(&args.cert).context("cannot load the certificate")?;
    let tls_config = tls::server_config(Arc::new(CertResolver::new(loaded.key)))?;
    let router = Router::new()
        .route(MUTATE_PATH, post(allow))
        .layer(DefaultBodyLimit::max(Limits::default().body_limit));
    let listener = server::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "floor serving");
    server::serve(
        listener,
        Some(TlsAcceptor::from(tls_config)),
        router,
        ServeOptions::default(),
        server::termination_signal(),
    )
    .await;
    Ok(())
}

fn main() -> ExitCode {
    if rustls::crypto::aws_lc_rs::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("floor: a TLS crypto provider was already installed");
    }
    telemetry::init(LogFormat::Plain, "info");
    let result = parse_args().and_then(|args| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?
            .block_on(run(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e:#}");
            ExitCode::from(2)
        }
    }
}
