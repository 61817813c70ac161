//! TLS to Redshift (`redshift_sslmode`): a TLS-terminating PostgreSQL-protocol proxy in front of
//! the emulator (answering SSLRequest as Redshift does), with a certificate from a test CA.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::FlightDescriptor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common;
use crate::common::canon::read_all;
use crate::common::{TestServer, pg, unique};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

struct TestPki {
    ca_pem: String,
    server_cert: rustls::pki_types::CertificateDer<'static>,
    server_key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki() -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "redshift-flight test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    TestPki {
        ca_pem: ca.pem(),
        server_cert: server.der().clone(),
        server_key: rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
    }
}

/// Listens on loopback; answers SSLRequest with `S` and terminates TLS, then relays to `target`.
async fn tls_proxy(target: SocketAddr, pki: &TestPki) -> SocketAddr {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![pki.server_cert.clone()], pki.server_key.clone_key())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 8];
                if inbound.read_exact(&mut first).await.is_err() {
                    return;
                }
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    return;
                };
                if first == SSL_REQUEST {
                    if inbound.write_all(b"S").await.is_err() {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(inbound).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                } else {
                    if outbound.write_all(&first).await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn sslmodes_against_tls_and_plain_redshift() {
    let schema = unique("tls_rs");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); INSERT INTO {schema}.t VALUES (1), (2);"
        ))
        .await
        .unwrap();
    let pki = pki();
    let emulator: SocketAddr = format!("127.0.0.1:{}", common::tb("TESTBED_REDSHIFT_PORT"))
        .parse()
        .unwrap();
    let proxy = tls_proxy(emulator, &pki).await;
    let ca_file = std::env::temp_dir().join(format!("{schema}-ca.pem"));
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let ca_path = ca_file.to_string_lossy().into_owned();
    let port = proxy.port().to_string();

    // verify-full with the CA: the whole session runs over TLS.
    let server = TestServer::start(&[
        ("redshift_host", "localhost"),
        ("redshift_port", &port),
        ("redshift_sslmode", "verify-full"),
        ("redshift_ssl_root_cert", &ca_path),
    ])
    .await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .expect("GetFlightInfo through TLS to Redshift");
    assert_eq!(
        read_all(&server, &info)
            .await
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        2
    );
    server.stop().await;

    // require encrypts without verifying; verify-full without the CA refuses the unknown issuer.
    let server = TestServer::start(&[
        ("redshift_host", "localhost"),
        ("redshift_port", &port),
        ("redshift_sslmode", "require"),
    ])
    .await;
    server.stop().await;
    let error = common::start_error(&[
        ("redshift_host", "localhost"),
        ("redshift_port", &port),
        ("redshift_sslmode", "verify-full"),
    ])
    .await;
    assert!(
        error.contains("cannot reach Redshift") && error.to_lowercase().contains("certificate"),
        "{error}"
    );
    // verify-full checks the host name: the certificate is for localhost, not 127.0.0.1.
    let error = common::start_error(&[
        ("redshift_host", "127.0.0.1"),
        ("redshift_port", &port),
        ("redshift_sslmode", "verify-full"),
        ("redshift_ssl_root_cert", &ca_path),
    ])
    .await;
    assert!(error.contains("cannot reach Redshift"), "{error}");

    // Against a Redshift without TLS: require fails clearly, prefer falls back, disable is plain.
    let plain_port = common::tb("TESTBED_REDSHIFT_PORT");
    let error = common::start_error(&[
        ("redshift_port", &plain_port),
        ("redshift_sslmode", "require"),
    ])
    .await;
    assert!(error.contains("cannot reach Redshift"), "{error}");
    for mode in ["prefer", "disable"] {
        TestServer::start(&[("redshift_port", &plain_port), ("redshift_sslmode", mode)])
            .await
            .stop()
            .await;
    }
    let _ = std::fs::remove_file(ca_file);
}

/// Without `redshift_sslmode`, a non-loopback Redshift host gets `verify-full`: a certificate
/// from an unknown issuer is refused at start-up, where the old default (`require`) connected
/// without looking. `require` must now be asked for. The host is `::ffff:127.0.0.1`, an
/// IPv4-mapped IPv6 address: not a loopback name to the configuration, yet it reaches the proxy
/// on 127.0.0.1 (Linux maps it to IPv4).
#[tokio::test]
async fn non_loopback_hosts_verify_certificates_by_default() {
    let pki = pki();
    let emulator: SocketAddr = format!("127.0.0.1:{}", common::tb("TESTBED_REDSHIFT_PORT"))
        .parse()
        .unwrap();
    let proxy = tls_proxy(emulator, &pki).await;
    let port = proxy.port().to_string();
    let host = "::ffff:127.0.0.1";
    let error = common::start_error(&[("redshift_host", host), ("redshift_port", &port)]).await;
    assert!(
        error.contains("cannot reach Redshift") && error.to_lowercase().contains("certificate"),
        "{error}"
    );
    TestServer::start(&[
        ("redshift_host", host),
        ("redshift_port", &port),
        ("redshift_sslmode", "require"),
    ])
    .await
    .stop()
    .await;
}
