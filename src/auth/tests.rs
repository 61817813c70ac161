//! Tests of the whole [`Authenticator`]: bearer tokens and their tables, the Handshake, issued
//! tokens across key rotation, bounded password verification and refused access files.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;

use super::*;
use crate::keys::Purpose;

fn metadata(value: Option<&str>) -> MetadataMap {
    let mut map = MetadataMap::new();
    if let Some(v) = value {
        map.insert("authorization", v.parse().unwrap());
    }
    map
}

fn basic(user: &str, password: &str) -> String {
    use base64::engine::general_purpose::STANDARD;
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn authenticator(ttl: Duration) -> Authenticator {
    let hash = hash_password("s3cret-pw").unwrap();
    let dir = std::env::temp_dir().join(format!("rsf-auth-{:x}.toml", rand::random::<u64>()));
    std::fs::write(
        &dir,
        format!(
            "[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\ntables = [\"demo.*\"]\n\n\
             [[tokens]]\nname = \"etl\"\ntoken = \"etl-token-0123456789\"\ntables = [\"demo.orders\", \"x?.t\"]\n"
        ),
    )
    .unwrap();
    let auth = Authenticator::new(
        vec![SecretString::from("alpha-token")],
        Some(&dir),
        keys(&["key"]),
        ttl,
    )
    .unwrap();
    std::fs::remove_file(dir).unwrap();
    auth
}

fn keys(secrets: &[&str]) -> Arc<Keyring> {
    Arc::new(Keyring::new(secrets))
}

/// The same users and tokens with other signing keys (a replica configured otherwise).
fn with_keys(auth: &Authenticator, secrets: &[&str]) -> Authenticator {
    Authenticator {
        tokens: auth.tokens.clone(),
        users: auth
            .users
            .iter()
            .map(|(name, user)| {
                (
                    name.clone(),
                    User {
                        password_hash: user.password_hash.clone(),
                        principal: user.principal.clone(),
                    },
                )
            })
            .collect(),
        dummy_hash: auth.dummy_hash.clone(),
        keys: keys(secrets),
        token_ttl: auth.token_ttl,
        hashing: HashLimiter::new(HashLimits::default()),
    }
}

#[test]
fn bearer_tokens_and_their_tables() {
    let auth = authenticator(Duration::from_secs(60));
    let now = SystemTime::now();
    let all = auth
        .authenticate(&metadata(Some("Bearer alpha-token")), now)
        .unwrap();
    assert!(all.may_read("any", "thing"));
    let etl = auth
        .authenticate(&metadata(Some("Bearer etl-token-0123456789")), now)
        .unwrap();
    assert!(etl.may_read("demo", "orders") && etl.may_read("x1", "t"));
    assert!(!etl.may_read("demo", "customers") && !etl.may_read("Demo", "orders"));
    assert!(matches!(
        etl.check("demo", "secret"),
        Err(AuthError::Forbidden { .. })
    ));
    for bad in [
        Some("Bearer gamma"),
        Some("Basic YWxwaGE="),
        Some("Bearer "),
        Some("alpha-token"),
    ] {
        assert_eq!(
            auth.authenticate(&metadata(bad), now).unwrap_err(),
            AuthError::Invalid,
            "{bad:?}"
        );
    }
    assert_eq!(
        auth.authenticate(&metadata(None), now).unwrap_err(),
        AuthError::Missing
    );
    let debug = format!("{auth:?}");
    assert!(
        !debug.contains("alpha-token") && !debug.contains("etl-token") && !debug.contains("argon2")
    );
}

#[tokio::test]
async fn handshake_issues_expiring_signed_tokens() {
    let auth = authenticator(Duration::from_secs(60));
    let now = SystemTime::now();
    let token = auth
        .handshake(&metadata(Some(&basic("alice", "s3cret-pw"))), now)
        .await
        .unwrap()
        .unwrap();
    let principal = auth
        .authenticate(&metadata(Some(&format!("Bearer {token}"))), now)
        .unwrap();
    assert_eq!(principal.name(), "alice");
    assert!(principal.may_read("demo", "t") && !principal.may_read("other", "t"));
    assert_eq!(
        auth.authenticate(
            &metadata(Some(&format!("Bearer {token}"))),
            now + Duration::from_secs(61)
        )
        .unwrap_err(),
        AuthError::Expired
    );
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        auth.authenticate(&metadata(Some(&format!("Bearer {forged}"))), now)
            .unwrap_err(),
        AuthError::Invalid
    );
    let other_key = Authenticator::new(
        vec![SecretString::from("x")],
        None,
        keys(&["other"]),
        Duration::from_secs(60),
    )
    .unwrap();
    assert!(
        other_key
            .authenticate(&metadata(Some(&format!("Bearer {token}"))), now)
            .is_err()
    );
    for bad in [
        basic("alice", "wrong"),
        basic("mallory", "s3cret-pw"),
        "Basic !!!".into(),
        basic("alice", ""),
    ] {
        assert_eq!(
            auth.handshake(&metadata(Some(&bad)), now)
                .await
                .unwrap_err(),
            AuthError::Invalid
        );
    }
}

