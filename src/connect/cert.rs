//! The host-name check for a server certificate that is itself a configured
//! root (see `tls::PgVerifier`).

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, Error as TlsError};

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
pub(super) fn verify_pinned_root(
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
