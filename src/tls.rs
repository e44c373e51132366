//! TLS serving: certificate loading, a hot-swappable certificate resolver, a poll-based reloader
//! for Kubernetes Secret volumes, and a self-signed fallback for running without certificates.
//!
//! Only the aws-lc-rs crypto provider is used. The reloader polls the certificate and key paths
//! instead of watching them, because kubelet updates a Secret volume by atomically re-pointing a
//! `..data` symlink, which inotify watches on the visible file names do not report reliably.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

use crate::metrics::{ReloadResult, TlsMetrics};
use crate::reload::{Poller, ReadFailed, Watched};

/// ALPN protocols offered by the server, most preferred first.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Validity of the self-signed CA.
const SELF_SIGNED_CA_VALIDITY_SECS: i64 = 10 * 365 * 86_400;
/// Validity of the self-signed serving certificate.
const SELF_SIGNED_LEAF_VALIDITY_SECS: i64 = 365 * 86_400;
/// How far back self-signed certificates are valid from, to tolerate clock skew.
const SELF_SIGNED_BACKDATE_SECS: i64 = 3_600;

/// Errors of certificate loading, TLS configuration and self-signed generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file could not be read.
    #[error("failed to read TLS certificate {path}")]
    ReadCert {
        /// The certificate path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The private key file could not be read.
    #[error("failed to read TLS private key {path}")]
    ReadKey {
        /// The private key path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The certificate PEM could not be decoded.
    #[error("failed to decode PEM certificate chain")]
    DecodeCertPem {
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// The certificate PEM holds no certificate.
    #[error("no certificate found in PEM certificate chain")]
    NoCertificate,
    /// The leaf certificate is not a valid X.509 certificate.
    #[error("failed to parse leaf certificate")]
    ParseCert {
        /// The X.509 parsing error.
        #[source]
        source: X509Error,
    },
    /// The private key PEM could not be decoded.
    #[error("failed to decode PEM private key")]
    DecodeKeyPem {
        /// The PEM error.
        #[source]
        source: pem::Error,
    },
    /// The private key PEM holds no private key.
    #[error("no private key found in PEM private key")]
    NoPrivateKey,
    /// The private key is invalid or of an unsupported type.
    #[error("failed to load private key")]
    LoadKey {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The private key does not belong to the leaf certificate.
    #[error("private key does not match the leaf certificate")]
    MatchKey {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The rustls server configuration could not be built.
    #[error("failed to build TLS server configuration")]
    BuildServerConfig {
        /// The rustls error.
        #[source]
        source: rustls::Error,
    },
    /// A validity bound of a self-signed certificate is out of range.
    #[error("failed to compute certificate validity period")]
    ComputeValidity {
        /// The X.509 time error.
        #[source]
        source: X509Error,
    },
    /// A self-signed certificate or key could not be generated.
    #[error("failed to generate self-signed certificate")]
    GenerateCert {
        /// The rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// The directory for self-signed files could not be created.
    #[error("failed to create directory {path}")]
    CreateDir {
        /// The directory path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A self-signed file could not be written.
    #[error("failed to write {path}")]
    WriteFile {
        /// The file path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The permissions of the self-signed private key file could not be restricted.
    #[error("failed to set permissions of {path}")]
    SetPermissions {
        /// The file path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl TlsError {
    /// A short `snake_case` label of the variant, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ReadCert { .. } => "read_cert",
            Self::ReadKey { .. } => "read_key",
            Self::DecodeCertPem { .. } => "decode_cert_pem",
            Self::NoCertificate => "no_certificate",
            Self::ParseCert { .. } => "parse_cert",
            Self::DecodeKeyPem { .. } => "decode_key_pem",
            Self::NoPrivateKey => "no_private_key",
            Self::LoadKey { .. } => "load_key",
            Self::MatchKey { .. } => "match_key",
            Self::BuildServerConfig { .. } => "build_server_config",
            Self::ComputeValidity { .. } => "compute_validity",
            Self::GenerateCert { .. } => "generate_cert",
            Self::CreateDir { .. } => "create_dir",
            Self::WriteFile { .. } => "write_file",
            Self::SetPermissions { .. } => "set_permissions",
        }
    }
}

/// Displays an error followed by its chain of sources, separated by `: `.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

/// Paths of a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate.
    pub key: PathBuf,
}

/// A certificate chain and key ready to serve, with what is worth logging about the leaf.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    /// The chain and signing key.
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf certificate, as Unix time.
    pub not_after: i64,
    /// Subject of the leaf certificate.
    pub subject: String,
    /// Subject alternative names of the leaf certificate (DNS names and IP addresses as text).
    pub sans: Vec<String>,
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1)
/// into a [`CertifiedKey`], checking that the key belongs to the leaf certificate.
///
/// The leaf's `notAfter`, subject and subject alternative names are returned with it. Expiry is
/// not checked: an expired certificate still loads, so that the caller decides what to do.
pub fn load_certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<LoadedCert, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::DecodeCertPem { source })?;
    let leaf = chain.first().ok_or(TlsError::NoCertificate)?;
    let info = LeafInfo::parse(leaf)?;

    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoPrivateKey,
        source => TlsError::DecodeKeyPem { source },
    })?;
    let signing_key = rustls::crypto::aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|source| TlsError::LoadKey { source })?;

    let certified = CertifiedKey::new(chain, signing_key);
    // Stricter than `CertifiedKey::from_der`: a key whose public half cannot be compared is
    // refused too (every aws-lc-rs key type can be compared).
    certified
        .keys_match()
        .map_err(|source| TlsError::MatchKey { source })?;

    Ok(LoadedCert {
        key: Arc::new(certified),
        not_after: info.not_after,
        subject: info.subject,
        sans: info.sans,
    })
}

