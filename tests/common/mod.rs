//! Shared harness of the integration tests: the real webhook and admin servers on loopback
//! (webhook over TLS, certificate in a kubelet-style Secret volume), a hand-written HTTP/1.1
//! client and hyper's HTTP/2 client, fixtures, and helpers that apply a response's patch to a
//! typed Pod.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod http;

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Pod;
use pullthrough::config::{Config, Overrides};
use pullthrough::metrics::Metrics;
use pullthrough::reload::ConfigReloader;
use pullthrough::server::{self, AppState, Limits, ServeOptions};
use pullthrough::tls::{self, CertPaths, CertReloader, CertResolver};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

pub use http::{Client, Proto, Response};

/// Registry host of the default test configuration.
pub const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
/// The default test configuration.
pub const CONFIG: &str = "accountId: \"123456789012\"\nregion: eu-west-1\n";
/// Body limit of the test server: small, so an oversized body is cheap to send.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Installs the process-wide rustls provider (aws-lc-rs); safe to call many times.
pub fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// `<host>/<path>` for the default test host.
pub fn ecr(path: &str) -> String {
    format!("{HOST}/{path}")
}

// === Fixtures ===

/// The directory of the captured AdmissionReview requests.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission")
}

/// A fixture's bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixture, parsed.
pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Every fixture file name, sorted.
pub fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

// === Reviews ===

/// Checks the envelope of an AdmissionReview response to `request` and returns `response`.
pub fn check_envelope(request: &Value, resp: &Response) -> Value {
    assert_eq!(resp.status, 200, "body: {}", resp.text());
    assert!(
        resp.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "content-type: {:?}",
        resp.header("content-type")
    );
    let review = resp.json();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    assert_eq!(
        review["response"]["uid"], request["request"]["uid"],
        "response uid must echo the request uid"
    );
    review["response"].clone()
}

/// The JSON Patch of a response, decoded; `None` without one. Checks that `patchType` is
/// present exactly when a patch is.
pub fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let patch = response.get("patch").and_then(Value::as_str);
    match patch {
        None => {
            assert!(
                response.get("patchType").is_none(),
                "patchType without patch: {response}"
            );
            None
        }
        Some(b64) => {
            assert_eq!(response["patchType"], "JSONPatch", "{response}");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("patch is base64");
            Some(serde_json::from_slice(&bytes).expect("patch is a JSON Patch"))
        }
    }
}

/// `request.object` with the response's patch (if any) applied.
pub fn patched_object(request: &Value, response: &Value) -> Value {
    let mut object = request["request"]["object"].clone();
    if let Some(patch) = patch_of(response) {
        json_patch::patch(&mut object, &patch)
            .unwrap_or_else(|e| panic!("patch does not apply: {e}\npatch: {patch:?}"));
    }
    object
}

/// The patched object as a typed Pod.
pub fn patched_pod(request: &Value, response: &Value) -> Pod {
    serde_json::from_value(patched_object(request, response)).expect("patched object is a Pod")
}

/// Container images of a Pod, per list, as `(name, image)`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Images {
    /// `initContainers`.
    pub init: Vec<(String, String)>,
    /// `containers`.
    pub main: Vec<(String, String)>,
    /// `ephemeralContainers`.
    pub ephemeral: Vec<(String, String)>,
}

/// Reads the images out of a typed Pod.
pub fn images(pod: &Pod) -> Images {
    let spec = pod.spec.as_ref().expect("pod has a spec");
    let pair =
        |name: &str, image: Option<&String>| (name.to_owned(), image.cloned().unwrap_or_default());
    Images {
        init: spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| pair(&c.name, c.image.as_ref()))
            .collect(),
        main: spec
            .containers
            .iter()
            .map(|c| pair(&c.name, c.image.as_ref()))
            .collect(),
        ephemeral: spec
            .ephemeral_containers
            .iter()
            .flatten()
            .map(|c| pair(&c.name, c.image.as_ref()))
            .collect(),
    }
}

