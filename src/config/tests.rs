//! Unit tests of the configuration: the seed's file unchanged, errors that name the key, defaults
//! and bounds, secrets in every form and never in `Debug` output.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

fn seed_json() -> serde_json::Value {
    serde_json::json!({
        "redshift_host": "example.redshift.amazonaws.com",
        "redshift_port": "5439",
        "redshift_database": "dev",
        "redshift_user": "awsuser",
        "redshift_password": "hunter2-password",
        "redshift_schema": "public",
        "s3_bucket": "b",
        "s3_region": "us-east-1",
        "s3_prefix": "fivetran-unload",
        "iam_role": "arn:aws:iam::123456789012:role/unload",
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "secret-key-value",
        "auto_schema_detection": "true",
        "enable_complete_resync": "false",
        "max_parallel_workers": "4"
    })
}

fn parse(value: serde_json::Value) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_json::from_value(value).unwrap();
    Config::try_from_raw(raw)
}

#[test]
fn seed_configuration_works_unchanged() {
    let config = parse(seed_json()).unwrap();
    assert_eq!(config.redshift.port, 5439);
    assert_eq!(config.performance.max_parallel_workers, 4);
    assert!(config.catalog.auto_schema_detection);
    assert!(!config.catalog.enable_complete_resync);
    assert_eq!(config.s3.prefix, "fivetran-unload");
    assert_eq!(config.listen.address, "127.0.0.1:8815".parse().unwrap());
    assert_eq!(
        config.redshift.sslmode,
        SslMode::VerifyFull,
        "certificates are verified for non-loopback hosts"
    );
    assert!(!config.listen.insecure);
    assert_eq!(config.redshift.pool_size, 0, "max_parallel_workers + 4");
    assert_eq!(config.redshift.pool_timeout, Duration::from_secs(30));
    assert_eq!(RawConfig::KEYS.len(), 66);
    assert!(config.redshift.databases.is_empty());
    assert!(config.staging.share_across_replicas);
    assert_eq!(config.staging.cluster_lease, Duration::from_secs(20));
    assert_eq!(config.staging.cluster_max_parallel_unloads, 0);
    assert!(config.flight_sql.extra_functions.is_empty());
    assert_eq!(config.flight_sql.direct_max_rows, 100_000);
    assert_eq!(config.flight_sql.poll_wait, Duration::from_secs(1));
}

#[test]
fn errors_name_the_key() {
    let mut json = seed_json();
    json["redshift_port"] = "abc".into();
    assert_eq!(
        parse(json).unwrap_err().to_string(),
        "redshift_port must be a port number, got 'abc'"
    );
    let mut json = seed_json();
    json["iam_role"] = "arn:aws:iam::12:role/x".into();
    assert!(
        parse(json)
            .unwrap_err()
            .to_string()
            .starts_with("iam_role must be")
    );
    let mut json = seed_json();
    json.as_object_mut().unwrap().remove("s3_bucket");
    assert!(
        parse(json)
            .unwrap_err()
            .to_string()
            .starts_with("s3_bucket is required")
    );
    let mut json = seed_json();
    json["max_parallel_workers"] = "0".into();
    assert!(parse(json).is_err());
    let mut json = seed_json();
    json["redshift_sslmode"] = "sometimes".into();
    assert!(
        parse(json)
            .unwrap_err()
            .to_string()
            .starts_with("redshift_sslmode must be")
    );
    let mut json = seed_json();
    json["tls_cert"] = "cert.pem".into();
    assert!(
        parse(json)
            .unwrap_err()
            .to_string()
            .starts_with("tls_key is required")
    );
}

#[test]
fn performance_keys_have_defaults_and_bounds() {
    let config = parse(seed_json()).unwrap();
    assert_eq!(config.staging.endpoint_rows, 1 << 20);
    assert_eq!(config.staging.snapshot_reuse, Some(Duration::ZERO));
    assert_eq!(config.performance.decode_threads, 0);
    assert_eq!(config.performance.stream_memory, Some(384 << 20));
    for (value, want) in [
        ("off", None),
        ("OFF", None),
        ("0", Some(Duration::ZERO)),
        ("30", Some(Duration::from_secs(30))),
    ] {
        let mut json = seed_json();
        json["snapshot_reuse_seconds"] = value.into();
        assert_eq!(parse(json).unwrap().staging.snapshot_reuse, want, "{value}");
    }
    for (key, bad) in [
        ("snapshot_reuse_seconds", "-1"),
        ("snapshot_reuse_seconds", "never"),
        ("endpoint_rows", "many"),
        ("decode_threads", "1000"),
        ("stream_memory_mb", "-5"),
        ("snapshot_reuse_scope", "everywhere"),
        ("cluster_lease_seconds", "1"),
        ("cluster_max_parallel_unloads", "-1"),
    ] {
        let mut json = seed_json();
        json[key] = bad.into();
        let error = parse(json).unwrap_err().to_string();
        assert!(error.starts_with(key), "{error}");
    }
}