/// What is read out of a leaf certificate.
struct LeafInfo {
    not_after: i64,
    subject: String,
    sans: Vec<String>,
}

impl LeafInfo {
    fn parse(der: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|err| TlsError::ParseCert {
            source: match err {
                x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
                x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
            },
        })?;
        let sans = cert
            .subject_alternative_name()
            .map_err(|source| TlsError::ParseCert { source })?
            .map(|ext| ext.value.general_names.iter().map(san_to_string).collect())
            .unwrap_or_default();
        Ok(Self {
            not_after: cert.validity().not_after.timestamp(),
            subject: cert.subject().to_string(),
            sans,
        })
    }
}

fn san_to_string(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(dns) => (*dns).to_owned(),
        GeneralName::IPAddress(bytes) => {
            if let Ok(octets) = <[u8; 4]>::try_from(*bytes) {
                IpAddr::from(octets).to_string()
            } else if let Ok(octets) = <[u8; 16]>::try_from(*bytes) {
                IpAddr::from(octets).to_string()
            } else {
                name.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// `notAfter` of the leaf of a certified key, if it can be parsed.
fn leaf_not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.end_entity_cert().ok()?;
    LeafInfo::parse(leaf).ok().map(|info| info.not_after)
}

/// A rustls certificate resolver that always hands out the current certified key.
///
/// Swapping the key affects only handshakes that start afterwards; established connections keep
/// the key they were made with and are never dropped.
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    /// A resolver serving `initial` until the first [`swap`](Self::swap).
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: ArcSwap::new(initial),
        }
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The key being served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Builds the server configuration: aws-lc-rs provider, TLS 1.3 and 1.2 only, no client
/// authentication, ALPN `h2` then `http/1.1`, certificate from `resolver`.
pub fn server_config(resolver: Arc<CertResolver>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|source| TlsError::BuildServerConfig { source })?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The raw bytes of a certificate file and a key file.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl CertPair {
    /// Reads both files through their paths (symlinks followed).
    ///
    /// The certificate is read again after the key: if it changed in between, the files were
    /// being replaced and the pair may be torn, which is reported as `Ok(None)`.
    fn read(paths: &CertPaths) -> Result<Option<Self>, TlsError> {
        let read_cert = || {
            fs::read(&paths.cert).map_err(|source| TlsError::ReadCert {
                path: paths.cert.clone(),
                source,
            })
        };
        let cert = read_cert()?;
        let key = fs::read(&paths.key).map_err(|source| TlsError::ReadKey {
            path: paths.key.clone(),
            source,
        })?;
        if read_cert()? != cert {
            return Ok(None);
        }
        Ok(Some(Self { cert, key }))
    }
}

/// Reads and loads the certificate and key files.
///
/// Returns the loaded certificate and the files read, to hand to [`CertReloader::new`] so that
/// it reloads only when the files change.
pub fn read_cert_files(paths: &CertPaths) -> Result<(LoadedCert, CertPair), TlsError> {
    // A torn read (files replaced between the reads) is retried a few times; if the files keep
    // changing, the last pair read is loaded and any inconsistency is reported by the loader.
    let mut pair = None;
    for _ in 0..3 {
        pair = CertPair::read(paths)?;
        if pair.is_some() {
            break;
        }
    }
    let pair = match pair {
        Some(pair) => pair,
        None => CertPair {
            cert: fs::read(&paths.cert).map_err(|source| TlsError::ReadCert {
                path: paths.cert.clone(),
                source,
            })?,
            key: fs::read(&paths.key).map_err(|source| TlsError::ReadKey {
                path: paths.key.clone(),
                source,
            })?,
        },
    };
    let loaded = load_certified_key(&pair.cert, &pair.key)?;
    Ok((loaded, pair))
}

/// The serving certificate and key files, swapped into a [`CertResolver`] when they change.
pub struct CertFiles {
    paths: CertPaths,
    resolver: Arc<CertResolver>,
    metrics: TlsMetrics,
}

impl Watched for CertFiles {
    type Content = CertPair;

    fn read(&self) -> Result<Option<CertPair>, ReadFailed> {
        CertPair::read(&self.paths).map_err(|err| {
            let io_kind = match &err {
                TlsError::ReadCert { source, .. } | TlsError::ReadKey { source, .. } => {
                    source.kind()
                }
                _ => std::io::ErrorKind::Other,
            };
            ReadFailed {
                key: format!("{}/{io_kind:?}", err.kind()),
                message: ErrorChain(&err).to_string(),
            }
        })
    }

    fn load(&mut self, pair: &CertPair) -> Result<(), String> {
        match load_certified_key(&pair.cert, &pair.key) {
            Ok(loaded) => {
                self.resolver.swap(loaded.key);
                self.metrics.reload(ReloadResult::Success);
                self.metrics.cert_not_after_seconds.set(loaded.not_after);
                tracing::info!(
                    subject = %loaded.subject,
                    sans = ?loaded.sans,
                    not_after = loaded.not_after,
                    not_after_utc = %format_unix_time(loaded.not_after),
                    "reloaded TLS certificate"
                );
                Ok(())
            }
            Err(err) => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    kind = err.kind(),
                    cert = %self.paths.cert.display(),
                    key = %self.paths.key.display(),
                    "refused new TLS certificate; still serving the previous one"
                );
                Err(err.to_string())
            }
        }
    }

    fn read_failed(&self, failure: &ReadFailed) {
        self.metrics.reload(ReloadResult::Failure);
        tracing::warn!(
            error = %failure,
            "failed to read TLS certificate files; still serving the previous certificate"
        );
    }

    fn refused(&self, _error: &str) {
        // `load` logged it with the certificate's details.
        self.metrics.reload(ReloadResult::Failure);
    }

    fn back_in_force(&self) {
        tracing::info!("TLS certificate files hold the certificate in force again");
    }

    fn what(&self) -> &'static str {
        "TLS certificate"
    }
}

