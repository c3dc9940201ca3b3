//! The rustls client configuration for one connect: roots, CRLs, TLS versions,
//! verification mode (the verifiers are in `cert.rs`), client certificate,
//! SNI, ALPN; and TLS failures said in words. Built fresh per connect (no
//! shared session cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, RootCertStore, SignatureScheme};

use super::cert::{DangerAcceptAnyCertificate, PgVerifier, is_ca_used_as_end_entity};
use super::config::{Config, SslCertMode, SslMode, TlsVersion};
use super::hosts::HostEntry;
use crate::error::Error;

/// ALPN protocol name PostgreSQL 17+ servers accept.
pub(crate) const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// How the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Encryption only (sslmode=require without a root certificate).
    DangerNone,
    /// Chain to a trusted root; host name not checked.
    Ca,
    /// Chain and host name.
    Full,
}

/// A prepared TLS setup: checked before any I/O, applied per host.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetup {
    config: Arc<ClientConfig>,
    verify: Verify,
    /// What the server certificate is checked against, for error messages.
    roots: String,
    /// The CRL sources in use, for error messages; empty when none.
    crls: String,
    versions: (Option<TlsVersion>, Option<TlsVersion>),
}

/// One attempt's TLS configuration, recording whether the server asked for a
/// client certificate and whether one was sent.
pub(crate) struct TlsAttempt {
    pub(crate) config: Arc<ClientConfig>,
    recorder: Arc<CertRecorder>,
}

impl TlsAttempt {
    /// (requested, sent), once the handshake is over.
    pub(crate) fn client_cert(&self) -> (bool, bool) {
        (
            self.recorder.requested.load(Ordering::Relaxed),
            self.recorder.sent.load(Ordering::Relaxed),
        )
    }
}

/// The server-certificate verifier for `verify`, with the labels of its
/// roots and CRLs for error messages (empty when unused).
///
/// # Errors
/// Kind `Config` when verify-ca/verify-full has no root certificate, or a
/// root or CRL file cannot be read or parsed.
fn server_verifier(
    config: &Config,
    verify: Verify,
    root_file: Option<PathBuf>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<(Arc<dyn ServerCertVerifier>, String, String), Error> {
    if verify == Verify::DangerNone {
        let verifier = Arc::new(DangerAcceptAnyCertificate(provider));
        return Ok((verifier, String::new(), String::new()));
    }
    let Some(path) = root_file else {
        return Err(Error::config(format!(
            "sslmode={} needs a root certificate: set sslrootcert to the CA file \
             (or put it at ~/.postgresql/root.crt), or use sslmode=require",
            mode_name(config.ssl_mode)
        )));
    };
    let system = path == Path::new(SYSTEM_ROOTS);
    let (roots, anchors, roots_label) = if system {
        let label = "the system's trusted roots (sslrootcert=system)".to_owned();
        (system_roots()?, Vec::new(), label)
    } else {
        let (roots, anchors) = load_roots(&path)?;
        (roots, anchors, format!("sslrootcert {}", path.display()))
    };
    let mut builder = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider);
    // libpq loads CRLs only beside a root certificate file.
    let (crls, label) = if system {
        (Vec::new(), String::new())
    } else {
        load_crls(config)?
    };
    let mut crls_label = String::new();
    if !crls.is_empty() {
        crls_label = label;
        builder = builder.with_crls(crls);
    }
    let webpki = builder
        .build()
        .map_err(|e| Error::config(format!("sslrootcert {}: {e}", path.display())))?;
    let verifier = Arc::new(PgVerifier {
        webpki,
        check_name: verify == Verify::Full,
        anchors,
    });
    Ok((verifier, roots_label, crls_label))
}

