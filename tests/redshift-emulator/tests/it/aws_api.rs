//! The AWS API double over HTTP (Redshift Query protocol, Redshift Serverless JSON protocol),
//! logins with the temporary credentials it issues (expiry, AutoCreate), `CREATE USER` /
//! `ALTER USER`, the connection log and the idle session timeout. Needs the test bed (see
//! `common`).

use std::time::Duration;

use redshift_emulator::FaultSettings;
use tokio_postgres::{Client, NoTls};

use crate::common::{Emulator, PASSWORD, db_error, unique};

/// An emulator with the AWS API on a free port and the given knobs.
async fn emulator(faults: FaultSettings) -> Emulator {
    Emulator::start_with(|c| {
        c.with_aws_api_listen("127.0.0.1:0")
            .with_custom_domain_name("db.testbed.example")
            .with_faults(faults)
    })
    .await
}

fn api_url(emu: &Emulator) -> String {
    format!(
        "http://{}/",
        emu.running.aws_api_addr().expect("API address")
    )
}

/// A SigV4-shaped Authorization header and its X-Amz-Date (signatures are not verified).
fn signed(service: &str, region: &str) -> (String, String) {
    let now = chrono::Utc::now();
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=ASIATESTBED/{}/{region}/{service}/aws4_request, \
         SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature={}",
        now.format("%Y%m%d"),
        "ab".repeat(32)
    );
    (auth, now.format("%Y%m%dT%H%M%SZ").to_string())
}

struct Reply {
    status: u16,
    request_id: String,
    body: String,
}

/// POSTs a Query-protocol form, signed for `service`.
async fn query(emu: &Emulator, form: &[(&str, &str)], service: Option<&str>) -> Reply {
    let mut body = form_urlencoded::Serializer::new(String::new());
    body.append_pair("Version", "2012-12-01");
    for (k, v) in form {
        body.append_pair(k, v);
    }
    let mut request = reqwest::Client::new()
        .post(api_url(emu))
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body.finish());
    if let Some(service) = service {
        let (auth, date) = signed(service, "us-east-1");
        request = request
            .header("authorization", auth)
            .header("x-amz-date", date)
            .header("x-amz-security-token", "token");
    }
    reply(request).await
}

/// POSTs a Serverless JSON request, signed for `service`.
async fn json(emu: &Emulator, target: &str, body: serde_json::Value, service: &str) -> Reply {
    let (auth, date) = signed(service, "us-east-1");
    let request = reqwest::Client::new()
        .post(api_url(emu))
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amz-target", target)
        .header("authorization", auth)
        .header("x-amz-date", date)
        .body(body.to_string());
    reply(request).await
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("API request");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.expect("API body");
    Reply {
        status,
        request_id,
        body,
    }
}

/// The text of the first `<name>` element.
fn tag<'a>(xml: &'a str, name: &str) -> &'a str {
    let open = format!("<{name}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{name}> in {xml}"))
        + open.len();
    let end = xml[start..].find(&format!("</{name}>")).expect("closed") + start;
    &xml[start..end]
}

async fn login(
    emu: &Emulator,
    user: &str,
    password: &str,
    app: &str,
) -> Result<Client, tokio_postgres::Error> {
    let mut config = emu.conn_config();
    config.user(user).password(password).application_name(app);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// (event, username, authmethod, pid, iamauthguid, reason, db_groups) of `app`'s log rows.
type LogRow = (
    String,
    String,
    String,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
);

async fn connection_log(emu: &Emulator, app: &str) -> Vec<LogRow> {
    emu.bed
        .pg()
        .await
        .query(
            "SELECT event, username, authmethod, pid, iamauthguid, reason, db_groups \
             FROM public.stl_connection_log WHERE application_name = $1 ORDER BY recordtime",
            &[&app],
        )
        .await
        .expect("read stl_connection_log")
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
            )
        })
        .collect()
}

