//! Jobs: long Flight SQL queries answered through PollFlightInfo. Their state lives in S3 beside
//! the runs, so that any replica can answer a poll or a cancel, and the replica running a job
//! is the only one that writes it. The protocol (every replica of every version must agree):
//!
//! ```text
//! <s3_prefix>/<job id>/poll.json   the job's state, JSON (JobState below): written by the
//!                                  replica running the job when it is first answered as
//!                                  running, on a timer while it runs, and when it ends
//! <s3_prefix>/<job id>/lease       as a run's lease: expiry, Unix milliseconds as decimal text,
//!                                  renewed with every write of poll.json
//! <s3_prefix>/<job id>/cancel      empty; written by a replica asked to cancel a job it does not
//!                                  run; the running replica looks for it on its timer
//! ```
//!
//! A job id is a run id (creation time, then 64 random bits), so the sweeper treats a job's
//! folder as a run and deletes it once its lease has passed. A job's own data is staged as an
//! ordinary run under a run id of its own.
//!
//! The progress of a job's UNLOAD comes from Redshift's monitoring views, which list running
//! UNLOADs with the rows written so far ([`Stager::unload_progress_sql`]).

use std::time::SystemTime;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::{StageError, Stager, new_run_id};
use crate::plan::Plan;
use crate::redshift::RedshiftError;
use crate::sql::{Sql, sql};
use crate::store::StoreError;

/// Version of [`JobState`] this build writes and reads.
pub const JOB_STATE_VERSION: u32 = 1;

/// Characters of an UNLOAD statement compared with `sys_query_history.query_text` (which keeps
/// the first 4,000; fewer leave room for multi-byte characters).
const MATCHED_TEXT_CHARS: usize = 1000;

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    /// Its query is being staged.
    Running,
    /// Staged: `flight_info` is the final FlightInfo.
    Done,
    /// Failed: `error` is the status the client gets.
    Failed,
    /// Cancelled by the client.
    Cancelled,
}

/// The status a failed job answers with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobError {
    /// The gRPC status code.
    pub code: i32,
    /// The status message.
    pub message: String,
    /// The status details (`grpc-status-details-bin`), base64.
    pub details: String,
}

/// `poll.json`: a job's state as every replica reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// [`JOB_STATE_VERSION`].
    pub version: u32,
    /// Where the job is.
    pub state: JobPhase,
    /// Progress in [0, 1]: below 1 until done.
    pub progress: f64,
    /// Rows the UNLOAD had written at the last update, if known.
    pub rows_unloaded: Option<u64>,
    /// Redshift's estimate of the result's rows (EXPLAIN), if known.
    pub estimated_rows: Option<u64>,
    /// When the job started, Unix milliseconds.
    pub started_ms: i64,
    /// When the running replica last wrote this, Unix milliseconds: a job still running whose
    /// state has not been written for several update intervals lost its replica.
    pub updated_ms: i64,
    /// How often the running replica writes, milliseconds.
    pub update_interval_ms: u64,
    /// The running replica (an id of the process, for logs).
    pub owner: String,
    /// A FlightInfo, protobuf, base64: the schema and descriptor while running, the final
    /// FlightInfo (with its endpoints) when done.
    pub flight_info: String,
    /// The error of a failed job.
    pub error: Option<JobError>,
}

impl Stager {
    /// A new job id (a run id: the sweeper deletes the job's folder when its lease has passed).
    pub fn new_job_id(&self) -> String {
        new_run_id(SystemTime::now())
    }

    fn job_path(&self, job_id: &str, name: &str) -> Result<Path, StageError> {
        Ok(Path::from(format!("{}{name}", self.run_prefix(job_id)?)))
    }

    fn job_error(&self, job_id: &str, error: object_store::Error, path: &Path) -> StageError {
        StageError::RunState {
            run_id: job_id.to_string(),
            source: StoreError::from_object_store(error, &self.settings.bucket, path.as_ref()),
        }
    }

    /// Writes a job's state and extends its lease to `until`.
    pub async fn write_job(
        &self,
        job_id: &str,
        state: &JobState,
        until: SystemTime,
    ) -> Result<(), StageError> {
        let path = self.job_path(job_id, "poll.json")?;
        let body = serde_json::to_vec(state).unwrap_or_default();
        let (written, lease) = tokio::join!(
            self.store.put(&path, PutPayload::from(body)),
            self.renew_run(job_id, until)
        );
        written.map_err(|e| self.job_error(job_id, e, &path))?;
        lease
    }