impl TlsSetup {
    /// Builds the TLS configuration for `config`.
    ///
    /// # Errors
    /// Kind `Config` when verify-ca/verify-full has no root certificate, a
    /// certificate, key or CRL file cannot be read or parsed, or the client
    /// key is encrypted. No I/O has happened yet.
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root_file = config
            .ssl_root_cert
            .clone()
            .or_else(|| home_file("root.crt").filter(|p| p.exists()));
        let verify = match config.ssl_mode {
            SslMode::VerifyFull => Verify::Full,
            SslMode::VerifyCa => Verify::Ca,
            // libpq: with a root certificate present, require behaves like verify-ca.
            _ if config.ssl_root_cert.is_some() => Verify::Ca,
            _ => Verify::DangerNone,
        };
        let versions = (
            config.ssl_min_protocol_version,
            config.ssl_max_protocol_version,
        );
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&protocol_versions(versions))
            .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
        let (verifier, roots, crls) = server_verifier(config, verify, root_file, provider)?;
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let identity = match config.ssl_cert_mode {
            SslCertMode::Disable => None,
            SslCertMode::Allow | SslCertMode::Require => client_identity(config)?,
        };
        let mut tls = match identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::config(format!("sslcert/sslkey: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        tls.enable_sni = config.ssl_sni;
        Ok(Self {
            config: Arc::new(tls),
            verify,
            roots,
            crls,
            versions,
        })
    }

    /// The configuration for one handshake, with a fresh record of the
    /// client-certificate request.
    pub(crate) fn attempt(&self) -> TlsAttempt {
        let recorder = Arc::new(CertRecorder {
            inner: self.config.client_auth_cert_resolver.clone(),
            requested: AtomicBool::new(false),
            sent: AtomicBool::new(false),
        });
        let mut config = (*self.config).clone();
        config.client_auth_cert_resolver = recorder.clone();
        TlsAttempt {
            config: Arc::new(config),
            recorder,
        }
    }

    /// The name to verify and send as SNI: the host name (SNI only for DNS names,
    /// never for IP literals); an IP literal or the hostaddr otherwise.
    ///
    /// # Errors
    /// Kind `Config` for verify-full without a host name.
    pub(crate) fn server_name(&self, host: &HostEntry) -> Result<ServerName<'static>, Error> {
        if let Some(name) = host.tls_name() {
            return ServerName::try_from(name.to_owned()).map_err(|_| {
                Error::config(format!("host {name:?} is not a valid TLS server name"))
            });
        }
        match (self.verify, host.hostaddr) {
            (Verify::Full, _) => Err(Error::config(
                "sslmode=verify-full: host name must be specified (hostaddr alone cannot be verified)",
            )),
            (_, Some(addr)) => Ok(ServerName::IpAddress(addr.into())),
            (_, None) => {
                Ok(ServerName::try_from("localhost")
                    .map_err(|_| Error::config("bad server name"))?)
            }
        }
    }

    /// Says in words why the server's certificate or the handshake was
    /// refused, and what to do; `None` for failures that are not about them.
    pub(crate) fn explain(&self, e: &rustls::Error, host: &str) -> Option<String> {
        use CertificateError as C;
        let what = match e {
            rustls::Error::InvalidCertificate(c) => match c {
                C::UnknownIssuer => format!(
                    "the server's certificate was not issued by a CA in {}: point sslrootcert at the CA that signed it",
                    self.roots
                ),
                C::Expired | C::ExpiredContext { .. } => {
                    "the server's certificate has expired: the server needs a renewed certificate"
                        .to_owned()
                }
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    "the server's certificate is not valid yet (check the clocks of both machines)"
                        .to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    let names = match c {
                        C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
                            // WebPKI writes each name in Debug form: `DnsName("db")`.
                            let names: Vec<&str> = presented
                                .iter()
                                .map(|n| {
                                    n.strip_prefix("DnsName(\"")
                                        .and_then(|n| n.strip_suffix("\")"))
                                        .unwrap_or(n)
                                })
                                .collect();
                            format!(" (it names {})", names.join(", "))
                        }
                        _ => String::new(),
                    };
                    format!(
                        "the server's certificate is not valid for host name {host:?}{names}: connect with a name the certificate lists, or use sslmode=verify-ca to skip the name check"
                    )
                }
                C::Revoked => format!(
                    "the server's certificate has been revoked (per {})",
                    self.crls
                ),
                C::UnknownRevocationStatus => format!(
                    "the revocation status of the server's certificate is unknown: {} holds no CRL from the CA that issued it (a CRL is needed from every CA in the chain)",
                    self.crls
                ),
                C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => format!(
                    "the certificate revocation list in {} is out of date: fetch a current CRL",
                    self.crls
                ),
                C::BadSignature => "the server's certificate has an invalid signature".to_owned(),
                C::Other(other) if is_ca_used_as_end_entity(other) => format!(
                    "the server presented a CA certificate as its own certificate, and it is not one of the roots in {}: \
                     give the server a certificate signed by that CA, or put this very certificate in sslrootcert",
                    self.roots
                ),
                other => format!("the server's certificate was refused: {other}"),
            },
            rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
                let (min, max) = self.versions;
                format!(
                    "the server does not support any TLS version between {} and {} ({e})",
                    min.map_or("TLSv1.2", |v| v.name()),
                    max.map_or("TLSv1.3", |v| v.name())
                )
            }
            _ => return None,
        };
        Some(what)
    }
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
        _ => "require",
    }
}

fn home_file(name: &str) -> Option<PathBuf> {
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".postgresql").join(name))
}