#[tokio::test]
async fn cluster_credentials_log_in_until_they_expire() {
    let emu = emulator(FaultSettings {
        iam_credential_seconds: Some(2),
        ..FaultSettings::default()
    })
    .await;
    let app = unique("iam_expiry");
    let reply = query(
        &emu,
        &[
            ("Action", "GetClusterCredentials"),
            ("ClusterIdentifier", "testbed"),
            ("DbUser", "awsuser"),
            ("DbName", "dev"),
            ("DurationSeconds", "900"),
            ("DbGroups.member.1", "readers"),
            ("DbGroups.member.2", "unloaders"),
        ],
        Some("redshift"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let xml = &reply.body;
    assert!(
        xml.starts_with(
            "<GetClusterCredentialsResponse xmlns=\"http://redshift.amazonaws.com/doc/2012-12-01/\">"
        ),
        "{xml}"
    );
    assert_eq!(tag(xml, "DbUser"), "IAM:awsuser");
    assert_eq!(tag(xml, "RequestId"), reply.request_id);
    let expiration = chrono::DateTime::parse_from_rfc3339(tag(xml, "Expiration")).unwrap();
    let left = expiration.signed_duration_since(chrono::Utc::now());
    assert!(left <= chrono::Duration::seconds(2), "{left}");
    let password = tag(xml, "DbPassword").to_owned();

    let client = login(&emu, "IAM:awsuser", &password, &app).await.unwrap();
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // the user's own password is not accepted for the IAM login name
    let err = login(&emu, "IAM:awsuser", PASSWORD, &app)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28P01".to_owned(),
            "password authentication failed for user \"IAM:awsuser\"".to_owned()
        )
    );

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let err = login(&emu, "IAM:awsuser", &password, &app)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28P01".to_owned(),
            "IAM Authentication token has expired".to_owned()
        )
    );
    // the open session outlives its credentials
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    assert_eq!(
        emu.running.issued_credentials()[0].groups,
        ["readers", "unloaders"]
    );

    let log = connection_log(&emu, &app).await;
    let groups = Some("readers,unloaders".to_owned());
    assert_eq!(
        log,
        vec![
            (
                "authenticated".into(),
                "IAM:awsuser".into(),
                "IAM".into(),
                Some(pid),
                Some(reply.request_id.clone()),
                None,
                groups
            ),
            (
                "authentication failure".into(),
                "IAM:awsuser".into(),
                "IAM".into(),
                None,
                None,
                Some("password authentication failed for user \"IAM:awsuser\"".into()),
                None
            ),
            (
                "authentication failure".into(),
                "IAM:awsuser".into(),
                "IAM".into(),
                None,
                None,
                Some("IAM Authentication token has expired".into()),
                None
            ),
        ]
    );
    // passwords are never logged
    let rows = emu
        .bed
        .pg()
        .await
        .query(
            "SELECT 1 FROM public.stl_connection_log l WHERE l::text LIKE '%' || $1 || '%'",
            &[&password],
        )
        .await
        .unwrap();
    assert!(rows.is_empty());
    drop(client);
}

#[tokio::test]
async fn auto_create_decides_whether_the_user_exists() {
    let emu = emulator(FaultSettings::default()).await;
    let user = unique("carol");
    let app = unique("autocreate");
    let ask = |auto: &'static str| {
        let user = user.clone();
        let emu = &emu;
        async move {
            query(
                emu,
                &[
                    ("Action", "GetClusterCredentials"),
                    ("ClusterIdentifier", "testbed"),
                    ("DbUser", &user),
                    ("AutoCreate", auto),
                ],
                Some("redshift"),
            )
            .await
        }
    };
    let reply = ask("false").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let login_user = tag(&reply.body, "DbUser").to_owned();
    assert_eq!(login_user, format!("IAM:{user}"));
    let err = login(&emu, &login_user, tag(&reply.body, "DbPassword"), &app)
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "28000".to_owned(),
            format!("user \"{user}\" does not exist")
        )
    );
    assert!(!emu.running.user_exists(&user));

    let reply = ask("true").await;
    let login_user = tag(&reply.body, "DbUser").to_owned();
    assert_eq!(login_user, format!("IAMA:{user}"));
    let client = login(&emu, &login_user, tag(&reply.body, "DbPassword"), &app)
        .await
        .unwrap();
    assert!(emu.running.user_exists(&user));
    client.simple_query("select 1").await.unwrap();
}

