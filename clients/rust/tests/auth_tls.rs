//! Basic Handshake credentials and TLS against the real server on the test bed. The server
//! serves `grpc+tls://` with a certificate for 127.0.0.1 and localhost signed by a CA made for
//! the test (rcgen), and takes users from an access file whose password hashes come from its
//! `hash-password` command. A user who trusts that CA reads a table whole, compared row by row
//! with PostgreSQL; a wrong password, an unknown user, no credentials, a user without access to
//! the table, a client that does not trust the certificate and one expecting another host name
//! each fail with their own error, promptly.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use redshift_flight_client::{Client, Error, Mode, TableRequest, TlsOptions};

use common::{SchemaGuard, Server, hash_password, pg, rows_as_text, unique};

const SETUP: &str = r#"
CREATE TABLE {s}.accounts (
  id bigint PRIMARY KEY, name varchar(40), balance numeric(12,2), active boolean, opened date
);
INSERT INTO {s}.accounts
  SELECT g,
         CASE WHEN g % 5 = 0 THEN NULL ELSE 'account ' || g || ' ü' END,
         CASE WHEN g % 7 = 0 THEN NULL ELSE g * 12.34 - 500 END,
         g % 2 = 0,
         date '2024-01-01' + g
  FROM generate_series(1, 200) g;
"#;

/// The columns as PostgreSQL prints them, which is how arrow displays them.
const PG_ROWS: &str = "SELECT a.id::text, a.name::text, a.balance::text, a.active::text, \
                       a.opened::text FROM {t} a ORDER BY a.id";

const ALICE_PASSWORD: &str = "alice's pass: ünïcode & spaces";
const BOB_PASSWORD: &str = "bob-password-1234";

/// Longest a connect or call may take before the test calls it a hang.
const PROMPT: Duration = Duration::from_secs(30);

/// A directory removed when the guard goes, also when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// Writes `contents` to `name` in the directory; returns the file's path as text.
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path_text(&path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temporary path").to_string()
}

/// A CA made for one test run and a server certificate it signed, as PEM.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