/// The roots in `path`, as a store and as the certificates themselves (a
/// server may present one of them as its own certificate).
fn load_roots(path: &Path) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), Error> {
    let mut roots = RootCertStore::empty();
    let bad = |e: &dyn std::fmt::Display| {
        Error::config(format!(
            "bad certificate in sslrootcert {}: {e}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(format!("cannot read sslrootcert {}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    for cert in &certs {
        roots.add(cert.clone()).map_err(|e| bad(&e))?;
    }
    if roots.is_empty() {
        return Err(Error::config(format!(
            "sslrootcert {} holds no certificate",
            path.display()
        )));
    }
    Ok((roots, certs))
}

/// The CRLs to check against (`sslcrl`, `sslcrldir`, else
/// `~/.postgresql/root.crl` if it exists), and how to name them in errors.
///
/// libpq ignores a CRL file it cannot read; here a file or directory named
/// explicitly must hold a CRL, so that a typo cannot switch revocation
/// checking off unnoticed.
fn load_crls(
    config: &Config,
) -> Result<(Vec<CertificateRevocationListDer<'static>>, String), Error> {
    let explicit = config.ssl_crl.is_some() || config.ssl_crl_dir.is_some();
    let file = match &config.ssl_crl {
        Some(f) => Some(f.clone()),
        None if !explicit => home_file("root.crl").filter(|p| p.exists()),
        None => None,
    };
    let mut crls = Vec::new();
    let mut labels = Vec::new();
    if let Some(file) = file {
        crls.extend(
            read_crls(&file)
                .map_err(|why| Error::config(format!("sslcrl {}: {why}", file.display())))?,
        );
        labels.push(format!("sslcrl {}", file.display()));
    }
    if let Some(dir) = &config.ssl_crl_dir {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::config(format!("cannot read sslcrldir {}: {e}", dir.display())))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        let before = crls.len();
        // A directory may hold other files (OpenSSL's hashed names point at
        // the same CRLs); what parses as a CRL counts.
        for path in entries {
            if let Ok(found) = read_crls(&path) {
                crls.extend(found);
            }
        }
        if crls.len() == before {
            return Err(Error::config(format!(
                "sslcrldir {} holds no certificate revocation list (PEM)",
                dir.display()
            )));
        }
        labels.push(format!("sslcrldir {}", dir.display()));
    }
    Ok((crls, labels.join(" and ")))
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("cannot be read: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad revocation list: {e}"))?;
    if crls.is_empty() {
        return Err("holds no certificate revocation list (PEM)".to_owned());
    }
    Ok(crls)
}

/// `sslrootcert=system`: the operating system's trusted roots (libpq 16+).
pub(crate) const SYSTEM_ROOTS: &str = "system";

fn system_roots() -> Result<RootCertStore, Error> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(Error::config(format!(
            "sslrootcert=system, but no system root certificate could be loaded ({why}); \
             set sslrootcert to a CA file instead"
        )));
    }
    Ok(roots)
}

fn client_identity(
    config: &Config,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, Error> {
    let cert = config
        .ssl_cert
        .clone()
        .or_else(|| home_file("postgresql.crt").filter(|p| p.exists()));
    let Some(cert) = cert else { return Ok(None) };
    let key = config
        .ssl_key
        .clone()
        .or_else(|| home_file("postgresql.key"))
        .ok_or_else(|| Error::config("sslcert is set but sslkey is not"))?;
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| Error::config(format!("cannot read sslcert {}: {e}", cert.display())))?;
    if is_encrypted_key(&key) {
        return Err(Error::config(format!(
            "sslkey {} is encrypted, and encrypted client keys are not supported (sslpassword cannot be used): \
             decrypt it first, e.g. openssl pkey -in KEY -out KEY.plain",
            key.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| Error::config(format!("cannot read sslkey {}: {e}", key.display())))?;
    Ok(Some((certs, key)))
}

/// Whether a PEM key file is passphrase-protected (PKCS#8 or the legacy
/// OpenSSL form), which rustls cannot load.
fn is_encrypted_key(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| {
        text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || text.contains("Proc-Type: 4,ENCRYPTED")
    })
}

/// The rustls protocol versions within `ssl_min/max_protocol_version`.
fn protocol_versions(
    (min, max): (Option<TlsVersion>, Option<TlsVersion>),
) -> Vec<&'static rustls::SupportedProtocolVersion> {
    [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| min.is_none_or(|m| *v >= m) && max.is_none_or(|m| *v <= m))
    .map(|(_, rustls_version)| rustls_version)
    .collect()
}

/// Wraps the client-certificate resolver to record whether the server asked
/// for a certificate and whether one was sent (`sslcertmode=require`).
#[derive(Debug)]
struct CertRecorder {
    inner: Arc<dyn ResolvesClientCert>,
    requested: AtomicBool,
    sent: AtomicBool,
}

impl ResolvesClientCert for CertRecorder {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.requested.store(true, Ordering::Relaxed);
        let key = self.inner.resolve(root_hint_subjects, sigschemes);
        self.sent.store(key.is_some(), Ordering::Relaxed);
        key
    }

    fn has_certs(&self) -> bool {
        self.inner.has_certs()
    }
}