/// Poll-based reloader of the serving certificate: reads the certificate and key through their
/// paths (following symlinks, so that a kubelet `..data` swap in a Secret volume is seen), and
/// swaps changed content into the resolver; content that fails to load is logged and counted
/// once, and the previous certificate stays in force.
pub type CertReloader = Poller<CertFiles>;

impl Poller<CertFiles> {
    /// A reloader for `paths`, swapping into `resolver`.
    ///
    /// `initial` is the content returned by [`read_cert_files`] for the certificate the resolver
    /// serves now. The `notAfter` gauge is set from the resolver's current certificate.
    pub fn new(
        paths: CertPaths,
        resolver: Arc<CertResolver>,
        metrics: TlsMetrics,
        initial: CertPair,
    ) -> Self {
        if let Some(not_after) = leaf_not_after(&resolver.current()) {
            metrics.cert_not_after_seconds.set(not_after);
        }
        Self::watching(
            CertFiles {
                paths,
                resolver,
                metrics,
            },
            initial,
        )
    }
}

/// Unix time as an RFC 2822 UTC date, or the number itself when out of range.
fn format_unix_time(secs: i64) -> String {
    ASN1Time::from_timestamp(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// Files written by [`write_self_signed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfSigned {
    /// The CA certificate, for the webhook configuration's `caBundle`.
    pub ca_path: PathBuf,
    /// The serving certificate chain (leaf then CA) and its key.
    pub cert: CertPaths,
}

/// Generates a self-signed CA and a serving certificate signed by it (ECDSA P-256), for running
/// without certificate files.
///
/// The serving certificate holds `dns_names` plus `localhost`, `127.0.0.1` and `::1` as subject
/// alternative names (entries that parse as IP addresses become IP SANs). `dir` is created if
/// needed and receives `ca.crt`, `tls.crt` (leaf then CA) and `tls.key` (PKCS#8, mode 0600 on
/// Unix), each replaced atomically.
pub fn write_self_signed(dir: &Path, dns_names: &[String]) -> Result<SelfSigned, TlsError> {
    let now = ASN1Time::now().timestamp();
    let not_before = asn1_time(now - SELF_SIGNED_BACKDATE_SECS)?;
    let gen_err = |source| TlsError::GenerateCert { source };

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pullthrough self-signed CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before.to_datetime();
    ca_params.not_after = asn1_time(now + SELF_SIGNED_CA_VALIDITY_SECS)?.to_datetime();
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut names: Vec<String> = Vec::with_capacity(dns_names.len() + 3);
    for name in dns_names
        .iter()
        .map(String::as_str)
        .chain(["localhost", "127.0.0.1", "::1"])
    {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen_err)?;
    let mut leaf_params = CertificateParams::new(names).map_err(gen_err)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "pullthrough");
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.use_authority_key_identifier_extension = true;
    leaf_params.not_before = not_before.to_datetime();
    leaf_params.not_after = asn1_time(now + SELF_SIGNED_LEAF_VALIDITY_SECS)?.to_datetime();
    let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).map_err(gen_err)?;

    fs::create_dir_all(dir).map_err(|source| TlsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let out = SelfSigned {
        ca_path: dir.join("ca.crt"),
        cert: CertPaths {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        },
    };
    let ca_pem = ca_cert.pem();
    write_file(&out.ca_path, ca_pem.as_bytes(), false)?;
    write_file(&out.cert.key, leaf_key.serialize_pem().as_bytes(), true)?;
    write_file(
        &out.cert.cert,
        format!("{}{ca_pem}", leaf_cert.pem()).as_bytes(),
        false,
    )?;
    Ok(out)
}

