//! Turning one raw key (text) into a typed value, with an error that names the key, says what it
//! must be and never shows a secret's value.
//!
//! Why hand-written rather than serde attributes (`serde_with::DisplayFromStr`, `PickFirst`) or a
//! layering crate: the values arrive as text from three layers merged before anything is
//! interpreted, and every error must be [`ConfigError::Invalid`] with this key's own wording and
//! range ("a number of seconds from 1 to 3600") and a redacted value for secrets. Serde reports
//! "invalid digit found in string" with a position and checks no ranges, so using it would take a
//! translation layer longer than [`parse_number`] and [`parse_bool`] below.
//!
//! May import: `super::{ConfigError, raw, sections}` only.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::ConfigError;
use super::raw::{RawConfig, flag_name};
use super::sections::{IamRole, SslMode};

/// Shortest signing secret accepted, in bytes (HMAC-SHA256 keys of fewer bytes are guessable).
pub const MIN_SECRET_BYTES: usize = 32;

/// The error for a required `key` that has no value.
pub(super) fn missing(key: &'static str) -> ConfigError {
    ConfigError::Missing {
        key,
        env: RawConfig::env_name(key),
        flag: flag_name(key),
    }
}

/// The value of a required key (blank counts as missing).
pub(super) fn required(value: Option<String>, key: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(missing(key)),
    }
}

/// The value of an optional key (blank counts as left out).
pub(super) fn optional(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case; `default` when left out.
pub(super) fn parse_bool(
    value: Option<String>,
    key: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match optional(value) {
        None => Ok(default),
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                key,
                expected: "true or false",
                got: v,
            }),
        },
    }
}

/// A number within `range`; `default` when left out.
pub(super) fn parse_number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
    value: Option<String>,
    key: &'static str,
    expected: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError> {
    match optional(value) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<T>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                key,
                expected,
                got: v,
            }),
        },
    }
}

/// A number of seconds within `range`; `default` when left out.
pub(super) fn parse_seconds(
    value: Option<String>,
    key: &'static str,
    expected: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    parse_number(value, key, expected, default, range).map(Duration::from_secs)
}

/// `redshift_port`: required, 1 to 65535.
pub(super) fn port(value: Option<String>) -> Result<u16, ConfigError> {
    let text = required(value, "redshift_port")?;
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(ConfigError::Invalid {
            key: "redshift_port",
            expected: "a port number",
            got: text,
        }),
    }
}

/// `iam_role`: required, `default` or a comma-separated chain of role ARNs.
pub(super) fn iam_role(value: Option<String>) -> Result<IamRole, ConfigError> {
    let text = required(value, "iam_role")?;
    if text.trim().eq_ignore_ascii_case("default") {
        Ok(IamRole::Default)
    } else if text.split(',').all(|arn| is_valid_role_arn(arn.trim())) {
        Ok(IamRole::Arn(
            text.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        ))
    } else {
        Err(ConfigError::Invalid {
            key: "iam_role",
            expected: "'default' or an IAM role ARN like arn:aws:iam::123456789012:role/name (comma-separated to chain)",
            got: text,
        })
    }
}

pub(super) fn is_valid_role_arn(arn: &str) -> bool {
    // arn:aws:iam::<12 digits>:role/<name> (partitions aws, aws-cn, aws-us-gov).
    let Some(rest) = ["arn:aws:iam::", "arn:aws-cn:iam::", "arn:aws-us-gov:iam::"]
        .iter()
        .find_map(|p| arn.strip_prefix(p))
    else {
        return false;
    };
    let Some((account, role)) = rest.split_once(":role/") else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !role.is_empty()
        && role
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
}

/// `listen_address`: default `127.0.0.1:8815`.
pub(super) fn listen_address(value: Option<String>) -> Result<SocketAddr, ConfigError> {
    let text = optional(value).unwrap_or_else(|| "127.0.0.1:8815".to_string());
    text.trim().parse().map_err(|_| ConfigError::Invalid {
        key: "listen_address",
        expected: "an address like 127.0.0.1:8815",
        got: text.clone(),
    })
}

