//! Redshift's UNLOAD monitoring, kept in the backend so that any session can read it: every UNLOAD
//! gets a row in `sys_query_history` (`query_type` `UNLOAD`, the statement in `query_text`, at most
//! 4,000 characters) and one in `sys_unload_history` (`unloaded_location`, `file_format`) when it
//! starts, both with status `running`. While it runs, `unloaded_rows`, `unloaded_files_count` and
//! `unloaded_files_size` follow what it has written (at most every [`REPORT_EVERY`]); when it
//! ends, the statuses become `completed` / `success`, or `aborted` with `failed` or `canceled` and
//! the error message. The tables are created by [`crate::compat`].
//!
//! The rows are written on a connection of the emulator's own, outside the UNLOAD's transaction,
//! so that other sessions see them at once. Monitoring is best effort, as Redshift's is: when the
//! backend cannot be reached for it, the UNLOAD runs unrecorded (and a warning is logged).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

use crate::config::Secret;
use crate::error::StatementError;

/// How often a running UNLOAD's counts are written.
pub const REPORT_EVERY: Duration = Duration::from_millis(100);

/// Longest `query_text` kept (Redshift keeps the first 4,000 characters).
const MAX_QUERY_TEXT: usize = 4000;

/// Redshift's `user_id` of the emulator's one user (the first user Redshift creates is 100).
const USER_ID: i32 = 100;

/// What an UNLOAD has written so far: the writer adds, the reporter reads.
#[derive(Debug, Default)]
pub(crate) struct UnloadProgress {
    rows: AtomicU64,
    files: AtomicU64,
    bytes: AtomicU64,
}

impl UnloadProgress {
    /// `rows` more rows were written.
    pub(crate) fn add_rows(&self, rows: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// One more data file of `bytes` was completed.
    pub(crate) fn add_file(&self, bytes: u64) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Rows, files, bytes.
    fn counts(&self) -> [i64; 3] {
        [&self.rows, &self.files, &self.bytes].map(|c| c.load(Ordering::Relaxed) as i64)
    }
}

/// The monitoring writer of one emulator.
#[derive(Debug)]
pub(crate) struct History {
    pg_url: Secret,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

/// An UNLOAD about to run, as the monitoring views describe it.
#[derive(Debug)]
pub(crate) struct UnloadStart<'a> {
    /// The whole statement.
    pub(crate) text: &'a str,
    /// The destination, `s3://bucket/prefix`.
    pub(crate) location: &'a str,
    /// `parquet` or `text` (Redshift's file_format values are lowercase words).
    pub(crate) file_format: &'a str,
    /// The database the session is connected to.
    pub(crate) database: &'a str,
    /// The backend process running it.
    pub(crate) session_id: i32,
}

impl History {
    /// A writer over the backend at `pg_url` (connected when first needed).
    pub(crate) fn new(pg_url: Secret) -> Self {
        Self {
            pg_url,
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// The emulator's own backend connection (also used by [`crate::connlog`]).
    pub(crate) async fn client(&self) -> Result<Arc<Client>, tokio_postgres::Error> {
        let mut slot = self.client.lock().await;
        if let Some(client) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(client));
        }
        let (client, connection) = tokio_postgres::connect(self.pg_url.expose(), NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "monitoring connection ended");
            }
        });
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Records an UNLOAD as running and starts reporting `progress`; `None` when the backend
    /// cannot record it (the UNLOAD runs anyway).
    pub(crate) async fn begin(
        &self,
        start: &UnloadStart<'_>,
        progress: Arc<UnloadProgress>,
    ) -> Option<UnloadRecord> {
        let text: String = start.text.chars().take(MAX_QUERY_TEXT).collect();
        let inserted = async {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "WITH q AS ( \
                       INSERT INTO public.sys_query_history (user_id, query_id, session_id, \
                         database_name, query_type, status, result_cache_hit, start_time, query_text) \
                       VALUES ($1, nextval('public.redshift_emulator_query_id'), $2, $3, 'UNLOAD', \
                         'running', false, timezone('UTC', clock_timestamp()), $4) \
                       RETURNING query_id, start_time) \
                     INSERT INTO public.sys_unload_history (user_id, query_id, session_id, \
                       database_name, status, start_time, file_format, compression_type, \
                       unloaded_location, unloaded_rows, unloaded_files_count, unloaded_files_size) \
                     SELECT $1, query_id, $2, $3, 'running', start_time, $5, 'snappy', $6, 0, 0, 0 \
                     FROM q RETURNING query_id",
                    &[
                        &USER_ID,
                        &start.session_id,
                        &start.database,
                        &text,
                        &start.file_format,
                        &start.location,
                    ],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>((client, row.get::<_, i64>(0)))
        }
        .await;
        let (client, query_id) = match inserted {
            Ok(done) => done,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record the UNLOAD in sys_unload_history");
                return None;
            }
        };
        let reporter = tokio::spawn(report(Arc::clone(&client), query_id, Arc::clone(&progress)));
        Some(UnloadRecord {
            client,
            query_id,
            started: Instant::now(),
            progress,
            reporter,
            finished: false,
        })
    }
}

