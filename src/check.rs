//! `redshift-flight check`: tries, before anyone starts serving, each credential and permission
//! the server needs, in the order the server uses them, and prints one line per check (`ok`,
//! `FAIL` with the fix, or `skip` when an earlier failure makes it meaningless):
//!
//! 1. Redshift: log in (password, IAM credentials or the secret) and run `SELECT 1`;
//! 2. S3: list the staging prefix (`s3:ListBucket`);
//! 3. S3: write and delete an object of the server's own state (`s3:PutObject`,
//!    `s3:DeleteObject`);
//! 4. Redshift: UNLOAD one row into the prefix with the configured role, key and region (the
//!    UNLOAD role's `s3:PutObject`, `kms:GenerateDataKey`);
//! 5. S3: read the UNLOAD's manifest and file (`s3:GetObject`, `kms:Decrypt`);
//! 6. S3: delete them (`s3:DeleteObject`).
//!
//! Imports: the parts of [`crate::server`] and what they are made of.

use std::fmt::Write as _;
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::aws::AwsError;
use crate::config::{Config, IamRole, RedshiftLogin};
use crate::plan::unload_sql;
use crate::redshift::RedshiftError;
use crate::server::{Parts, StartError, unload_options};
use crate::sql::Sql;
use crate::stage::{data_prefix, is_cross_region, new_run_id};
use crate::store::error_chain;

/// One check's outcome.
#[derive(Debug)]
enum Outcome {
    Ok(String),
    Fail { error: String, fix: String },
    Skip(&'static str),
}

/// The report: one line per check.
#[derive(Debug, Default)]
pub struct Report {
    lines: Vec<(String, Outcome)>,
}

impl Report {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.lines
            .iter()
            .all(|(_, outcome)| matches!(outcome, Outcome::Ok(_)))
    }

    fn push(&mut self, what: String, outcome: Outcome) -> bool {
        let ok = matches!(outcome, Outcome::Ok(_));
        self.lines.push((what, outcome));
        ok
    }

    /// The report as text, one check per line, fixes indented under failures.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (what, outcome) in &self.lines {
            let _ = match outcome {
                Outcome::Ok(detail) if detail.is_empty() => writeln!(out, "ok    {what}"),
                Outcome::Ok(detail) => writeln!(out, "ok    {what}: {detail}"),
                Outcome::Fail { error, fix } => {
                    writeln!(out, "FAIL  {what}: {error}\n      fix: {fix}")
                }
                Outcome::Skip(why) => writeln!(out, "skip  {what} ({why})"),
            };
        }
        out
    }
}

/// The fix for a Redshift failure of the login or `SELECT 1`.
fn redshift_fix(config: &Config, error: &RedshiftError) -> String {
    match error {
        RedshiftError::Credentials { source, .. } => match (&config.redshift.login, source.as_ref()) {
            (_, AwsError::Credentials(_)) => "give the server AWS credentials: AWS_PROFILE (with aws sso login), an instance profile, a task role, IRSA/Pod Identity, or aws_access_key_id".into(),
            (_, AwsError::NoRegion) => "set AWS_REGION, region in the AWS profile, or s3_region".into(),
            (RedshiftLogin::Iam(_), AwsError::Api { code, .. }) if code.contains("NotFound") => "check redshift_cluster_id / redshift_workgroup and the region".into(),
            (RedshiftLogin::Secret { .. }, AwsError::Api { code, .. }) if code.contains("NotFound") => "check redshift_secret_arn and the region".into(),
            (RedshiftLogin::Iam(iam), _) => match &iam.target {
                crate::config::IamTarget::Cluster(cluster) => format!("allow the server's IAM identity redshift:GetClusterCredentials (or redshift:GetClusterCredentialsWithIAM) on cluster {cluster}, its dbuser and dbname"),
                crate::config::IamTarget::Workgroup(workgroup) => format!("allow the server's IAM identity redshift-serverless:GetCredentials on workgroup {workgroup}"),
            },
            (RedshiftLogin::Secret { arn }, _) => format!("allow the server's IAM identity secretsmanager:GetSecretValue on {arn} (and kms:Decrypt of its key)"),
            (RedshiftLogin::Password { .. }, _) => "check the AWS configuration".into(),
        },
        RedshiftError::Authentication { .. } => match &config.redshift.login {
            RedshiftLogin::Password { .. } => "check redshift_user and redshift_password".into(),
            RedshiftLogin::Iam(_) => "the user must exist (or set redshift_auto_create) and the IAM policy must name it and the database".into(),
            RedshiftLogin::Secret { arn } => format!("the secret {arn} must hold the user's current password"),
        },
        RedshiftError::Unreachable { .. } => "check redshift_host, redshift_port, the cluster's security group and redshift_sslmode".into(),
        RedshiftError::PoolTimeout { .. } => "Redshift is busy: try again".into(),
        RedshiftError::Sql { .. } => "grant the user what the statement needs".into(),
    }
}

