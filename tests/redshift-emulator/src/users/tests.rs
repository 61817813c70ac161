//! Unit tests of [`super`]: the MD5 forms, password logins, temporary credentials (expiry,
//! forgetting, AutoCreate), rotation and the permissions of `CREATE USER` / `ALTER USER`, the
//! password rules and the reserved temporary login names.
//!
//! May import: `super`, `crate::config`.

use super::*;

const SALT: [u8; 4] = [1, 2, 3, 4];

fn answer(user: &str, password: &str) -> String {
    md5_answer(&stored_md5(user, password), &SALT)
}

fn users() -> Users {
    Users::new("awsuser", &Secret::new("Testbed-Passw0rd"))
}

fn issue(
    users: &Users,
    prefix: &'static str,
    user: &str,
    auto: bool,
    at: SystemTime,
) -> NewCredentials {
    users.issue(
        &IssueRequest {
            prefix,
            db_user: user,
            auto_create: auto,
            groups: vec!["analysts".into()],
            database: Some("dev".into()),
            lifetime: Duration::from_secs(900),
            request_id: "rid".into(),
        },
        at,
    )
}

#[test]
fn md5_matches_pgwire_and_postgres() {
    // pgwire's own helper computes the same client answer
    assert_eq!(
        answer("zmjiang", "themanwhochangedchina"),
        pgwire::api::auth::md5pass::hash_md5_password("zmjiang", "themanwhochangedchina", &SALT)
    );
}

#[test]
fn static_user_logs_in_with_its_password_only() {
    let users = users();
    let now = SystemTime::now();
    let login = users
        .verify(
            "awsuser",
            "dev",
            &SALT,
            &answer("awsuser", "Testbed-Passw0rd"),
            now,
        )
        .unwrap();
    assert_eq!(login.method, AuthMethod::Password);
    let err = users
        .verify("awsuser", "dev", &SALT, &answer("awsuser", "nope"), now)
        .unwrap_err();
    assert_eq!(err, password_failed("awsuser"));
    let err = users
        .verify("bob", "dev", &SALT, &answer("bob", "x"), now)
        .unwrap_err();
    assert_eq!(err.code, "28P01");
}

#[test]
fn temporary_credentials_expire_and_sessions_need_the_user() {
    let users = users();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let creds = issue(&users, "IAM", "awsuser", false, t0);
    assert_eq!(creds.user, "IAM:awsuser");
    assert_eq!(creds.expires, t0 + Duration::from_secs(900));
    let good = answer(&creds.user, creds.password.expose());
    let login = users
        .verify("IAM:awsuser", "dev", &SALT, &good, t0)
        .unwrap();
    assert_eq!(login.db_user, "awsuser");
    assert_eq!(login.method, AuthMethod::Iam);
    assert_eq!(login.groups, vec!["analysts".to_owned()]);
    // another database than the one asked for
    let err = users
        .verify("IAM:awsuser", "other", &SALT, &good, t0)
        .unwrap_err();
    assert_eq!(err.code, "28P01");
    // the configured user's own password is not the temporary one
    let err = users
        .verify(
            "IAM:awsuser",
            "dev",
            &SALT,
            &answer("IAM:awsuser", "Testbed-Passw0rd"),
            t0,
        )
        .unwrap_err();
    assert_eq!(err, password_failed("IAM:awsuser"));
    // expired
    let later = t0 + Duration::from_secs(900);
    let err = users
        .verify("IAM:awsuser", "dev", &SALT, &good, later)
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        ("28P01", "IAM Authentication token has expired")
    );
    // a second credential works while the first is expired
    let fresh = issue(&users, "IAM", "awsuser", false, later);
    let answer2 = answer(&fresh.user, fresh.password.expose());
    assert!(
        users
            .verify("IAM:awsuser", "dev", &SALT, &answer2, later)
            .is_ok()
    );
    // forgotten an hour after expiry: then it is just a wrong password
    let much_later = later + FORGET_AFTER + Duration::from_secs(1);
    let err = users
        .verify("IAM:awsuser", "dev", &SALT, &good, much_later)
        .unwrap_err();
    assert_eq!(err, password_failed("IAM:awsuser"));
}