/// `advertise_locations`: comma-separated Flight URIs (`grpc://`, `grpc+tcp://`, `grpc+tls://`).
pub(super) fn advertise_locations(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(text) = optional(value) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(|uri| {
            let uri = uri.trim();
            let valid = ["grpc://", "grpc+tcp://", "grpc+tls://"]
                .iter()
                .find_map(|scheme| uri.strip_prefix(scheme))
                .is_some_and(|rest| {
                    !rest.is_empty()
                        && rest.contains(':')
                        && !rest.contains(|c: char| c.is_whitespace() || c == '/')
                });
            if valid {
                Ok(uri.to_string())
            } else {
                Err(ConfigError::Invalid {
                    key: "advertise_locations",
                    expected: "comma-separated Flight URIs like grpc+tls://replica-1.example:8815",
                    got: text.clone(),
                })
            }
        })
        .collect()
}

/// `metrics_address`: optional.
pub(super) fn metrics_address(value: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    match optional(value) {
        None => Ok(None),
        Some(text) => Ok(Some(text.trim().parse().map_err(|_| {
            ConfigError::Invalid {
                key: "metrics_address",
                expected: "an address like 127.0.0.1:9464",
                got: text.clone(),
            }
        })?)),
    }
}

/// `s3_endpoint`: optional, an http(s) URL.
pub(super) fn s3_endpoint(value: Option<String>) -> Result<Option<String>, ConfigError> {
    let endpoint = optional(value);
    if let Some(endpoint) = &endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(ConfigError::Invalid {
            key: "s3_endpoint",
            expected: "an http:// or https:// URL",
            got: endpoint.clone(),
        });
    }
    Ok(endpoint)
}

/// `aws_access_key_id` and `aws_secret_access_key`: both or neither.
pub(super) fn aws_keys(
    id: Option<String>,
    secret: Option<String>,
) -> Result<(Option<String>, Option<SecretString>), ConfigError> {
    let id = optional(id);
    let secret = optional(secret).map(SecretString::from);
    if id.is_some() != secret.is_some() {
        return Err(ConfigError::Invalid {
            key: "aws_secret_access_key",
            expected: "given together with aws_access_key_id (or both left out to use the AWS credential chain)",
            got: if secret.is_some() {
                "<set>"
            } else {
                "<missing>"
            }
            .to_string(),
        });
    }
    Ok((id, secret))
}

/// `s3_prefix`: default `redshift-flight`, without leading or trailing `/`.
pub(super) fn s3_prefix(value: Option<String>) -> Result<String, ConfigError> {
    let prefix = optional(value)
        .unwrap_or_else(|| "redshift-flight".to_string())
        .trim_matches('/')
        .to_string();
    if prefix.is_empty() || prefix.contains("//") || prefix.contains('\0') {
        return Err(ConfigError::Invalid {
            key: "s3_prefix",
            expected: "a non-empty key prefix such as redshift-flight/staging",
            got: prefix,
        });
    }
    Ok(prefix)
}

/// `redshift_sslmode`: default verify-full, or prefer when `host` is a loopback host.
pub(super) fn sslmode(value: Option<String>, host: &str) -> Result<SslMode, ConfigError> {
    Ok(match optional(value) {
        None if is_loopback_host(host) => SslMode::Prefer,
        // Redshift's certificates chain to public roots: verify them unless told otherwise.
        None => SslMode::VerifyFull,
        Some(mode) => match mode.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "redshift_sslmode",
                    expected: "disable, prefer, require or verify-full",
                    got: mode,
                });
            }
        },
    })
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `tls_cert` and `tls_key`: both or neither.
pub(super) fn tls(
    cert: Option<String>,
    key: Option<String>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (optional(cert), optional(key)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some((PathBuf::from(cert), PathBuf::from(key)))),
        (cert, _) => Err(missing(if cert.is_some() {
            "tls_key"
        } else {
            "tls_cert"
        })),
    }
}

/// `snapshot_reuse_scope`: `cluster` (the default, true) or `replica`.
pub(super) fn reuse_scope(value: Option<String>) -> Result<bool, ConfigError> {
    let Some(text) = optional(value) else {
        return Ok(true);
    };
    match text.trim() {
        "cluster" => Ok(true),
        "replica" => Ok(false),
        _ => Err(ConfigError::Invalid {
            key: "snapshot_reuse_scope",
            expected: "cluster or replica",
            got: text,
        }),
    }
}