/// The IAM resource ARN of everything under the staging prefix.
fn prefix_arn(config: &Config) -> String {
    format!("arn:aws:s3:::{}/{}/*", config.s3.bucket, config.s3.prefix)
}

/// Runs every check against the configured Redshift and bucket.
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    let parts = match Parts::build(config).await {
        Ok(parts) => {
            report.push(
                "configuration and AWS set-up".into(),
                Outcome::Ok(String::new()),
            );
            parts
        }
        Err(error) => {
            let fix = match &error {
                StartError::Aws(AwsError::NoRegion) => {
                    "set s3_region, AWS_REGION, or region in the AWS profile"
                }
                StartError::Aws(_) => {
                    "give the server AWS credentials (profile, role, or aws_access_key_id)"
                }
                _ => "correct the configuration",
            };
            report.push(
                "configuration and AWS set-up".into(),
                Outcome::Fail {
                    error: error_chain(&error),
                    fix: fix.into(),
                },
            );
            return report;
        }
    };
    let redshift_ok = match parts.redshift.query(&Sql::from("SELECT 1")).await {
        Ok(_) => report.push(
            format!(
                "Redshift login and SELECT 1 at {}",
                parts.redshift.address()
            ),
            Outcome::Ok(parts.redshift.login_description()),
        ),
        Err(error) => report.push(
            format!(
                "Redshift login and SELECT 1 at {}",
                parts.redshift.address()
            ),
            Outcome::Fail {
                fix: redshift_fix(config, &error),
                error: error_chain(&error),
            },
        ),
    };
    let store = &parts.store;
    let bucket = &config.s3.bucket;
    let prefix = &config.s3.prefix;
    let list = store
        .list_with_delimiter(Some(&Path::from(prefix.as_str())))
        .await;
    report.push(
        format!("S3 list of s3://{bucket}/{prefix}/"),
        match list {
            Ok(_) => Outcome::Ok(String::new()),
            Err(error) => Outcome::Fail {
                error: error_chain(&error),
                fix: format!(
                    "allow the server's IAM identity s3:ListBucket on arn:aws:s3:::{bucket} (prefix {prefix}/); check s3_bucket, s3_region and s3_endpoint"
                ),
            },
        },
    );
    let run = format!("{prefix}/{}", new_run_id(SystemTime::now()));
    let state = Path::from(format!("{run}/check"));
    let write = store
        .put(&state, PutPayload::from_static(b"redshift-flight check"))
        .await;
    let write_ok = report.push(
        format!("S3 write of s3://{bucket}/{state}"),
        match write {
            Ok(_) => Outcome::Ok(String::new()),
            Err(error) => Outcome::Fail {
                error: error_chain(&error),
                fix: format!("allow the server's IAM identity s3:PutObject on {} (it keeps query and lease state there)", prefix_arn(config)),
            },
        },
    );
    if write_ok {
        delete_check(
            &mut report,
            store.as_ref(),
            &[state],
            config,
            "its own object",
        )
        .await;
    } else {
        report.push(
            format!("S3 delete of s3://{bucket}/{state}"),
            Outcome::Skip("nothing was written"),
        );
    }
    let unloaded = format!("{run}/");
    let what = format!(
        "UNLOAD of one row into s3://{bucket}/{}",
        data_prefix(&unloaded)
    );
    if !redshift_ok {
        report.push(what, Outcome::Skip("Redshift login failed"));
        return report;
    }
    let options = unload_options(config);
    let destination = format!("s3://{bucket}/{}", data_prefix(&unloaded));
    let unload = match unload_sql(&Sql::from("SELECT 1 AS rsf_check"), &destination, &options) {
        Ok(sql) => sql,
        Err(error) => {
            report.push(
                what,
                Outcome::Fail {
                    error: error.to_string(),
                    fix: "check unload_kms_key_id and unload_region".into(),
                },
            );
            return report;
        }
    };
    match parts.redshift.unload_counted(&unload).await {
        Ok(rows) => report.push(what, Outcome::Ok(format!("{rows} row"))),
        Err(error) => {
            let role = match &options.iam_role {
                IamRole::Default => "the cluster's default IAM role".to_string(),
                IamRole::Arn(arn) => format!("role {arn} (iam_role)"),
            };
            let mut fix = if is_cross_region(&error) {
                "the bucket is in another region than the cluster: set unload_region to the bucket's region".to_string()
            } else {
                format!(
                    "{role} must be associated with the cluster, trust redshift.amazonaws.com, and allow s3:PutObject on {}",
                    prefix_arn(config)
                )
            };
            if let Some(key) = &options.kms_key_id {
                let _ = write!(
                    fix,
                    "; with unload_kms_key_id, kms:GenerateDataKey and kms:Encrypt on key {key}"
                );
            }
            report.push(
                what,
                Outcome::Fail {
                    error: error_chain(&error),
                    fix,
                },
            );
            return report;
        }
    };
    let files: Result<Vec<Path>, _> = store
        .list(Some(&Path::from(unloaded.as_str())))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await;
    let files = match files {
        Ok(files) if !files.is_empty() => files,
        Ok(_) => {
            report.push(format!("S3 read of the UNLOAD's files under s3://{bucket}/{unloaded}"), Outcome::Fail {
                error: "no file found".into(),
                fix: "the UNLOAD reported success but wrote nothing the server can list: check that s3_bucket/s3_endpoint name the bucket Redshift writes to".into(),
            });
            return report;
        }
        Err(error) => {
            report.push(
                format!("S3 read of the UNLOAD's files under s3://{bucket}/{unloaded}"),
                Outcome::Fail {
                    error: error_chain(&error),
                    fix: format!(
                        "allow the server's IAM identity s3:ListBucket on arn:aws:s3:::{bucket}"
                    ),
                },
            );
            return report;
        }
    };
    let mut read_error = None;
    for file in &files {
        if let Err(error) = async { store.get(file).await?.bytes().await }.await {
            read_error = Some((file.clone(), error));
            break;
        }
    }
    report.push(
        format!(
            "S3 read of the UNLOAD's {} files under s3://{bucket}/{unloaded}",
            files.len()
        ),
        match read_error {
            None => Outcome::Ok(String::new()),
            Some((file, error)) => Outcome::Fail {
                error: format!("{file}: {}", error_chain(&error)),
                fix: format!(
                    "allow the server's IAM identity (or s3_role_arn) s3:GetObject on {}{}",
                    prefix_arn(config),
                    if options.kms_key_id.is_some() {
                        ", and kms:Decrypt on unload_kms_key_id"
                    } else {
                        ""
                    }
                ),
            },
        },
    );
    delete_check(
        &mut report,
        store.as_ref(),
        &files,
        config,
        "the UNLOAD's files",
    )
    .await;
    report
}

/// Deletes `paths` and reports it.
async fn delete_check(
    report: &mut Report,
    store: &dyn ObjectStore,
    paths: &[Path],
    config: &Config,
    what: &str,
) {
    let mut failure = None;
    for path in paths {
        if let Err(error) = store.delete(path).await {
            failure = Some(error);
            break;
        }
    }
    report.push(
        format!(
            "S3 delete of {what} under s3://{}/{}/",
            config.s3.bucket, config.s3.prefix
        ),
        match failure {
            None => Outcome::Ok(String::new()),
            Some(error) => Outcome::Fail {
                error: error_chain(&error),
                fix: format!(
                    "allow the server's IAM identity (or s3_role_arn) s3:DeleteObject on {}",
                    prefix_arn(config)
                ),
            },
        },
    );
}