#[test]
fn consumer_databases_are_a_checked_list() {
    let mut json = seed_json();
    json["redshift_databases"] = serde_json::json!(["sales_db", " Lake "]);
    let config = parse(json.clone()).unwrap();
    assert_eq!(config.redshift.databases, ["sales_db", "Lake"]);
    for bad in ["a.b", "DEV", "x,X", "q\"x"] {
        json["redshift_databases"] = serde_json::json!(bad);
        let err = parse(json.clone()).unwrap_err().to_string();
        assert!(err.contains("redshift_databases"), "{bad}: {err}");
    }
}

#[test]
fn unknown_keys_are_rejected() {
    let mut json = seed_json();
    json["redshfit_host"] = "typo".into();
    assert!(serde_json::from_value::<RawConfig>(json).is_err());
}

#[test]
fn ticket_secrets_are_long_lists_in_every_form() {
    use secrecy::ExposeSecret;
    let a = "a".repeat(32);
    let b = "b".repeat(40);
    let secrets = |config: Config| -> Vec<String> {
        config
            .auth
            .ticket_secrets
            .iter()
            .map(|s| s.expose_secret().to_string())
            .collect()
    };
    let mut json = seed_json();
    json["ticket_secret"] = format!(" {b} , {a} ").into();
    assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);
    let mut json = seed_json();
    json["ticket_secret"] = serde_json::json!([b, a]);
    assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);
    let mut json = seed_json();
    json["ticket_secret"] = serde_json::json!([b, "x,y"]);
    assert!(serde_json::from_value::<RawConfig>(json).is_err());
    assert!(secrets(parse(seed_json()).unwrap()).is_empty());

    let file = std::env::temp_dir().join(format!("rsf-secrets-{:x}", rand::random::<u64>()));
    std::fs::write(&file, format!("{b}\n\n{a}\n")).unwrap();
    let mut json = seed_json();
    json["ticket_secret_file"] = file.to_string_lossy().into_owned().into();
    assert_eq!(secrets(parse(json).unwrap()), [b.clone(), a.clone()]);

    // Short secrets are refused in every form, without showing them.
    let short = "short-secret-0123456789abcdef"; // 29 bytes
    for (key, value) in [
        ("ticket_secret", serde_json::json!(short)),
        ("ticket_secret", serde_json::json!(format!("{a},{short}"))),
        ("ticket_secret", serde_json::json!([a, short])),
        ("ticket_secret", serde_json::json!(",")),
    ] {
        let mut json = seed_json();
        json[key] = value.clone();
        let error = parse(json).unwrap_err().to_string();
        assert!(error.starts_with("ticket_secret must be"), "{error}");
        assert!(!error.contains(short) && !error.contains(&a), "{error}");
    }
    std::fs::write(&file, format!("{a}\n{short}\n")).unwrap();
    let mut json = seed_json();
    json["ticket_secret_file"] = file.to_string_lossy().into_owned().into();
    let error = parse(json).unwrap_err().to_string();
    assert!(error.starts_with("ticket_secret_file must be"), "{error}");
    assert!(error.contains("secret 2 of 2 is 29 bytes"), "{error}");
    assert!(!error.contains(short), "{error}");
    std::fs::remove_file(file).unwrap();
}

#[test]
fn sslmode_defaults_to_verify_full_except_on_loopback() {
    for (host, mode, want) in [
        ("example.redshift.amazonaws.com", None, SslMode::VerifyFull),
        ("10.0.0.5", None, SslMode::VerifyFull),
        ("localhost", None, SslMode::Prefer),
        ("127.0.0.1", None, SslMode::Prefer),
        ("::1", None, SslMode::Prefer),
        (
            "example.redshift.amazonaws.com",
            Some("require"),
            SslMode::Require,
        ),
        (
            "example.redshift.amazonaws.com",
            Some("disable"),
            SslMode::Disable,
        ),
        ("localhost", Some("verify-full"), SslMode::VerifyFull),
    ] {
        let mut json = seed_json();
        json["redshift_host"] = host.into();
        if let Some(mode) = mode {
            json["redshift_sslmode"] = mode.into();
        }
        assert_eq!(
            parse(json).unwrap().redshift.sslmode,
            want,
            "{host} {mode:?}"
        );
    }
}

