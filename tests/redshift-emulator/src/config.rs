//! Emulator configuration and the process-wide fault knobs.
//!
//! [`EmulatorConfig`] is what `main.rs` builds from flags and environment and what tests build
//! in-process. [`FaultKnobs`] holds the fault-injection settings every session reads (when it
//! runs an UNLOAD, while it sits idle, when the AWS API issues credentials); they start from
//! [`EmulatorConfig::faults`] and can be changed at run time with `EMULATOR SET ...` statements
//! sent through the emulator itself.
//!
//! May import: nothing of the crate.

use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// A string that never appears in Debug output or logs (passwords, AWS secrets).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value; call only where it is actually needed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// Fault-injection settings for UNLOAD (see the crate documentation for their meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultSettings {
    /// Sleep this long before executing each UNLOAD.
    pub unload_delay_ms: u64,
    /// Sleep this long after each FETCH of `fetch_rows` rows while an UNLOAD writes: a slow,
    /// progressive UNLOAD (its `sys_unload_history.unloaded_rows` grows while it runs).
    pub fetch_delay_ms: u64,
    /// Fail each UNLOAD as soon as this many data files have been written (no manifest).
    pub fail_after_files: Option<u64>,
    /// Drop the client's connection when an UNLOAD starts (after the delay).
    pub drop_connection_on_unload: bool,
    /// "Lose" the manifest: write the data files but no manifest, and still report success.
    pub skip_manifest: bool,
    /// Write the manifest, then delete it before reporting success.
    pub delete_manifest: bool,
    /// Write TIMESTAMP and TIMESTAMPTZ columns as Parquet INT96 (as some writers do) instead of
    /// INT64 microseconds.
    pub int96_timestamps: bool,
    /// Temporary database credentials issued from now on live this many seconds, whatever the
    /// API call's `DurationSeconds` asked (so a test can watch them expire); `None`: as asked.
    pub iam_credential_seconds: Option<u64>,
    /// Close a client session that has been idle (no statement running, nothing received) this
    /// many seconds, as Redshift's session timeout does; `None`: never.
    pub idle_session_seconds: Option<u64>,
}

/// The knobs shared by all sessions of one emulator: the current settings plus the start-up
/// values `EMULATOR RESET` returns to.
#[derive(Debug)]
pub struct FaultKnobs {
    initial: FaultSettings,
    current: Mutex<FaultSettings>,
}

