//! How the server's certificate is checked: the verifiers for sslmode=require
//! (none) and verify-ca/verify-full (WebPKI, plus libpq's pinned-root rule).

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};

/// Checks a server certificate that is byte-identical to a trusted root and
/// that WebPKI refused only for being a CA certificate: when `name` is given
/// (verify-full), the certificate must be valid for it.
///
/// Its dates need no check here: WebPKI checks validity before the
/// certificate's role, so a certificate refused for its role was in date.
///
/// # Errors
/// `InvalidCertificate`: `BadEncoding` if it cannot be parsed,
/// `NotValidForName` if it does not name the host.
fn verify_pinned_root(
    cert: &CertificateDer<'_>,
    name: Option<&ServerName<'_>>,
) -> Result<(), TlsError> {
    let Some(name) = name else { return Ok(()) };
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::BadEncoding))?;
    parsed
        .verify_is_valid_for_subject_name(name)
        .map_err(|_| TlsError::InvalidCertificate(CertificateError::NotValidForName))
}

/// sslmode=require: encrypt, but accept any certificate. Handshake signatures
/// are still checked, so the peer holds the key of the certificate it shows.
#[derive(Debug)]
pub(super) struct DangerAcceptAnyCertificate(pub(super) Arc<CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
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

/// verify-ca / verify-full: the chain must reach a trusted root, and for
/// verify-full the certificate must name the host.
///
/// One addition to WebPKI's rules, as libpq (OpenSSL) has it: a server whose
/// certificate *is* one of the configured roots, byte for byte, is trusted
/// even when that certificate is a CA certificate (PostgreSQL's documented
/// quick setup: a self-signed `server.crt` copied to the client as
/// `root.crt`). Its validity dates (checked by WebPKI before the refusal)
/// and, for verify-full, the host name still count, and the handshake still
/// proves the server holds its key.
#[derive(Debug)]
pub(super) struct PgVerifier {
    pub(super) webpki: Arc<WebPkiServerVerifier>,
    pub(super) check_name: bool,
    /// The configured roots as given (empty for the system's roots).
    pub(super) anchors: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for PgVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            Err(TlsError::InvalidCertificate(CertificateError::Other(other)))
                if is_ca_used_as_end_entity(&other)
                    && self
                        .anchors
                        .iter()
                        .any(|a| a.as_ref() == end_entity.as_ref()) =>
            {
                verify_pinned_root(end_entity, self.check_name.then_some(server_name))?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// WebPKI's refusal of a CA certificate presented as a server's own.
pub(super) fn is_ca_used_as_end_entity(other: &rustls::OtherError) -> bool {
    other
        .0
        .downcast_ref::<webpki::Error>()
        .is_some_and(|e| matches!(e, webpki::Error::CaUsedAsEndEntity))
}
