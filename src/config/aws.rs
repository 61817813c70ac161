//! The AWS keys: how the server logs in to Redshift (`redshift_auth` and the keys of its mode),
//! the role it assumes for S3 (`s3_role_arn`), and UNLOAD's encryption and region options. A key
//! of another mode than the one chosen is an error rather than silently unused, so a half-edited
//! configuration is caught at start-up.
//!
//! May import: `super::{ConfigError, sections, validate}` only.

use secrecy::SecretString;

use super::ConfigError;
use super::sections::{AssumedRole, IamLogin, IamTarget, RedshiftLogin};
use super::validate::{is_valid_role_arn, missing, optional, parse_bool, parse_seconds, required};

/// The keys that decide the Redshift login, as given.
#[derive(Default)]
pub(super) struct LoginKeys {
    pub(super) auth: Option<String>,
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) cluster_id: Option<String>,
    pub(super) workgroup: Option<String>,
    pub(super) auto_create: Option<String>,
    pub(super) db_groups: Option<String>,
    pub(super) duration: Option<String>,
    pub(super) secret_arn: Option<String>,
}

/// A key that belongs to another `redshift_auth` mode (or another IAM target) than the one set.
fn out_of_mode(key: &'static str, value: String, secret: bool, why: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        expected: why,
        got: if secret { "<redacted>".into() } else { value },
    }
}