/// Rotation: a token signed with key A is accepted where A is still configured (after B),
/// not where it is gone; the key that signs tickets does not sign tokens.
#[tokio::test]
async fn basic_credentials_without_base64_padding_are_accepted() {
    // Go's Flight client (ADBC's Flight SQL driver) sends Basic credentials unpadded.
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    let auth = authenticator(Duration::from_secs(60));
    let now = SystemTime::now();
    for credentials in ["alice:s3cret-pw", "alice:s3cret-pw1", "alice:s3cret-pw12"] {
        let header = format!("Basic {}", STANDARD_NO_PAD.encode(credentials));
        let result = auth.handshake(&metadata(Some(&header)), now).await;
        if credentials == "alice:s3cret-pw" {
            assert!(result.unwrap().is_some(), "{credentials}");
        } else {
            assert_eq!(result, Err(AuthError::Invalid), "{credentials}");
        }
    }
}

#[tokio::test]
async fn issued_tokens_verify_by_key_id_across_rotation() {
    let a = authenticator(Duration::from_secs(60));
    let now = SystemTime::now();
    let token = a.issue("alice", now);
    assert!(token.starts_with("rsfb2."), "{token}");
    let bearer = |t: &str| metadata(Some(&format!("Bearer {t}")));
    let rotated = with_keys(&a, &["b-key", "key"]);
    assert_eq!(
        rotated.authenticate(&bearer(&token), now).unwrap().name(),
        "alice"
    );
    let retired = with_keys(&a, &["b-key"]);
    assert_eq!(
        retired.authenticate(&bearer(&token), now).unwrap_err(),
        AuthError::Invalid
    );
    let fresh = rotated.issue("alice", now);
    assert_eq!(
        retired.authenticate(&bearer(&fresh), now).unwrap().name(),
        "alice"
    );
    // Another key id in front of a genuine signature does not verify.
    let parts: Vec<&str> = token.splitn(3, '.').collect();
    let other_id = hex::encode(Keyring::new(&["b-key"]).signing(Purpose::Token).0);
    let swapped = format!("rsfb2.{other_id}.{}", parts[2]);
    assert_eq!(
        rotated.authenticate(&bearer(&swapped), now).unwrap_err(),
        AuthError::Invalid
    );
    // A ticket signature made with the same secret is not a token signature.
    let ring = Keyring::new(&["key"]);
    let (_, ticket_key) = ring.signing(Purpose::Ticket);
    let (signed_part, _) = token.rsplit_once('.').unwrap();
    let forged = format!(
        "{signed_part}.{}",
        URL_SAFE_NO_PAD.encode(token::mac(ticket_key, signed_part).finalize().into_bytes())
    );
    assert_eq!(
        a.authenticate(&bearer(&forged), now).unwrap_err(),
        AuthError::Invalid
    );
}

/// Password checks beyond the queue bound fail at once with `Busy`, and every caller gets
/// an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_floods_are_bounded() {
    let auth = Arc::new(
        authenticator(Duration::from_secs(60)).with_hash_limits(HashLimits {
            concurrent: 1,
            queued: 2,
            max_wait: Duration::from_secs(60),
        }),
    );
    let now = SystemTime::now();
    let calls: Vec<_> = (0..12)
        .map(|i| {
            let auth = Arc::clone(&auth);
            tokio::spawn(async move {
                let user = if i % 2 == 0 { "alice" } else { "nobody" };
                auth.handshake(&metadata(Some(&basic(user, "wrong"))), now)
                    .await
            })
        })
        .collect();
    let mut busy = 0;
    for call in calls {
        match call.await.unwrap() {
            Err(AuthError::Busy) => busy += 1,
            Err(AuthError::Invalid) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(busy >= 6, "{busy} of 12 were refused at once");
    assert_eq!(auth.hashing.waiting.load(Ordering::SeqCst), 0);
    // Once the flood has passed, the right password works again.
    assert!(
        auth.handshake(&metadata(Some(&basic("alice", "s3cret-pw"))), now)
            .await
            .unwrap()
            .is_some()
    );
}

#[test]
fn bad_access_files_are_refused() {
    for text in [
        "[[users]]\nname = \"a\"\npassword_hash = \"plain\"\n",
        "[[tokens]]\nname = \"t\"\ntoken = \"short\"\n",
        "[[tokens]]\nname = \"t\"\ntoken = \"0123456789abcdefg\"\ntables = [\"[\"]\n",
        "[[users]]\nname = \"a\"\npasword_hash = \"x\"\n",
    ] {
        let path =
            std::env::temp_dir().join(format!("rsf-auth-bad-{:x}.toml", rand::random::<u64>()));
        std::fs::write(&path, text).unwrap();
        let result = Authenticator::new(vec![], Some(&path), keys(&["k"]), Duration::from_secs(1));
        std::fs::remove_file(&path).unwrap();
        let error = result.unwrap_err().to_string();
        assert!(!error.contains("0123456789abcdefg"), "{error}");
    }
}