    /// A job's state; `None` when there is none (never published, or swept) or it cannot be
    /// read as this version's (logged).
    pub async fn read_job(&self, job_id: &str) -> Result<Option<JobState>, StageError> {
        let path = self.job_path(job_id, "poll.json")?;
        let bytes = match self.store.get(&path).await {
            Ok(result) => result
                .bytes()
                .await
                .map_err(|e| self.job_error(job_id, e, &path))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.job_error(job_id, e, &path)),
        };
        match serde_json::from_slice::<JobState>(&bytes) {
            Ok(state) if state.version == JOB_STATE_VERSION => Ok(Some(state)),
            Ok(state) => {
                tracing::warn!(
                    job_id,
                    version = state.version,
                    "job state of another version; treated as gone"
                );
                Ok(None)
            }
            Err(error) => {
                tracing::warn!(job_id, %error, "unreadable job state; treated as gone");
                Ok(None)
            }
        }
    }

    /// Asks the replica running a job to cancel it.
    pub async fn request_job_cancel(&self, job_id: &str) -> Result<(), StageError> {
        let path = self.job_path(job_id, "cancel")?;
        self.store
            .put(&path, PutPayload::from_static(b""))
            .await
            .map_err(|e| self.job_error(job_id, e, &path))?;
        Ok(())
    }

    /// Whether a job's cancellation was asked for.
    pub async fn job_cancel_requested(&self, job_id: &str) -> Result<bool, StageError> {
        let path = self.job_path(job_id, "cancel")?;
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.job_error(job_id, e, &path)),
        }
    }

    /// The query that reads how many rows the running UNLOAD of `plan` has written so far:
    /// Redshift's `SYS_UNLOAD_HISTORY` lists running UNLOADs (status `running`) with
    /// `unloaded_rows`, and `SYS_QUERY_HISTORY` holds their text, whose start (the UNLOAD of this
    /// plan's SELECT into this server's staging prefix, up to the run id) names the UNLOAD
    /// without its run id. Two identical queries running at once are told apart only by which
    /// started last, which is as good as a progress estimate needs. `None` when the statement
    /// cannot be built or has no recognisable destination.
    pub fn unload_progress_sql(&self, plan: &Plan) -> Option<Sql> {
        let any_run = self.run_prefix(&new_run_id(SystemTime::now())).ok()?;
        let statement = self.unload_sql(plan, &any_run).ok()?;
        let destination = format!(
            ") TO 's3://{}/{}/",
            self.settings.bucket, self.settings.prefix
        );
        let text = statement.as_str();
        let end = text.find(&destination)? + destination.len();
        let head: String = text[..end].chars().take(MATCHED_TEXT_CHARS).collect();
        let length = head.chars().count() as i128;
        Some(sql!(
            "SELECT u.unloaded_rows FROM sys_unload_history u \
             JOIN sys_query_history q ON q.query_id = u.query_id \
             WHERE LOWER(u.status) = 'running' AND LEFT(q.query_text, ",
            Sql::int(length),
            ") = ",
            Sql::literal(&head).ok()?,
            " ORDER BY u.start_time DESC, u.query_id DESC LIMIT 1"
        ))
    }

    /// Runs [`Stager::unload_progress_sql`]'s query: the rows written so far, or `None` when no
    /// such UNLOAD runs (not started yet, finished, or answered without UNLOAD).
    pub async fn unloaded_rows(&self, query: &Sql) -> Result<Option<u64>, RedshiftError> {
        let rows = self.warehouse.query(query).await?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten())
            .and_then(|value| value.trim().parse().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replicas of other versions read and write this: do not change without a new version.
    #[test]
    fn the_job_state_format_is_pinned() {
        let state = JobState {
            version: JOB_STATE_VERSION,
            state: JobPhase::Failed,
            progress: 0.5,
            rows_unloaded: Some(10),
            estimated_rows: None,
            started_ms: 1,
            updated_ms: 2,
            update_interval_ms: 1000,
            owner: "ab".into(),
            flight_info: String::new(),
            error: Some(JobError {
                code: 3,
                message: "bad".into(),
                details: "AA==".into(),
            }),
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "version": 1, "state": "failed", "progress": 0.5, "rows_unloaded": 10,
                "estimated_rows": null, "started_ms": 1, "updated_ms": 2,
                "update_interval_ms": 1000, "owner": "ab", "flight_info": "",
                "error": {"code": 3, "message": "bad", "details": "AA=="}
            })
        );
        assert_eq!(serde_json::from_value::<JobState>(json).unwrap(), state);
        for (phase, text) in [
            (JobPhase::Running, "running"),
            (JobPhase::Done, "done"),
            (JobPhase::Cancelled, "cancelled"),
        ] {
            assert_eq!(serde_json::to_value(phase).unwrap(), text);
        }
    }
}