/// Fails if any of `keys` has a value.
fn left_out<const N: usize>(
    keys: [(&'static str, Option<String>, bool); N],
    why: &'static str,
) -> Result<(), ConfigError> {
    for (key, value, secret) in keys {
        if let Some(value) = optional(value) {
            return Err(out_of_mode(key, value, secret, why));
        }
    }
    Ok(())
}

/// A name Redshift and AWS accept as an identifier here: letters, digits and `_-.$@+=,:/`.
fn plain_name(
    key: &'static str,
    expected: &'static str,
    value: String,
) -> Result<String, ConfigError> {
    let trimmed = value.trim();
    if !trimmed.is_empty()
        && trimmed.len() <= 2048
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.$@+=,:/".contains(&b))
    {
        Ok(trimmed.to_string())
    } else {
        Err(ConfigError::Invalid {
            key,
            expected,
            got: value,
        })
    }
}

/// `redshift_auth` and the keys of its mode.
pub(super) fn redshift_login(mut keys: LoginKeys) -> Result<RedshiftLogin, ConfigError> {
    let mode = optional(keys.auth.take()).map(|m| m.trim().to_ascii_lowercase());
    match mode.as_deref() {
        None | Some("password") => {
            left_out(
                [
                    ("redshift_cluster_id", keys.cluster_id, false),
                    ("redshift_workgroup", keys.workgroup, false),
                    ("redshift_secret_arn", keys.secret_arn, false),
                ],
                "left out unless redshift_auth is iam or secret",
            )?;
            left_out(
                [
                    ("redshift_auto_create", keys.auto_create, false),
                    ("redshift_db_groups", keys.db_groups, false),
                    ("redshift_iam_duration_seconds", keys.duration, false),
                ],
                "left out unless redshift_auth is iam",
            )?;
            let user = required(keys.user, "redshift_user")?;
            let password = required(keys.password, "redshift_password")?;
            Ok(RedshiftLogin::Password {
                user,
                password: SecretString::from(password),
            })
        }
        Some("iam") => iam_login(keys).map(RedshiftLogin::Iam),
        Some("secret") => {
            left_out(
                [
                    ("redshift_user", keys.user, false),
                    ("redshift_password", keys.password, true),
                    ("redshift_cluster_id", keys.cluster_id, false),
                ],
                "left out when redshift_auth is secret (the secret holds the user and password)",
            )?;
            left_out(
                [
                    ("redshift_workgroup", keys.workgroup, false),
                    ("redshift_auto_create", keys.auto_create, false),
                    ("redshift_db_groups", keys.db_groups, false),
                    ("redshift_iam_duration_seconds", keys.duration, false),
                ],
                "left out when redshift_auth is secret",
            )?;
            let arn = required(keys.secret_arn, "redshift_secret_arn")?;
            let arn = plain_name(
                "redshift_secret_arn",
                "a Secrets Manager secret ARN or name",
                arn,
            )?;
            Ok(RedshiftLogin::Secret { arn })
        }
        Some(_) => Err(ConfigError::Invalid {
            key: "redshift_auth",
            expected: "password, iam or secret",
            got: mode.unwrap_or_default(),
        }),
    }
}

fn iam_login(keys: LoginKeys) -> Result<IamLogin, ConfigError> {
    left_out(
        [
            ("redshift_password", keys.password, true),
            ("redshift_secret_arn", keys.secret_arn, false),
        ],
        "left out when redshift_auth is iam (the password is temporary and comes from Redshift)",
    )?;
    let duration = parse_seconds(
        keys.duration,
        "redshift_iam_duration_seconds",
        "a number of seconds from 900 to 3600",
        900,
        900..=3600,
    )?;
    let name = "an identifier: letters, digits and _-.";
    match (optional(keys.cluster_id), optional(keys.workgroup)) {
        (Some(cluster), None) => {
            let auto_create = parse_bool(keys.auto_create, "redshift_auto_create", false)?;
            let db_groups = match optional(keys.db_groups) {
                None => Vec::new(),
                Some(list) => list
                    .split(',')
                    .map(|group| {
                        plain_name(
                            "redshift_db_groups",
                            "comma-separated group names",
                            group.to_string(),
                        )
                    })
                    .collect::<Result<_, _>>()?,
            };
            let db_user = optional(keys.user)
                .map(|user| plain_name("redshift_user", name, user))
                .transpose()?;
            Ok(IamLogin {
                target: IamTarget::Cluster(plain_name("redshift_cluster_id", name, cluster)?),
                db_user,
                auto_create,
                db_groups,
                duration,
            })
        }
        (None, Some(workgroup)) => {
            left_out(
                [
                    ("redshift_user", keys.user, false),
                    ("redshift_auto_create", keys.auto_create, false),
                    ("redshift_db_groups", keys.db_groups, false),
                ],
                "left out with redshift_workgroup (Redshift Serverless derives the user from the IAM identity)",
            )?;
            Ok(IamLogin {
                target: IamTarget::Workgroup(plain_name("redshift_workgroup", name, workgroup)?),
                db_user: None,
                auto_create: false,
                db_groups: Vec::new(),
                duration,
            })
        }
        (Some(_), Some(workgroup)) => Err(out_of_mode(
            "redshift_workgroup",
            workgroup,
            false,
            "left out when redshift_cluster_id is set (one is a provisioned cluster, the other Serverless)",
        )),
        (None, None) => Err(missing("redshift_cluster_id")),
    }
}

/// `s3_role_arn`, `s3_role_external_id` and `s3_role_session_name`.
pub(super) fn s3_role(
    arn: Option<String>,
    external_id: Option<String>,
    session_name: Option<String>,
) -> Result<Option<AssumedRole>, ConfigError> {
    let Some(arn) = optional(arn) else {
        left_out(
            [
                ("s3_role_external_id", external_id, true),
                ("s3_role_session_name", session_name, false),
            ],
            "left out unless s3_role_arn is set",
        )?;
        return Ok(None);
    };
    if !is_valid_role_arn(arn.trim()) {
        return Err(ConfigError::Invalid {
            key: "s3_role_arn",
            expected: "an IAM role ARN like arn:aws:iam::123456789012:role/name",
            got: arn,
        });
    }
    let external_id = match optional(external_id) {
        Some(id) if (2..=1224).contains(&id.len()) => Some(SecretString::from(id)),
        Some(_) => {
            return Err(ConfigError::Invalid {
                key: "s3_role_external_id",
                expected: "2 to 1224 characters",
                got: "<redacted>".into(),
            });
        }
        None => None,
    };
    let session_name = match optional(session_name) {
        None => "redshift-flight".to_string(),
        Some(name)
            if (2..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@-_".contains(&b)) =>
        {
            name
        }
        Some(name) => {
            return Err(ConfigError::Invalid {
                key: "s3_role_session_name",
                expected: "2 to 64 letters, digits or +=,.@-_",
                got: name,
            });
        }
    };
    Ok(Some(AssumedRole {
        arn: arn.trim().to_string(),
        external_id,
        session_name,
    }))
}

/// An AWS region name such as `us-east-1`, for `key`.
pub(super) fn region(
    key: &'static str,
    value: Option<String>,
) -> Result<Option<String>, ConfigError> {
    match optional(value) {
        None => Ok(None),
        Some(region)
            if region.len() <= 64
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') =>
        {
            Ok(Some(region))
        }
        Some(region) => Err(ConfigError::Invalid {
            key,
            expected: "an AWS region such as us-east-1",
            got: region,
        }),
    }
}

/// `unload_kms_key_id`: a key id, key ARN, alias name or alias ARN.
pub(super) fn kms_key_id(value: Option<String>) -> Result<Option<String>, ConfigError> {
    optional(value)
        .map(|key| {
            plain_name(
                "unload_kms_key_id",
                "a KMS key id, key ARN or alias (alias/name)",
                key,
            )
        })
        .transpose()
}