#[test]
fn default_role_and_numbers_as_json_numbers() {
    let mut json = seed_json();
    json["iam_role"] = "default".into();
    json["redshift_port"] = 5439.into();
    json["auto_schema_detection"] = true.into();
    let config = parse(json).unwrap();
    assert_eq!(config.staging.iam_role, IamRole::Default);
}

#[test]
fn overlay_prefers_top() {
    let file = RawConfig {
        redshift_host: Some("file".into()),
        ..Default::default()
    };
    let flags = RawConfig {
        redshift_host: Some("flag".into()),
        ..Default::default()
    };
    assert_eq!(file.overlay(flags).redshift_host.as_deref(), Some("flag"));
}

#[test]
fn debug_output_hides_secrets() {
    let raw: RawConfig = serde_json::from_value(seed_json()).unwrap();
    let text = format!("{raw:?}");
    assert!(!text.contains("hunter2-password"));
    assert!(!text.contains("secret-key-value"));
    let config = Config::try_from_raw(raw).unwrap();
    let text = format!("{config:?}");
    assert!(!text.contains("hunter2-password"));
    assert!(!text.contains("secret-key-value"));
}

#[test]
fn several_faults_report_the_first_in_the_historical_order() {
    // Sections are validated key by key in one fixed order; which fault a broken configuration
    // reports must not depend on how the sections are laid out.
    let error = Config::try_from_raw(RawConfig::default())
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("redshift_port is required"), "{error}");
    // Section by section, the Redshift or S3 key would come first; historically it is the
    // listen address.
    let mut json = seed_json();
    json["redshift_user"] = "".into();
    json["s3_region"] = "".into();
    json["listen_address"] = "nowhere".into();
    json["keepalive_seconds"] = "0".into();
    let error = parse(json).unwrap_err().to_string();
    assert!(error.starts_with("listen_address must be"), "{error}");
}

#[test]
fn flight_sql_functions_are_names() {
    let mut json = seed_json();
    json["flight_sql_functions"] = "My_Udf, f2".into();
    let config = parse(json.clone()).unwrap();
    assert_eq!(config.flight_sql.extra_functions, vec!["my_udf", "f2"]);
    json["flight_sql_functions"] = "ok, pg_sleep(1)".into();
    let error = parse(json).unwrap_err().to_string();
    assert!(
        error.contains("flight_sql_functions") && error.contains("pg_sleep(1)"),
        "{error}"
    );
}

fn with(pairs: &[(&str, &str)], without: &[&str]) -> Result<Config, ConfigError> {
    let mut json = seed_json();
    for key in without {
        json.as_object_mut().unwrap().remove(*key);
    }
    for (key, value) in pairs {
        json[*key] = (*value).into();
    }
    parse(json)
}