#[tokio::test]
async fn with_iam_and_serverless_credentials() {
    let emu = emulator(FaultSettings::default()).await;
    let app = unique("with_iam");
    let reply = query(
        &emu,
        &[
            ("Action", "GetClusterCredentialsWithIAM"),
            ("ClusterIdentifier", "testbed"),
            ("DbName", "dev"),
            ("DurationSeconds", "3600"),
        ],
        Some("redshift"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let xml = &reply.body;
    assert!(
        xml.starts_with("<GetClusterCredentialsWithIAMResponse "),
        "{xml}"
    );
    assert!(
        xml.contains("<GetClusterCredentialsWithIAMResult>"),
        "{xml}"
    );
    assert_eq!(tag(xml, "DbUser"), "IAM:awsuser");
    assert_eq!(tag(xml, "NextRefreshTime"), tag(xml, "Expiration"));
    let expiration = chrono::DateTime::parse_from_rfc3339(tag(xml, "Expiration")).unwrap();
    let left = expiration.signed_duration_since(chrono::Utc::now());
    assert!(left > chrono::Duration::seconds(3500), "{left}");
    login(&emu, "IAM:awsuser", tag(xml, "DbPassword"), &app)
        .await
        .unwrap();

    // the custom domain instead of the cluster id
    let reply = query(
        &emu,
        &[
            ("Action", "GetClusterCredentialsWithIAM"),
            ("CustomDomainName", "db.testbed.example"),
        ],
        Some("redshift"),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    for request in [
        serde_json::json!({"workgroupName": "testbed-wg", "dbName": "dev", "durationSeconds": 900}),
        serde_json::json!({"customDomainName": "db.testbed.example"}),
    ] {
        let reply = json(
            &emu,
            "RedshiftServerless.GetCredentials",
            request,
            "redshift-serverless",
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(!reply.request_id.is_empty());
        let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(answer["dbUser"], "IAMR:awsuser");
        let expiration = answer["expiration"].as_f64().expect("epoch seconds");
        let now = chrono::Utc::now().timestamp() as f64;
        assert!((now + 890.0..now + 910.0).contains(&expiration), "{answer}");
        assert_eq!(answer["nextRefreshTime"], answer["expiration"]);
        let client = login(
            &emu,
            "IAMR:awsuser",
            answer["dbPassword"].as_str().unwrap(),
            &app,
        )
        .await
        .unwrap();
        client.simple_query("select 1").await.unwrap();
    }
    let log = connection_log(&emu, &app).await;
    let logins: Vec<&LogRow> = log.iter().filter(|r| r.0 == "authenticated").collect();
    assert_eq!(logins.len(), 3, "{log:?}");
    // every session is IAM, and those that ended were logged as they disconnected
    assert!(log.iter().all(|r| r.2 == "IAM"), "{log:?}");
}

#[tokio::test]
async fn api_errors_are_aws_errors() {
    let emu = emulator(FaultSettings::default()).await;
    // (form, signing name, HTTP status, Code, part of Message)
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        Option<&'a str>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("Action", "GetClusterCredentials"),
                ("ClusterIdentifier", "nope"),
                ("DbUser", "awsuser"),
            ],
            Some("redshift"),
            404,
            "ClusterNotFound",
            "Cluster nope not found.",
        ),
        (
            vec![
                ("Action", "GetClusterCredentials"),
                ("ClusterIdentifier", "testbed"),
                ("DbUser", "awsuser"),
                ("DurationSeconds", "60"),
            ],
            Some("redshift"),
            400,
            "InvalidParameterValue",
            "The DurationSeconds value 60 is not valid",
        ),
        (
            vec![
                ("Action", "GetClusterCredentials"),
                ("ClusterIdentifier", "testbed"),
            ],
            Some("redshift"),
            400,
            "InvalidParameterValue",
            "DbUser",
        ),
        (
            vec![("Action", "DescribeClusters")],
            Some("redshift"),
            400,
            "InvalidAction",
            "DescribeClusters",
        ),
        (
            vec![
                ("Action", "GetClusterCredentials"),
                ("ClusterIdentifier", "testbed"),
                ("DbUser", "awsuser"),
            ],
            None,
            403,
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        ),
        (
            vec![
                ("Action", "GetClusterCredentials"),
                ("ClusterIdentifier", "testbed"),
                ("DbUser", "awsuser"),
            ],
            Some("redshift-serverless"),
            403,
            "SignatureDoesNotMatch",
            "Credential should be scoped to correct service: 'redshift'.",
        ),
    ];
    for (form, service, status, code, message) in cases {
        let reply = query(&emu, &form, service).await;
        assert_eq!(reply.status, status, "{form:?}: {}", reply.body);
        assert!(reply.body.starts_with("<ErrorResponse "), "{}", reply.body);
        assert_eq!(tag(&reply.body, "Type"), "Sender");
        assert_eq!(tag(&reply.body, "Code"), code, "{form:?}");
        assert!(
            tag(&reply.body, "Message").contains(message),
            "{}",
            reply.body
        );
        assert_eq!(tag(&reply.body, "RequestId"), reply.request_id);
    }

    let cases = [
        (
            serde_json::json!({"workgroupName": "other-wg"}),
            "RedshiftServerless.GetCredentials",
            "redshift-serverless",
            "ResourceNotFoundException",
            "Serverless workgroup other-wg not found.",
        ),
        (
            serde_json::json!({"workgroupName": "testbed-wg", "durationSeconds": 10}),
            "RedshiftServerless.GetCredentials",
            "redshift-serverless",
            "ValidationException",
            "durationSeconds",
        ),
        (
            serde_json::json!({"workgroupName": "testbed-wg"}),
            "RedshiftServerless.GetCredentials",
            "redshift",
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'redshift-serverless'.",
        ),
        (
            serde_json::json!({}),
            "RedshiftServerless.ListWorkgroups",
            "redshift-serverless",
            "UnknownOperationException",
            "ListWorkgroups",
        ),
    ];
    for (body, target, service, kind, message) in cases {
        let reply = json(&emu, target, body.clone(), service).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(answer["__type"], kind, "{body}");
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
    assert!(emu.running.issued_credentials().is_empty());
}

#[tokio::test]
async fn alter_user_rotates_the_password_of_new_logins() {
    let emu = emulator(FaultSettings::default()).await;
    let app = unique("rotation");
    let admin = login(&emu, "awsuser", PASSWORD, &app).await.unwrap();
    admin
        .simple_query("ALTER USER awsuser WITH PASSWORD 'Rotated-Passw0rd'")
        .await
        .unwrap();
    // the session that rotated stays; the old password no longer logs in, the new one does
    admin.simple_query("select 1").await.unwrap();
    let err = login(&emu, "awsuser", PASSWORD, &app).await.unwrap_err();
    assert_eq!(db_error(&err).0, "28P01");
    login(&emu, "awsuser", "Rotated-Passw0rd", &app)
        .await
        .unwrap();

    // extended protocol too; weak passwords are refused
    let bob = unique("bob");
    admin
        .execute(&format!("CREATE USER {bob} PASSWORD 'Bobs-Passw0rd'"), &[])
        .await
        .unwrap();
    let err = admin
        .simple_query(&format!("ALTER USER {bob} PASSWORD 'weak'"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22023");
    let bob_client = login(&emu, &bob, "Bobs-Passw0rd", &app).await.unwrap();
    let err = bob_client
        .simple_query("ALTER USER awsuser PASSWORD 'Bobs-Takeover1'")
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        ("42501".to_owned(), "permission denied".to_owned())
    );
    bob_client
        .simple_query(&format!("alter user {bob} password 'Bobs-Newer-Passw0rd'"))
        .await
        .unwrap();
    login(&emu, &bob, "Bobs-Newer-Passw0rd", &app)
        .await
        .unwrap();
    let err = admin
        .simple_query(&format!("CREATE USER {bob} PASSWORD 'Bobs-Passw0rd'"))
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42710");
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let emu = emulator(FaultSettings {
        idle_session_seconds: Some(1),
        ..FaultSettings::default()
    })
    .await;
    let app = unique("idle");
    let busy = login(&emu, "awsuser", PASSWORD, &app).await.unwrap();
    let idle = login(&emu, "awsuser", PASSWORD, &app).await.unwrap();
    // a statement running longer than the timeout is not idleness
    busy.simple_query("select pg_sleep(1.5)").await.unwrap();
    busy.simple_query("select 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(idle.simple_query("select 1").await.is_err());
    assert!(idle.is_closed());
    let log = connection_log(&emu, &app).await;
    let events: Vec<&str> = log.iter().map(|r| r.0.as_str()).collect();
    assert!(events.contains(&"disconnecting session"), "{log:?}");
    // the knob changes at run time
    let fresh = login(&emu, "awsuser", PASSWORD, &app).await.unwrap();
    fresh
        .simple_query("EMULATOR SET idle_session_seconds = none")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fresh.simple_query("select 1").await.unwrap();
}
