//! The simulated server's TLS: rustls over turmoil's stream, with a fixed
//! Ed25519 certificate. Ed25519 signatures have one length, so a seed gives
//! the same handshake sizes (and so the same chopping) every run; an ECDSA
//! key would not (SIMULATION.md). The key is a throwaway made for the
//! simulation: it protects nothing.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

const CERT: &[u8] = include_bytes!("sim-cert.pem");
const KEY: &[u8] = include_bytes!("sim-key.pem");

/// The server certificate, DER.
fn certificate() -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(CERT).expect("the committed certificate parses")
}

/// A fresh acceptor: configs are not shared between simulations, so no
/// session is resumed across runs and every run does the full handshake.
pub(crate) fn acceptor() -> TlsAcceptor {
    let key = PrivateKeyDer::from_pem_slice(KEY).expect("the committed key parses");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(vec![certificate()], key)
        .expect("the committed certificate and key match");
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    TlsAcceptor::from(Arc::new(config))
}

/// tls-server-end-point channel-binding data (RFC 5929): the certificate's
/// hash. Ed25519 names no hash; like the client, the simulation uses SHA-256.
pub(crate) fn end_point() -> Vec<u8> {
    Sha256::digest(certificate().as_ref()).to_vec()
}