/// A fresh CA named `ca_name` and a certificate it signed for 127.0.0.1 and localhost.
fn pki(ca_name: &str) -> Pki {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A server with TLS and an access file (alice: every table; bob: another schema only) serving
/// a fresh schema with the `accounts` table.
struct Fixture {
    server: Server,
    schema: SchemaGuard,
    pki: Pki,
    _files: TempDir,
}

impl Fixture {
    async fn start(prefix: &str) -> Self {
        let pg = pg().await;
        let schema = SchemaGuard::create(&pg, prefix, SETUP).await;
        let pki = pki("redshift-flight test CA");
        let files = TempDir::new("rsf-rust-auth-tls");
        let cert = files.write("server.pem", &pki.cert_pem);
        let key = files.write("server.key", &pki.key_pem);
        let access = files.write(
            "access.toml",
            &format!(
                "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n\n\
                 [[users]]\nname = \"bob\"\npassword_hash = \"{}\"\ntables = [\"elsewhere.*\"]\n",
                hash_password(ALICE_PASSWORD),
                hash_password(BOB_PASSWORD),
            ),
        );
        let server = Server::start(
            &schema.name,
            &[
                ("tls_cert", &cert),
                ("tls_key", &key),
                ("auth_file", &access),
            ],
        );
        Self {
            server,
            schema,
            pki,
            _files: files,
        }
    }

    /// TLS settings trusting the test's CA.
    fn trusting(&self) -> TlsOptions {
        TlsOptions {
            ca_pem: Some(self.pki.ca_pem.clone().into_bytes()),
            ..TlsOptions::default()
        }
    }

    fn accounts(&self) -> TableRequest {
        TableRequest::new(format!("{}.accounts", self.schema.name)).mode(Mode::Full)
    }

    /// Connects over TLS trusting the CA with `user`'s Basic credentials (the Handshake).
    async fn connect_as(&self, user: &str, password: &str) -> Result<Client, Error> {
        let connect = Client::builder(self.server.tls_uri())
            .tls(self.trusting())
            .basic_auth(user, password)
            .connect();
        tokio::time::timeout(PROMPT, connect)
            .await
            .expect("the Handshake hung")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_over_tls_read_a_table_as_postgresql_holds_it() {
    let fixture = Fixture::start("rust_tls_read").await;
    assert!(
        fixture
            .server
            .tls_uri()
            .starts_with("grpc+tls://127.0.0.1:")
    );
    let client = fixture.connect_as("alice", ALICE_PASSWORD).await.unwrap();
    assert!(
        !format!("{client:?}").contains(ALICE_PASSWORD),
        "Debug must not show the password"
    );

    let batches: Vec<RecordBatch> = client.read(fixture.accounts()).try_collect().await.unwrap();
    let mut got = rows_as_text(&batches);
    got.sort_by_key(|row| row[0].as_deref().unwrap().parse::<i64>().unwrap());
    let pg = pg().await;
    let table = format!("{}.accounts", fixture.schema.quoted());
    let want: Vec<Vec<Option<String>>> = pg
        .query(&PG_ROWS.replace("{t}", &table), &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (0..row.len()).map(|i| row.get(i)).collect())
        .collect();
    assert_eq!(want.len(), 200);
    assert_eq!(got, want);

    // The schema and table list go through the same connection and token.
    let tables = client.tables(&fixture.schema.name).await.unwrap();
    assert_eq!(
        tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["accounts"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_and_certificate_failures_are_told_apart() {
    let fixture = Fixture::start("rust_tls_fail").await;
    let accounts = fixture.accounts();

    // A wrong password and an unknown user fail the Handshake at connect time, alike.
    for (user, password) in [("alice", "not-her-password"), ("mallory", ALICE_PASSWORD)] {
        match fixture.connect_as(user, password).await {
            Err(Error::Unauthenticated(e)) => {
                assert_eq!(e.reason.as_deref(), Some("UNAUTHENTICATED"), "{user}: {e}");
                assert!(!e.message.contains(password), "{user}: {e}");
            }
            other => panic!("{user}: expected Unauthenticated, got {other:?}"),
        }
    }

    // No credentials: the TLS connection is fine, every call is refused.
    let anonymous = tokio::time::timeout(
        PROMPT,
        Client::builder(fixture.server.tls_uri())
            .tls(fixture.trusting())
            .connect(),
    )
    .await
    .expect("connect hung")
    .unwrap();
    match anonymous.plan(&accounts).await {
        Err(Error::Unauthenticated(e)) => assert_eq!(e.reason.as_deref(), Some("UNAUTHENTICATED")),
        other => panic!("expected Unauthenticated, got {other:?}"),
    }

    // A known user whose tables do not include this one: authenticated, not authorised.
    let bob = fixture.connect_as("bob", BOB_PASSWORD).await.unwrap();
    match bob.plan(&accounts).await {
        Err(e @ Error::PermissionDenied(_)) => assert_eq!(e.reason(), Some("PERMISSION_DENIED")),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }

    // Clients that do not trust the certificate, or expect another name, fail to connect, with
    // the reason in the message, before any credential is sent.
    let stranger = pki("some other CA");
    let untrusted = TlsOptions {
        ca_pem: Some(stranger.ca_pem.into_bytes()),
        ..TlsOptions::default()
    };
    let wrong_name = TlsOptions {
        domain_name: Some("flight.example.com".into()),
        ..fixture.trusting()
    };
    for (tls, expected) in [
        (untrusted, "UnknownIssuer"),
        (wrong_name, "not valid for name"),
    ] {
        let connect = Client::builder(fixture.server.tls_uri())
            .tls(tls)
            .basic_auth("alice", ALICE_PASSWORD)
            .connect_timeout(Duration::from_secs(10))
            .connect();
        match tokio::time::timeout(PROMPT, connect)
            .await
            .expect("a TLS failure hung")
        {
            Err(Error::Connect { uri, message }) => {
                assert_eq!(uri, fixture.server.tls_uri());
                assert!(
                    message.contains("certificate") && message.contains(expected),
                    "{expected}: {message}"
                );
            }
            other => panic!("{expected}: expected Connect, got {other:?}"),
        }
    }

    // The right credentials still work on the same server.
    let alice = fixture.connect_as("alice", ALICE_PASSWORD).await.unwrap();
    let batches: Vec<RecordBatch> = alice
        .read(accounts.filter("id <= 3"))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        rows_as_text(&batches).len(),
        3,
        "{}",
        fixture.server.stderr()
    );
}