impl FaultKnobs {
    /// Knobs starting (and resetting) to `initial`.
    pub fn new(initial: FaultSettings) -> Self {
        Self {
            current: Mutex::new(initial.clone()),
            initial,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultSettings> {
        // the settings are plain values: a panic elsewhere cannot leave them half-written
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the current settings.
    pub fn get(&self) -> FaultSettings {
        self.lock().clone()
    }

    /// Changes the current settings.
    pub fn update(&self, f: impl FnOnce(&mut FaultSettings)) {
        f(&mut self.lock());
    }

    /// Restores the start-up settings.
    pub fn reset(&self) {
        *self.lock() = self.initial.clone();
    }
}

/// Everything an emulator needs to start. Build with [`EmulatorConfig::new`] and the `with_*`
/// methods.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Address to listen on (`127.0.0.1:5439`; port 0 picks a free port).
    pub listen: String,
    /// The backend PostgreSQL, as a libpq-style URL or key=value string.
    pub pg_url: Secret,
    /// The one user clients log in as.
    pub user: String,
    /// That user's password.
    pub password: Secret,
    /// The one database clients may connect to; others get SQLSTATE 3D000.
    pub database: String,
    /// S3 endpoint (`http://127.0.0.1:9000` for a local server: path-style, HTTP allowed);
    /// `None` means AWS.
    pub s3_endpoint: Option<String>,
    /// Region used when the UNLOAD gives none.
    pub s3_region: String,
    /// S3 access key id; `None` reads `AWS_ACCESS_KEY_ID`.
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key; `None` reads `AWS_SECRET_ACCESS_KEY`.
    pub s3_secret_access_key: Option<Secret>,
    /// Number of slices PARALLEL ON spreads rows over.
    pub slices: usize,
    /// If > 0, flush a Parquet row group every this many rows (instead of by ROWGROUPSIZE).
    pub row_group_rows: usize,
    /// Rows per FETCH from the server-side cursor; also the unit PARALLEL ON deals out
    /// round-robin to slices.
    pub fetch_rows: usize,
    /// Fault knobs at start-up.
    pub faults: FaultSettings,
    /// Where to serve the AWS API double (Redshift `GetClusterCredentials[WithIAM]`, Redshift
    /// Serverless `GetCredentials`) over HTTP; `None`: not served. Port 0 picks a free port.
    pub aws_api_listen: Option<String>,
    /// The cluster identifier the Redshift API knows (others: `ClusterNotFound`).
    pub cluster_id: String,
    /// The Redshift Serverless workgroup the API knows (others: `ResourceNotFoundException`).
    pub workgroup: String,
    /// A custom domain name the APIs accept instead of the cluster id or workgroup.
    pub custom_domain_name: Option<String>,
    /// The cluster's AWS region: the one API requests must be signed for, and the region
    /// UNLOAD assumes for its bucket when the statement gives no `REGION`.
    pub region: String,
    /// The region every bucket is in (UNLOAD fails like Redshift when its region differs);
    /// `None`: `s3_region`.
    pub bucket_region: Option<String>,
}

impl EmulatorConfig {
    /// A configuration with Redshift-like defaults: listen on `127.0.0.1:5439`, user `awsuser`,
    /// database `dev`, region `us-east-1`, 4 slices.
    pub fn new(pg_url: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            listen: "127.0.0.1:5439".to_owned(),
            pg_url: Secret::new(pg_url),
            user: "awsuser".to_owned(),
            password: Secret::new(password),
            database: "dev".to_owned(),
            s3_endpoint: None,
            s3_region: "us-east-1".to_owned(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            slices: 4,
            row_group_rows: 0,
            fetch_rows: 1000,
            faults: FaultSettings::default(),
            aws_api_listen: None,
            cluster_id: "testbed".to_owned(),
            workgroup: "testbed-wg".to_owned(),
            custom_domain_name: None,
            region: "us-east-1".to_owned(),
            bucket_region: None,
        }
    }

    /// Serves the AWS API double on `listen` (`127.0.0.1:0` picks a free port).
    pub fn with_aws_api_listen(mut self, listen: impl Into<String>) -> Self {
        self.aws_api_listen = Some(listen.into());
        self
    }

    /// Sets the cluster identifier the Redshift API knows.
    pub fn with_cluster_id(mut self, cluster_id: impl Into<String>) -> Self {
        self.cluster_id = cluster_id.into();
        self
    }

    /// Sets the Redshift Serverless workgroup the API knows.
    pub fn with_workgroup(mut self, workgroup: impl Into<String>) -> Self {
        self.workgroup = workgroup.into();
        self
    }

    /// Sets the custom domain name the APIs accept.
    pub fn with_custom_domain_name(mut self, name: impl Into<String>) -> Self {
        self.custom_domain_name = Some(name.into());
        self
    }

    /// Sets the cluster's region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the region of every bucket.
    pub fn with_bucket_region(mut self, region: impl Into<String>) -> Self {
        self.bucket_region = Some(region.into());
        self
    }

    /// The region every bucket is in.
    pub fn bucket_region(&self) -> &str {
        self.bucket_region.as_deref().unwrap_or(&self.s3_region)
    }

    /// Sets the listen address.
    pub fn with_listen(mut self, listen: impl Into<String>) -> Self {
        self.listen = listen.into();
        self
    }

    /// Sets the user name.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the database name.
    pub fn with_database(mut self, database: impl Into<String>) -> Self {
        self.database = database.into();
        self
    }

    /// Sets the S3 endpoint.
    pub fn with_s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3_endpoint = Some(endpoint.into());
        self
    }

    /// Sets the default S3 region.
    pub fn with_s3_region(mut self, region: impl Into<String>) -> Self {
        self.s3_region = region.into();
        self
    }

    /// Sets explicit S3 credentials instead of the `AWS_*` environment variables.
    pub fn with_s3_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.s3_access_key_id = Some(access_key_id.into());
        self.s3_secret_access_key = Some(Secret::new(secret_access_key));
        self
    }

    /// Sets the number of slices.
    pub fn with_slices(mut self, slices: usize) -> Self {
        self.slices = slices;
        self
    }

    /// Sets the row-group row count knob (0 = size based).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows;
        self
    }

    /// Sets the rows per FETCH.
    pub fn with_fetch_rows(mut self, rows: usize) -> Self {
        self.fetch_rows = rows;
        self
    }

    /// Sets the start-up fault knobs.
    pub fn with_faults(mut self, faults: FaultSettings) -> Self {
        self.faults = faults;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let config = EmulatorConfig::new("postgres://u:pgsecret@h/db", "hunter2")
            .with_s3_credentials("AKID", "s3secret");
        let dbg = format!("{config:?}");
        for secret in ["pgsecret", "hunter2", "s3secret"] {
            assert!(!dbg.contains(secret), "{dbg}");
        }
        assert!(dbg.contains("AKID"));
    }

    #[test]
    fn knobs_reset_to_start_up_values() {
        let knobs = FaultKnobs::new(FaultSettings {
            unload_delay_ms: 5,
            ..FaultSettings::default()
        });
        knobs.update(|s| {
            s.unload_delay_ms = 50;
            s.fail_after_files = Some(1);
        });
        assert_eq!(knobs.get().fail_after_files, Some(1));
        knobs.reset();
        assert_eq!(knobs.get().unload_delay_ms, 5);
        assert_eq!(knobs.get().fail_after_files, None);
    }
}