/// A `(name, image)` list from string pairs.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, i)| ((*n).to_owned(), (*i).to_owned()))
        .collect()
}

/// The `warnings` of a response (empty when absent).
pub fn warnings(response: &Value) -> Vec<String> {
    response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| w.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// A new CREATE review of `object`, copying the rest of `request`.
pub fn create_review(request: &Value, object: Value, uid: &str) -> Value {
    let mut review = request.clone();
    review["request"]["uid"] = json!(uid);
    review["request"]["operation"] = json!("CREATE");
    review["request"]["object"] = object;
    if let Some(r) = review["request"].as_object_mut() {
        r.remove("oldObject");
        r.remove("subResource");
    }
    review
}

// === Certificates ===

/// A throwaway CA that signs leaf certificates.
pub struct TestCa {
    /// The CA certificate.
    pub cert: Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            cert,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate as DER.
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf for `sans`: (chain PEM, key PEM, leaf DER).
    pub fn leaf(&self, sans: &[&str]) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
            cert.der().to_vec(),
        )
    }
}

/// DNS names of a DER certificate's subject alternative names.
pub fn dns_sans(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some((*d).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A Secret volume as kubelet lays it out: `..<timestamp>/` dirs, `..data` pointing at the
/// current one, and `tls.crt`/`tls.key` linked through `..data`.
pub struct KubeletVolume {
    /// The volume's root.
    pub root: PathBuf,
    generation: u32,
}

impl KubeletVolume {
    /// Creates the volume at `root` holding the pair.
    pub fn create(root: &Path, cert: &[u8], key: &[u8]) -> Self {
        fs::create_dir_all(root).unwrap();
        let mut volume = Self {
            root: root.to_path_buf(),
            generation: 0,
        };
        volume.update(cert, key);
        symlink("..data/tls.crt", root.join("tls.crt")).unwrap();
        symlink("..data/tls.key", root.join("tls.key")).unwrap();
        volume
    }

    /// The visible paths.
    pub fn paths(&self) -> CertPaths {
        CertPaths {
            cert: self.root.join("tls.crt"),
            key: self.root.join("tls.key"),
        }
    }

    /// Writes a new timestamped dir and re-points `..data` at it atomically (a symlink under a
    /// temporary name renamed over `..data`), as kubelet's atomic writer does.
    pub fn update(&mut self, cert: &[u8], key: &[u8]) {
        self.generation += 1;
        let ts = format!(
            "..2026_01_01_00_00_{:02}.{}",
            self.generation,
            1000 + self.generation
        );
        let dir = self.root.join(&ts);
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("tls.crt"), cert).unwrap();
        fs::write(dir.join("tls.key"), key).unwrap();
        let tmp = self.root.join("..data_tmp");
        symlink(&ts, &tmp).unwrap();
        fs::rename(&tmp, self.root.join("..data")).unwrap();
    }
}

// === The server ===

/// The webhook (TLS) and admin (plain) servers of one test, on loopback ports.
pub struct TestServer {
    /// Holds the config file, the self-signed CA and the Secret volume.
    pub dir: TempDir,
    /// Address of the TLS webhook listener.
    pub webhook_addr: SocketAddr,
    /// Address of the plain-HTTP admin listener.
    pub admin_addr: SocketAddr,
    /// The shared state the handlers read.
    pub state: AppState,
    /// The configuration file.
    pub config_path: PathBuf,
    /// Reloads `config_path` when polled.
    pub config_reloader: ConfigReloader,
    /// Reloads the certificate from `volume` when polled.
    pub cert_reloader: CertReloader,
    /// The Secret volume the certificate is read from.
    pub volume: KubeletVolume,
    ca_pem: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// A server on [`CONFIG`] with a [`BODY_LIMIT`] body limit, ready.
    pub async fn start() -> Self {
        Self::start_with(
            CONFIG,
            Limits {
                body_limit: BODY_LIMIT,
                request_timeout: Duration::from_secs(5),
            },
        )
        .await
    }

    /// A server on the given configuration and limits, ready.
    pub async fn start_with(config_yaml: &str, limits: Limits) -> Self {
        let options = ServeOptions {
            drain_timeout: Duration::from_secs(2),
            ..ServeOptions::default()
        };
        Self::start_with_options(config_yaml, limits, options).await
    }

    /// A server on the given configuration, limits and connection options, ready.
    pub async fn start_with_options(
        config_yaml: &str,
        limits: Limits,
        options: ServeOptions,
    ) -> Self {
        install_provider();
        let dir = tempfile::tempdir().unwrap();

        let config_path = dir.path().join("config.yaml");
        fs::write(&config_path, config_yaml).unwrap();
        let config = Config::load(config_yaml, &Overrides::default()).unwrap();
        let metrics = Metrics::new().unwrap();
        let state = AppState::new(config, metrics.clone());
        let config_reloader = ConfigReloader::new(
            config_path.clone(),
            Overrides::default(),
            state.config.clone(),
            metrics.config.clone(),
            config_yaml.as_bytes().to_vec(),
        );

        let self_signed = tls::write_self_signed(&dir.path().join("self-signed"), &[]).unwrap();
        let ca_pem = fs::read_to_string(&self_signed.ca_path).unwrap();
        let volume = KubeletVolume::create(
            &dir.path().join("tls"),
            &fs::read(&self_signed.cert.cert).unwrap(),
            &fs::read(&self_signed.cert.key).unwrap(),
        );
        let (loaded, content) = tls::read_cert_files(&volume.paths()).unwrap();
        let resolver = std::sync::Arc::new(CertResolver::new(loaded.key));
        let cert_reloader = CertReloader::new(
            volume.paths(),
            resolver.clone(),
            metrics.tls.clone(),
            content,
        );
        let acceptor = TlsAcceptor::from(tls::server_config(resolver).unwrap());

        let webhook = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhook_addr = webhook.local_addr().unwrap();
        let admin_addr = admin.local_addr().unwrap();
        let (shutdown, _) = watch::channel(false);
        let stopped = |tx: &watch::Sender<bool>| {
            let mut rx = tx.subscribe();
            async move {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        };
        let tasks = vec![
            tokio::spawn(server::serve(
                webhook,
                Some(acceptor),
                server::webhook_router(state.clone(), limits),
                options,
                stopped(&shutdown),
            )),
            tokio::spawn(server::serve(
                admin,
                None,
                server::admin_router(state.clone()),
                options,
                stopped(&shutdown),
            )),
        ];
        state.ready.store(true, Ordering::Release);

        Self {
            dir,
            webhook_addr,
            admin_addr,
            state,
            config_path,
            config_reloader,
            cert_reloader,
            volume,
            ca_pem,
            shutdown,
            tasks,
        }
    }

    /// The self-signed CA the first certificate is signed by, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The self-signed CA as DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap()
    }

    /// A TLS client configuration trusting only the server's CA, offering `proto`.
    pub fn connector(&self, proto: Proto) -> TlsConnector {
        http::connector(self.ca_der(), &[proto.alpn()])
    }

    /// A new kept-alive connection to the webhook.
    pub async fn client(&self, proto: Proto) -> Client {
        Client::connect(&self.connector(proto), self.webhook_addr, proto)
            .await
            .unwrap_or_else(|e| panic!("cannot connect with {proto:?}: {e}"))
    }

    /// GET on the admin port.
    pub async fn admin_get(&self, path: &str) -> Response {
        http::plain_get(self.admin_addr, path)
            .await
            .unwrap_or_else(|e| panic!("GET {path} on the admin port failed: {e}"))
    }

    /// Replaces the configuration file's content (not yet polled).
    pub fn write_config(&self, yaml: &str) {
        let tmp = self.dir.path().join("config.yaml.tmp");
        fs::write(&tmp, yaml).unwrap();
        fs::rename(&tmp, &self.config_path).unwrap();
    }

    /// Stops both servers and waits for them (bounded).
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server did not stop in time")
                .unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
