//! The command line: configuration precedence and validation, `tables`, `plan`, and start-up
//! failures, run as a real process.

use std::process::{Command, Output};

use crate::common;
use crate::common::{config_json, pg, unique};

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_redshift-flight"));
    for (key, _) in std::env::vars() {
        if key.starts_with("REDSHIFT_FLIGHT_") {
            command.env_remove(key);
        }
    }
    command
}

/// A configuration file, removed when dropped.
struct TempConfig(std::path::PathBuf);

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_config(extra: &[(&str, &str)]) -> TempConfig {
    let path = std::env::temp_dir().join(format!("rsf-config-{:016x}.json", rand::random::<u64>()));
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&config_json(extra)).unwrap(),
    )
    .unwrap();
    TempConfig(path)
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn invalid_values_name_their_key_from_file_env_and_flag() {
    let config = write_config(&[("redshift_port", "abc")]);
    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .arg("tables")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("redshift_port must be a port number, got 'abc'"),
        "{err}"
    );

    let config = write_config(&[]);
    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .env("REDSHIFT_FLIGHT_MAX_PARALLEL_WORKERS", "many")
        .arg("tables")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(err.contains("max_parallel_workers must be"), "{err}");

    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .env(
            "REDSHIFT_FLIGHT_IAM_ROLE",
            "arn:aws:iam::123456789012:role/ok",
        )
        .args(["tables", "--iam-role", "not-an-arn"])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(
        err.contains("iam_role must be"),
        "flag wins over env: {err}"
    );

    let out = bin().args(["tables"]).output().unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("is required"), "{err}");
}

#[tokio::test]
async fn tables_and_plan_print_what_would_be_served() {
    let schema = unique("cli");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.\"O'Brien\" (id int primary key, \"Note\" varchar(10), at time);"
        ))
        .await
        .unwrap();
    let config = write_config(&[("redshift_schema", &schema)]);
    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .arg("tables")
        .output()
        .unwrap();
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        stdout.contains(&format!("{schema}.O'Brien\t3 columns")),
        "{stdout}"
    );

    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .args(["plan", "O'Brien"])
        .output()
        .unwrap();
    let (stdout, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        stdout.starts_with(&format!(
            "UNLOAD ('SELECT \"id\", \"Note\", CAST(\"at\" AS VARCHAR) AS \"at\" FROM \"{schema}\".\"O''Brien\"') TO 's3://"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("FORMAT AS PARQUET MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 256 MB"),
        "{stdout}"
    );
    let secret = common::tb("AWS_SECRET_ACCESS_KEY");
    let password = common::tb("TESTBED_REDSHIFT_PASSWORD");
    assert!(!stdout.contains(&secret) && !stdout.contains(&password) && !err.contains(&password));
}

#[test]
fn serve_exits_non_zero_naming_what_failed() {
    let config = write_config(&[("redshift_port", "1")]);
    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .arg("serve")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("cannot reach Redshift at"), "{err}");

    let config = write_config(&[("s3_endpoint", "http://127.0.0.1:1")]);
    let out = bin()
        .arg("--config")
        .arg(&config.0)
        .arg("serve")
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert!(!out.status.success());
    assert!(err.contains("cannot list s3://"), "{err}");
}