fn invalid_key(result: Result<Config, ConfigError>) -> &'static str {
    match result {
        Err(ConfigError::Invalid { key, .. } | ConfigError::Missing { key, .. }) => key,
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn redshift_auth_modes_take_their_own_keys() {
    let config = with(&[], &[]).unwrap();
    assert!(matches!(
        config.redshift.login,
        RedshiftLogin::Password { ref user, .. } if user == "awsuser"
    ));

    let iam = with(
        &[
            ("redshift_auth", "IAM"),
            ("redshift_cluster_id", "prod-1"),
            ("redshift_auto_create", "true"),
            ("redshift_db_groups", "readers, etl"),
            ("redshift_iam_duration_seconds", "1800"),
        ],
        &["redshift_password"],
    )
    .unwrap();
    let RedshiftLogin::Iam(login) = iam.redshift.login else {
        panic!("iam")
    };
    assert_eq!(login.target, IamTarget::Cluster("prod-1".into()));
    assert_eq!(login.db_user.as_deref(), Some("awsuser"));
    assert!(login.auto_create);
    assert_eq!(login.db_groups, ["readers", "etl"]);
    assert_eq!(login.duration, Duration::from_secs(1800));

    let serverless = with(
        &[("redshift_auth", "iam"), ("redshift_workgroup", "wg")],
        &["redshift_password", "redshift_user"],
    )
    .unwrap();
    let RedshiftLogin::Iam(login) = serverless.redshift.login else {
        panic!("iam")
    };
    assert_eq!(login.target, IamTarget::Workgroup("wg".into()));
    assert_eq!(login.duration, Duration::from_secs(900));

    let secret = with(
        &[
            ("redshift_auth", "secret"),
            (
                "redshift_secret_arn",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:rs-AbC",
            ),
        ],
        &["redshift_password", "redshift_user"],
    )
    .unwrap();
    assert!(
        matches!(secret.redshift.login, RedshiftLogin::Secret { ref arn } if arn.ends_with("rs-AbC"))
    );
}

#[test]
fn redshift_auth_rejects_keys_of_other_modes_and_missing_ones() {
    let iam = [("redshift_auth", "iam"), ("redshift_cluster_id", "c")];
    // The stored password would be silently unused.
    assert_eq!(invalid_key(with(&iam, &[])), "redshift_password");
    assert_eq!(
        invalid_key(with(&[("redshift_auth", "iam")], &["redshift_password"])),
        "redshift_cluster_id"
    );
    assert_eq!(
        invalid_key(with(
            &[
                ("redshift_auth", "iam"),
                ("redshift_cluster_id", "c"),
                ("redshift_workgroup", "w")
            ],
            &["redshift_password"]
        )),
        "redshift_workgroup"
    );
    assert_eq!(
        invalid_key(with(
            &[
                ("redshift_auth", "iam"),
                ("redshift_workgroup", "w"),
                ("redshift_db_groups", "g")
            ],
            &["redshift_password", "redshift_user"]
        )),
        "redshift_db_groups"
    );
    assert_eq!(
        invalid_key(with(
            &[
                ("redshift_auth", "iam"),
                ("redshift_cluster_id", "c"),
                ("redshift_iam_duration_seconds", "60")
            ],
            &["redshift_password"]
        )),
        "redshift_iam_duration_seconds"
    );
    assert_eq!(
        invalid_key(with(&[("redshift_cluster_id", "c")], &[])),
        "redshift_cluster_id"
    );
    assert_eq!(
        invalid_key(with(
            &[("redshift_auth", "secret")],
            &["redshift_password", "redshift_user"]
        )),
        "redshift_secret_arn"
    );
    assert_eq!(
        invalid_key(with(
            &[("redshift_auth", "secret"), ("redshift_secret_arn", "s")],
            &["redshift_user"]
        )),
        "redshift_password"
    );
    assert_eq!(
        invalid_key(with(&[("redshift_auth", "kerberos")], &[])),
        "redshift_auth"
    );
    // A password in the wrong mode is named but never shown.
    let Err(error) = with(&iam, &[]) else {
        panic!()
    };
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn s3_role_region_and_unload_options() {
    let config = with(
        &[
            ("s3_role_arn", "arn:aws:iam::123456789012:role/reader"),
            ("s3_role_external_id", "ext-id-42"),
            ("unload_kms_key_id", "alias/staging"),
            ("unload_region", "eu-west-1"),
        ],
        &["s3_region"],
    )
    .unwrap();
    let role = config.s3.role.unwrap();
    assert_eq!(role.arn, "arn:aws:iam::123456789012:role/reader");
    assert_eq!(
        role.external_id
            .as_ref()
            .map(|id| id.expose_secret().to_string())
            .as_deref(),
        Some("ext-id-42")
    );
    assert!(!format!("{role:?}").contains("ext-id-42"));
    assert_eq!(role.session_name, "redshift-flight");
    assert_eq!(
        config.s3.region, None,
        "the region may come from the profile"
    );
    assert_eq!(
        config.staging.unload_kms_key_id.as_deref(),
        Some("alias/staging")
    );
    assert_eq!(config.staging.unload_region.as_deref(), Some("eu-west-1"));

    assert_eq!(
        invalid_key(with(&[("s3_role_arn", "reader")], &[])),
        "s3_role_arn"
    );
    assert_eq!(
        invalid_key(with(&[("s3_role_external_id", "xx")], &[])),
        "s3_role_external_id"
    );
    assert_eq!(
        invalid_key(with(&[("unload_region", "EU West")], &[])),
        "unload_region"
    );
    assert_eq!(
        invalid_key(with(&[("unload_kms_key_id", "k'ey")], &[])),
        "unload_kms_key_id"
    );
    let Err(error) = with(&[("s3_role_external_id", "the-external-secret")], &[]) else {
        panic!()
    };
    assert!(
        !error.to_string().contains("the-external-secret"),
        "{error}"
    );
}

#[test]
fn advertise_locations_are_flight_uris() {
    assert!(
        with(&[], &[])
            .unwrap()
            .listen
            .advertise_locations
            .is_empty()
    );
    let config = with(
        &[(
            "advertise_locations",
            "grpc+tls://replica-1.example:8815, grpc://10.0.0.2:8815",
        )],
        &[],
    )
    .unwrap();
    assert_eq!(
        config.listen.advertise_locations,
        ["grpc+tls://replica-1.example:8815", "grpc://10.0.0.2:8815"]
    );
    for bad in [
        "http://a:1",
        "grpc://",
        "grpc://host-without-port",
        "grpc://a:1/path",
    ] {
        assert_eq!(
            invalid_key(with(&[("advertise_locations", bad)], &[])),
            "advertise_locations",
            "{bad}"
        );
    }
}