/// Writes the counts of a running UNLOAD whenever they changed, every [`REPORT_EVERY`].
async fn report(client: Arc<Client>, query_id: i64, progress: Arc<UnloadProgress>) {
    let mut last = [0i64; 3];
    loop {
        tokio::time::sleep(REPORT_EVERY).await;
        let now = progress.counts();
        if now == last {
            continue;
        }
        let [rows, files, bytes] = now;
        let updated = client
            .execute(
                "UPDATE public.sys_unload_history SET unloaded_rows = $2, \
                 unloaded_files_count = $3, unloaded_files_size = $4 WHERE query_id = $1",
                &[&query_id, &rows, &files, &bytes],
            )
            .await;
        if let Err(e) = updated {
            tracing::warn!(error = %e, query_id, "cannot update sys_unload_history");
            return;
        }
        last = now;
    }
}

/// A recorded UNLOAD; [`UnloadRecord::finish`] records how it ended. Dropped unfinished (the
/// client's connection went away mid-statement), it is recorded as aborted.
#[derive(Debug)]
pub(crate) struct UnloadRecord {
    client: Arc<Client>,
    query_id: i64,
    started: Instant,
    progress: Arc<UnloadProgress>,
    reporter: tokio::task::JoinHandle<()>,
    finished: bool,
}

/// How an UNLOAD ended, in the statuses of the two views.
#[derive(Debug, Clone, Copy)]
struct End {
    unload_status: &'static str,
    query_status: &'static str,
}

impl UnloadRecord {
    /// Records the end of the UNLOAD.
    pub(crate) async fn finish(mut self, result: &Result<u64, StatementError>) {
        self.finished = true;
        self.reporter.abort();
        let (end, message) = match result {
            Ok(_) => (
                End {
                    unload_status: "completed",
                    query_status: "success",
                },
                None,
            ),
            Err(StatementError::Cancelled) => (
                End {
                    unload_status: "aborted",
                    query_status: "canceled",
                },
                Some(StatementError::Cancelled.to_string()),
            ),
            Err(e) => (
                End {
                    unload_status: "aborted",
                    query_status: "failed",
                },
                Some(e.to_string()),
            ),
        };
        record_end(
            Arc::clone(&self.client),
            self.query_id,
            self.started.elapsed(),
            self.progress.counts(),
            end,
            message,
        )
        .await;
    }
}

impl Drop for UnloadRecord {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.reporter.abort();
        let end = End {
            unload_status: "aborted",
            query_status: "canceled",
        };
        tokio::spawn(record_end(
            Arc::clone(&self.client),
            self.query_id,
            self.started.elapsed(),
            self.progress.counts(),
            end,
            Some("the client's connection closed while the UNLOAD ran".to_owned()),
        ));
    }
}

/// Writes the end of an UNLOAD into both views.
async fn record_end(
    client: Arc<Client>,
    query_id: i64,
    elapsed: Duration,
    [rows, files, bytes]: [i64; 3],
    end: End,
    message: Option<String>,
) {
    let micros = elapsed.as_micros().min(i64::MAX as u128) as i64;
    let written = client
        .execute(
            "WITH u AS ( \
               UPDATE public.sys_unload_history SET status = $2, \
                 end_time = timezone('UTC', clock_timestamp()), duration = $3, \
                 unloaded_rows = $4, unloaded_files_count = $5, unloaded_files_size = $6, \
                 error_message = $7 \
               WHERE query_id = $1) \
             UPDATE public.sys_query_history SET status = $8, \
               end_time = timezone('UTC', clock_timestamp()), elapsed_time = $3, \
               execution_time = $3, error_message = $7 \
             WHERE query_id = $1",
            &[
                &query_id,
                &end.unload_status,
                &micros,
                &rows,
                &files,
                &bytes,
                &message,
                &end.query_status,
            ],
        )
        .await;
    if let Err(e) = written {
        tracing::warn!(error = %e, query_id, "cannot record the end of the UNLOAD");
    }
}
