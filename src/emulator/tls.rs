//! HTTPS for the emulator: a throw-away certificate authority and a server certificate for
//! `127.0.0.1`, `::1` and `localhost`, made at start, served with rustls on the aws-lc-rs provider.
//! No I/O.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Names the server certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("could not generate the emulator's certificates")]
    GenerateCertificate(#[source] rcgen::Error),
    #[error("could not configure rustls")]
    Configure(#[source] rustls::Error),
}

/// A ready acceptor and the CA certificate clients should trust.
pub struct TlsMaterial {
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial").field("ca_pem", &self.ca_pem).finish_non_exhaustive()
    }
}

/// Makes a CA and a server certificate signed by it, and a rustls acceptor serving the latter.
pub fn generate() -> Result<TlsMaterial, TlsError> {
    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(TlsError::GenerateCertificate)?;
    ca_params.distinguished_name.push(DnType::CommonName, "taskreaper emulator CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().map_err(TlsError::GenerateCertificate)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(TlsError::GenerateCertificate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let names: Vec<String> = SERVER_NAMES.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names).map_err(TlsError::GenerateCertificate)?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(TlsError::GenerateCertificate)?;
    let cert = params.signed_by(&key, &issuer).map_err(TlsError::GenerateCertificate)?;

    let mut config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Configure)?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(TlsError::Configure)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial { ca_pem: ca_cert.pem(), acceptor: TlsAcceptor::from(Arc::new(config)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_a_pem_ca() {
        let material = generate().unwrap();
        assert!(material.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"), "{}", material.ca_pem);
        assert_ne!(generate().unwrap().ca_pem, material.ca_pem, "each start makes a new CA");
    }
}
