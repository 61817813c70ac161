//! TLS to Redshift: libpq's `sslmode` meanings on rustls. `verify-full` checks the chain
//! (public roots plus `redshift_ssl_root_cert`) and the host name; `prefer` and `require` encrypt
//! without verifying, as libpq does.
//!
//! May import: `crate::config`.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::SslMode;

/// TLS settings that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("redshift_ssl_root_cert {path}: {message}")]
pub struct TlsSetupError {
    path: String,
    message: String,
}

/// Accepts any server certificate: `sslmode` prefer and require encrypt without verifying, as
/// libpq does. Signatures are still checked, so the handshake itself is sound.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
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

/// The TLS connector for `mode`: verifying the chain (public roots plus `extra_ca`) and the host
/// name for verify-full, encrypting only for prefer and require.
pub fn tls_connector(
    mode: SslMode,
    extra_ca: Option<&Path>,
) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError {
            path: String::new(),
            message: e.to_string(),
        })?;
    let config = match mode {
        SslMode::VerifyFull => {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(path) = extra_ca {
                let err = |message: String| TlsSetupError {
                    path: path.display().to_string(),
                    message,
                };
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| err(e.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(e.to_string()))?;
                if certs.is_empty() {
                    return Err(err("no PEM certificate in the file".into()));
                }
                for cert in certs {
                    roots.add(cert).map_err(|e| err(e.to_string()))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}
