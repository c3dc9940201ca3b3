//! The rustls client configuration for one connect: roots, verification mode,
//! client certificate, ALPN. Built fresh per connect (no shared session cache).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::config::{Config, SslMode};
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
}

impl TlsSetup {
    /// Builds the TLS configuration for `config`.
    ///
    /// # Errors
    /// Kind `Config` when verify-ca/verify-full has no root certificate, or a
    /// certificate/key file cannot be read or parsed. No I/O has happened yet.
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
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config(format!("TLS setup: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::DangerNone => Arc::new(DangerAcceptAnyCertificate(provider)),
            Verify::Ca | Verify::Full => {
                let Some(path) = root_file else {
                    return Err(Error::config(format!(
                        "sslmode={} needs a root certificate: set sslrootcert to the CA file \
                         (or put it at ~/.postgresql/root.crt), or use sslmode=require",
                        mode_name(config.ssl_mode)
                    )));
                };
                let roots = load_roots(&path)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| Error::config(format!("sslrootcert {}: {e}", path.display())))?;
                match verify {
                    Verify::Full => webpki,
                    _ => Arc::new(VerifyCaOnly(webpki)),
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let mut tls = match client_identity(config)? {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::config(format!("sslcert/sslkey: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        tls.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            config: Arc::new(tls),
            verify,
        })
    }

    /// The rustls configuration.
    pub(crate) fn client_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
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

fn load_roots(path: &Path) -> Result<RootCertStore, Error> {
    if path == Path::new(SYSTEM_ROOTS) {
        return system_roots();
    }
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(format!("cannot read sslrootcert {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| {
            Error::config(format!(
                "bad certificate in sslrootcert {}: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            Error::config(format!(
                "bad certificate in sslrootcert {}: {e}",
                path.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(Error::config(format!(
            "sslrootcert {} holds no certificate",
            path.display()
        )));
    }
    Ok(roots)
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
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| Error::config(format!("cannot read sslkey {}: {e}", key.display())))?;
    Ok(Some((certs, key)))
}

/// sslmode=require: encrypt, but accept any certificate. Handshake signatures
/// are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
struct DangerAcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// sslmode=verify-ca: the chain must reach a trusted root; the name may differ.
#[derive(Debug)]
struct VerifyCaOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for VerifyCaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