fn asn1_time(secs: i64) -> Result<ASN1Time, TlsError> {
    ASN1Time::from_timestamp(secs).map_err(|source| TlsError::ComputeValidity { source })
}

/// Writes `contents` to a temporary file next to `path` and renames it over `path`, so that
/// readers see either the old or the new file. A `private` file is readable by its owner only.
fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), TlsError> {
    let write_err = |source| TlsError::WriteFile {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);

    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(write_err)?;
    #[cfg(unix)]
    if private {
        // The mode above applies only when the file is created; a stale temporary file keeps
        // its own, so set it explicitly before writing the key.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|source| TlsError::SetPermissions {
                path: tmp.clone(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = private;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::reload::Outcome;
    use base64::Engine as _;
    use rcgen::{Certificate, RsaKeySize};
    use std::os::unix::fs::symlink;
    use std::time::Duration;
    use tempfile::TempDir;

    /// A CA that signs test leaf certificates.
    struct TestCa {
        cert: Certificate,
        issuer: Issuer<'static, KeyPair>,
    }

    impl TestCa {
        fn new() -> Self {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::default();
            params
                .distinguished_name
                .push(DnType::CommonName, "test CA");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
            let cert = params.self_signed(&key).unwrap();
            Self {
                cert,
                issuer: Issuer::new(params, key),
            }
        }

        /// A leaf for `san` signed by this CA, as (chain PEM, key PEM).
        fn leaf(&self, san: &str) -> (String, String) {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
            params.distinguished_name.push(DnType::CommonName, san);
            let cert = params.signed_by(&key, &self.issuer).unwrap();
            (
                format!("{}{}", cert.pem(), self.cert.pem()),
                key.serialize_pem(),
            )
        }
    }

    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap());
            out.push('\n');
        }
        out.push_str("-----END ");
        out.push_str(label);
        out.push_str("-----\n");
        out
    }

    /// The algorithm-specific key inside a PKCS#8 `PrivateKeyInfo` (PKCS#1 for RSA, SEC1 for EC).
    fn inner_key(pkcs8_der: &[u8]) -> Vec<u8> {
        let (_, info) = x509_parser::der_parser::parse_der(pkcs8_der).unwrap();
        let fields = info.as_sequence().unwrap();
        fields[2].as_slice().unwrap().to_vec()
    }

    fn self_signed(key: &KeyPair, san: &str) -> String {
        CertificateParams::new(vec![san.to_owned()])
            .unwrap()
            .self_signed(key)
            .unwrap()
            .pem()
    }

    fn leaf_der(key: &CertifiedKey) -> Vec<u8> {
        key.end_entity_cert().unwrap().to_vec()
    }

    #[test]
    fn load_certified_key_accepts_an_rcgen_pair_and_reads_the_leaf() {
        let ca = TestCa::new();
        let (chain, key) = ca.leaf("webhook.example.svc");
        let loaded = load_certified_key(chain.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(loaded.key.cert.len(), 2);
        assert_eq!(loaded.sans, vec!["webhook.example.svc".to_owned()]);
        assert_eq!(loaded.subject, "CN=webhook.example.svc");
    }

    #[test]
    fn load_certified_key_reports_not_after_as_unix_seconds() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.not_after = ASN1Time::from_timestamp(1_900_000_000)
            .unwrap()
            .to_datetime();
        let cert = params.self_signed(&key).unwrap();
        let loaded =
            load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(loaded.not_after, 1_900_000_000);
    }

    #[test]
    fn load_certified_key_accepts_a_pkcs1_rsa_key() {
        let key = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048).unwrap();
        let cert = self_signed(&key, "rsa.test");
        let pkcs1 = pem("RSA PRIVATE KEY", &inner_key(key.serialized_der()));
        let loaded = load_certified_key(cert.as_bytes(), pkcs1.as_bytes()).unwrap();
        assert_eq!(loaded.sans, vec!["rsa.test".to_owned()]);
    }

    #[test]
    fn load_certified_key_accepts_a_sec1_ec_key() {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = self_signed(&key, "ec.test");
        let sec1 = pem("EC PRIVATE KEY", &inner_key(key.serialized_der()));
        let loaded = load_certified_key(cert.as_bytes(), sec1.as_bytes()).unwrap();
        assert_eq!(loaded.sans, vec!["ec.test".to_owned()]);
    }

    #[test]
    fn load_certified_key_reads_ip_sans_as_addresses() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "::1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let loaded =
            load_certified_key(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
        assert_eq!(loaded.sans, vec!["127.0.0.1".to_owned(), "::1".to_owned()]);
    }

    #[test]
    fn load_certified_key_rejects_garbage_pem() {
        let (_, key) = TestCa::new().leaf("a.test");
        let garbage = b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n";
        let err = load_certified_key(garbage, key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::DecodeCertPem { .. }), "{err:?}");
        assert_eq!(err.kind(), "decode_cert_pem");
    }

    #[test]
    fn load_certified_key_rejects_a_pem_block_that_is_not_a_certificate() {
        let (_, key) = TestCa::new().leaf("a.test");
        let not_x509 = pem("CERTIFICATE", b"definitely not DER");
        let err = load_certified_key(not_x509.as_bytes(), key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::ParseCert { .. }), "{err:?}");
    }

    #[test]
    fn load_certified_key_rejects_an_empty_cert_file() {
        let (_, key) = TestCa::new().leaf("a.test");
        let err = load_certified_key(b"", key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate), "{err:?}");
        assert_eq!(err.kind(), "no_certificate");
    }

    #[test]
    fn load_certified_key_rejects_an_empty_key_file() {
        let (chain, _) = TestCa::new().leaf("a.test");
        let err = load_certified_key(chain.as_bytes(), b"").unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey), "{err:?}");
    }

    #[test]
    fn load_certified_key_rejects_a_key_that_does_not_match_the_cert() {
        let ca = TestCa::new();
        let (chain, _) = ca.leaf("a.test");
        let (_, other_key) = ca.leaf("a.test");
        let err = load_certified_key(chain.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(err, TlsError::MatchKey { .. }), "{err:?}");
        assert_eq!(err.kind(), "match_key");
    }

    #[test]
    fn error_messages_are_lowercase_and_chain_their_source() {
        let err = TlsError::ReadCert {
            path: PathBuf::from("/x/tls.crt"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(err.to_string(), "failed to read TLS certificate /x/tls.crt");
        assert_eq!(
            ErrorChain(&err).to_string(),
            "failed to read TLS certificate /x/tls.crt: entity not found"
        );
    }

    #[test]
    fn server_config_offers_h2_then_http1() {
        let ca = TestCa::new();
        let (chain, key) = ca.leaf("a.test");
        let loaded = load_certified_key(chain.as_bytes(), key.as_bytes()).unwrap();
        let config = server_config(Arc::new(CertResolver::new(loaded.key))).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    /// A Secret volume laid out as kubelet does: timestamped dirs, a `..data` symlink to the
    /// current one, and the visible files as symlinks through `..data`.
    struct KubeletVolume {
        dir: TempDir,
        generation: u32,
    }

    impl KubeletVolume {
        fn new(cert: &[u8], key: &[u8]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut volume = Self { dir, generation: 0 };
            volume.update(cert, key);
            symlink("..data/tls.crt", volume.dir.path().join("tls.crt")).unwrap();
            symlink("..data/tls.key", volume.dir.path().join("tls.key")).unwrap();
            volume
        }

        fn paths(&self) -> CertPaths {
            CertPaths {
                cert: self.dir.path().join("tls.crt"),
                key: self.dir.path().join("tls.key"),
            }
        }

        /// Writes a new timestamped dir and atomically re-points `..data` at it.
        fn update(&mut self, cert: &[u8], key: &[u8]) {
            self.generation += 1;
            let ts = format!(
                "..2026_01_01_00_00_{:02}.{}",
                self.generation,
                1000 + self.generation
            );
            let root = self.dir.path();
            fs::create_dir(root.join(&ts)).unwrap();
            fs::write(root.join(&ts).join("tls.crt"), cert).unwrap();
            fs::write(root.join(&ts).join("tls.key"), key).unwrap();
            symlink(&ts, root.join("..data_tmp")).unwrap();
            fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        }
    }

    fn counter(metrics: &TlsMetrics, result: &str) -> u64 {
        metrics.reloads.with_label_values(&[result]).get()
    }

    #[test]
    fn reloader_follows_a_kubelet_data_symlink_swap_and_keeps_the_good_cert_on_bad_content() {
        let ca = TestCa::new();
        let (chain1, key1) = ca.leaf("first.test");
        let mut volume = KubeletVolume::new(chain1.as_bytes(), key1.as_bytes());
        let (loaded, content) = read_cert_files(&volume.paths()).unwrap();
        assert_eq!(loaded.sans, vec!["first.test".to_owned()]);
        let resolver = Arc::new(CertResolver::new(loaded.key));
        let metrics = Metrics::new().unwrap().tls;
        let mut reloader =
            CertReloader::new(volume.paths(), resolver.clone(), metrics.clone(), content);
        assert_eq!(metrics.cert_not_after_seconds.get(), loaded.not_after);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);

        // A new pair with a different SAN.
        let (chain2, key2) = ca.leaf("second.test");
        volume.update(chain2.as_bytes(), key2.as_bytes());
        assert_eq!(reloader.poll_once(), Outcome::Reloaded);
        let expected = load_certified_key(chain2.as_bytes(), key2.as_bytes()).unwrap();
        assert_eq!(leaf_der(&resolver.current()), leaf_der(&expected.key));
        assert_eq!(counter(&metrics, "success"), 1);
        assert_eq!(metrics.cert_not_after_seconds.get(), expected.not_after);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);

        // A malformed certificate: refused once, the previous one stays.
        volume.update(b"-----BEGIN CERTIFICATE-----\n%%%\n", key2.as_bytes());
        assert_eq!(reloader.poll_once(), Outcome::Refused);
        assert_eq!(leaf_der(&resolver.current()), leaf_der(&expected.key));
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        assert_eq!(counter(&metrics, "failure"), 1);
        assert_eq!(counter(&metrics, "success"), 1);

        // A further change is tried again.
        let (chain3, key3) = ca.leaf("third.test");
        volume.update(chain3.as_bytes(), key3.as_bytes());
        assert_eq!(reloader.poll_once(), Outcome::Reloaded);
        let expected = load_certified_key(chain3.as_bytes(), key3.as_bytes()).unwrap();
        assert_eq!(leaf_der(&resolver.current()), leaf_der(&expected.key));
        assert_eq!(counter(&metrics, "success"), 2);
        assert_eq!(counter(&metrics, "failure"), 1);
    }

    #[test]
    fn reloader_counts_a_missing_file_once_and_recovers_without_reloading_the_same_content() {
        let ca = TestCa::new();
        let (chain, key) = ca.leaf("first.test");
        let volume = KubeletVolume::new(chain.as_bytes(), key.as_bytes());
        let (loaded, content) = read_cert_files(&volume.paths()).unwrap();
        let resolver = Arc::new(CertResolver::new(loaded.key));
        let metrics = Metrics::new().unwrap().tls;
        let mut reloader =
            CertReloader::new(volume.paths(), resolver.clone(), metrics.clone(), content);

        let hidden = volume.dir.path().join("tls.key.hidden");
        fs::rename(volume.paths().key, &hidden).unwrap();
        assert_eq!(reloader.poll_once(), Outcome::Refused);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        assert_eq!(counter(&metrics, "failure"), 1);

        fs::rename(&hidden, volume.paths().key).unwrap();
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        assert_eq!(counter(&metrics, "success"), 0);
    }

    #[test]
    fn reloader_with_a_mismatched_pair_keeps_serving_and_counts_once() {
        let ca = TestCa::new();
        let (chain1, key1) = ca.leaf("first.test");
        let mut volume = KubeletVolume::new(chain1.as_bytes(), key1.as_bytes());
        let (loaded, content) = read_cert_files(&volume.paths()).unwrap();
        let before = leaf_der(&loaded.key);
        let resolver = Arc::new(CertResolver::new(loaded.key));
        let metrics = Metrics::new().unwrap().tls;
        let mut reloader =
            CertReloader::new(volume.paths(), resolver.clone(), metrics.clone(), content);

        let (chain2, _) = ca.leaf("second.test");
        volume.update(chain2.as_bytes(), key1.as_bytes());
        assert_eq!(reloader.poll_once(), Outcome::Refused);
        assert_eq!(reloader.poll_once(), Outcome::Unchanged);
        assert_eq!(leaf_der(&resolver.current()), before);
        assert_eq!(counter(&metrics, "failure"), 1);
    }

    #[tokio::test]
    async fn reloader_run_polls_until_shutdown() {
        let ca = TestCa::new();
        let (chain1, key1) = ca.leaf("first.test");
        let mut volume = KubeletVolume::new(chain1.as_bytes(), key1.as_bytes());
        let (loaded, content) = read_cert_files(&volume.paths()).unwrap();
        let resolver = Arc::new(CertResolver::new(loaded.key));
        let metrics = Metrics::new().unwrap().tls;
        let reloader =
            CertReloader::new(volume.paths(), resolver.clone(), metrics.clone(), content);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reloader.run(Duration::from_millis(20), async move {
            let _ = stop_rx.await;
        }));

        let (chain2, key2) = ca.leaf("second.test");
        volume.update(chain2.as_bytes(), key2.as_bytes());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while counter(&metrics, "success") == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no reload seen");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let expected = load_certified_key(chain2.as_bytes(), key2.as_bytes()).unwrap();
        assert_eq!(leaf_der(&resolver.current()), leaf_der(&expected.key));

        stop_tx.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn write_self_signed_writes_a_loadable_chain_signed_by_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join("nested/certs");
        let names = vec!["pullthrough.ns.svc".to_owned(), "localhost".to_owned()];
        let out = write_self_signed(&out_dir, &names).unwrap();
        assert_eq!(out.ca_path, out_dir.join("ca.crt"));

        let (loaded, _) = read_cert_files(&out.cert).unwrap();
        assert_eq!(
            loaded.sans,
            vec![
                "pullthrough.ns.svc".to_owned(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ]
        );
        let ca_der = CertificateDer::from_pem_file(&out.ca_path).unwrap();
        assert_eq!(loaded.key.cert.len(), 2);
        assert_eq!(loaded.key.cert[1], ca_der);
        let now = ASN1Time::now().timestamp();
        assert!(loaded.not_after > now + 300 * 86_400);

        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            fs::metadata(&out.cert.key).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode, 0o600);

        // Writing again replaces the files.
        let again = write_self_signed(&out_dir, &[]).unwrap();
        let (reloaded, _) = read_cert_files(&again.cert).unwrap();
        assert_ne!(leaf_der(&reloaded.key), leaf_der(&loaded.key));
    }
}