#[test]
fn auto_create_decides_whether_the_user_exists() {
    let users = users();
    let now = SystemTime::now();
    let creds = issue(&users, "IAM", "alice", false, now);
    let err = users
        .verify(
            &creds.user,
            "dev",
            &SALT,
            &answer(&creds.user, creds.password.expose()),
            now,
        )
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        ("28000", "user \"alice\" does not exist")
    );
    let creds = issue(&users, "IAMA", "alice", true, now);
    assert_eq!(creds.user, "IAMA:alice");
    assert!(users.exists("alice"));
    assert!(
        users
            .verify(
                &creds.user,
                "dev",
                &SALT,
                &answer(&creds.user, creds.password.expose()),
                now
            )
            .is_ok()
    );
    // the auto-created user has no password of its own
    let err = users
        .verify("alice", "dev", &SALT, &answer("alice", ""), now)
        .unwrap_err();
    assert_eq!(err.code, "28P01");
    assert_eq!(users.issued().len(), 2);
}

#[test]
fn rotation_changes_new_logins() {
    let users = users();
    let now = SystemTime::now();
    let new = NewPassword::Clear(Secret::new("Rotated-Passw0rd"));
    users.alter("awsuser", "awsuser", Some(&new), None).unwrap();
    assert!(
        users
            .verify(
                "awsuser",
                "dev",
                &SALT,
                &answer("awsuser", "Testbed-Passw0rd"),
                now
            )
            .is_err()
    );
    assert!(
        users
            .verify(
                "awsuser",
                "dev",
                &SALT,
                &answer("awsuser", "Rotated-Passw0rd"),
                now
            )
            .is_ok()
    );
    // md5 form
    let hash = format!("md5{}", stored_md5("bob", "Bobs-Passw0rd"));
    users
        .create(
            "awsuser",
            "bob",
            &NewPassword::Md5(hash[3..].to_owned()),
            None,
        )
        .unwrap();
    assert!(
        users
            .verify("bob", "dev", &SALT, &answer("bob", "Bobs-Passw0rd"), now)
            .is_ok()
    );
    // bob may change his own password but not awsuser's, nor create users
    let other = NewPassword::Clear(Secret::new("Other-Passw0rd"));
    users.alter("bob", "bob", Some(&other), None).unwrap();
    assert_eq!(
        users
            .alter("bob", "awsuser", Some(&other), None)
            .unwrap_err()
            .code,
        "42501"
    );
    assert_eq!(
        users
            .alter("bob", "bob", None, Some(true))
            .unwrap_err()
            .code,
        "42501"
    );
    assert_eq!(
        users.create("bob", "carol", &other, None).unwrap_err().code,
        "42501"
    );
    // a superuser made with CREATEUSER may
    users
        .create("awsuser", "admin2", &other, Some(true))
        .unwrap();
    users
        .alter("admin2", "bob", Some(&NewPassword::Disable), None)
        .unwrap();
    assert!(
        users
            .verify("bob", "dev", &SALT, &answer("bob", "Other-Passw0rd"), now)
            .is_err()
    );
    assert_eq!(
        users
            .create("awsuser", "bob", &other, None)
            .unwrap_err()
            .code,
        "42710"
    );
    assert_eq!(
        users
            .alter("awsuser", "nobody", Some(&other), None)
            .unwrap_err()
            .code,
        "42704"
    );
}

#[test]
fn password_rules() {
    for (bad, why) in [
        ("Short1A", "8 to 64"),
        ("alllower1", "uppercase"),
        ("ALLUPPER1", "lowercase"),
        ("NoDigitsHere", "number"),
        ("With space1A", "printable"),
        ("Quote'1Abcdef", "printable"),
    ] {
        let err = check_password_rules(bad).unwrap_err();
        assert!(err.message.contains(why), "{bad}: {err:?}");
    }
    check_password_rules("Testbed-Passw0rd").unwrap();
}

#[test]
fn temporary_names() {
    assert_eq!(temporary_user("IAM:alice"), Some(("IAM", "alice")));
    assert_eq!(temporary_user("IAMR:role"), Some(("IAMR", "role")));
    assert_eq!(temporary_user("alice"), None);
    assert_eq!(temporary_user("X:alice"), None);
}