/// `snapshot_reuse_seconds`: default 0, or `off` (`None`).
pub(super) fn snapshot_reuse(value: Option<String>) -> Result<Option<Duration>, ConfigError> {
    match optional(value) {
        Some(off) if off.trim().eq_ignore_ascii_case("off") => Ok(None),
        other => Ok(Some(Duration::from_secs(parse_number(
            other,
            "snapshot_reuse_seconds",
            "a number of seconds from 0 to 3600, or off",
            0,
            0..=3600,
        )?))),
    }
}

/// `stream_memory_mb` in bytes: default 384 MB, 0: unbounded (`None`).
pub(super) fn stream_memory(value: Option<String>) -> Result<Option<u64>, ConfigError> {
    Ok(
        match parse_number(
            value,
            "stream_memory_mb",
            "a number of MB from 0 to 1048576",
            384u64,
            0..=1_048_576,
        )? {
            0 => None,
            mb => Some(mb * 1024 * 1024),
        },
    )
}

/// `flight_sql_functions`: comma-separated function names (letters, digits, `_`), lower-cased.
pub(super) fn function_names(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(text) = optional(value) else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 127
            && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ConfigError::Invalid {
                key: "flight_sql_functions",
                expected: "comma-separated function names (letters, digits and _)",
                got: name.to_string(),
            });
        }
        names.push(name.to_ascii_lowercase());
    }
    Ok(names)
}

/// `redshift_databases`: comma-separated consumer database names, blanks dropped. A name may not
/// contain a dot (a namespace `database.schema` splits at its first dot), a double quote or a NUL,
/// nor be the connected database, nor be listed twice.
pub(super) fn databases(
    value: Option<String>,
    connected: &str,
) -> Result<Vec<String>, ConfigError> {
    let Some(text) = optional(value) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let valid = name.len() <= 127
            && !name.contains(['.', '"', '\0'])
            && !name.eq_ignore_ascii_case(connected)
            && !names.iter().any(|n| n.eq_ignore_ascii_case(name));
        if !valid {
            return Err(ConfigError::Invalid {
                key: "redshift_databases",
                expected: "comma-separated database names other than redshift_database, each once, without '.' or '\"'",
                got: name.to_string(),
            });
        }
        names.push(name.to_string());
    }
    Ok(names)
}

/// `auth_tokens`: comma-separated, blanks dropped.
pub(super) fn auth_tokens(value: Option<String>) -> Vec<SecretString> {
    optional(value)
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| SecretString::from(t.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The signing secrets of `ticket_secret` (comma-separated) or `ticket_secret_file` (one per
/// line), the signing one first; each must have [`MIN_SECRET_BYTES`]. Errors never show a secret.
pub(super) fn ticket_secrets(
    inline: Option<String>,
    file: Option<String>,
) -> Result<Vec<SecretString>, ConfigError> {
    let (key, secrets, got) = match (optional(inline), optional(file)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                key: "ticket_secret_file",
                expected: "left out when ticket_secret is given",
                got: "<set>".into(),
            });
        }
        (Some(text), None) => {
            let secrets: Vec<String> = text
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            ("ticket_secret", secrets, String::new())
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: PathBuf::from(&path),
                source,
            })?;
            let secrets: Vec<String> = text
                .lines()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            ("ticket_secret_file", secrets, path)
        }
        (None, None) => return Ok(Vec::new()),
    };
    let redacted = |what: String| {
        if got.is_empty() {
            what
        } else {
            format!("{got}: {what}")
        }
    };
    if secrets.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            expected: "at least one secret of at least 32 bytes",
            got: redacted("<empty>".into()),
        });
    }
    if let Some(i) = secrets.iter().position(|s| s.len() < MIN_SECRET_BYTES) {
        return Err(ConfigError::Invalid {
            key,
            expected: "secrets of at least 32 bytes each (e.g. openssl rand -hex 32)",
            got: redacted(format!(
                "secret {} of {} is {} bytes long",
                i + 1,
                secrets.len(),
                secrets[i].len()
            )),
        });
    }
    Ok(secrets.into_iter().map(SecretString::from).collect())
}
