//! UNLOAD: run a SELECT through a server-side cursor and write Redshift-shaped Parquet to S3.
//!
//! The steps follow what Redshift does and rejects:
//! 1. parse and validate the statement ([`parse`]); reject `LIMIT` in the outermost SELECT;
//! 2. open a transaction (or a savepoint inside the client's transaction) with `DateStyle` ISO,
//!    `TimeZone` UTC and shortest-exact float output, and `DECLARE` a `NO SCROLL` cursor;
//! 3. `FETCH` [`EmulatorConfig::fetch_rows`](crate::EmulatorConfig) rows at a time; the first
//!    row description decides the Parquet schema and the type rejections ([`convert`]);
//! 4. check the destination (not empty without ALLOWOVERWRITE/CLEANPATH; CLEANPATH deletes);
//! 5. deal the chunks round-robin to the slices (PARALLEL ON) or to one serial stream, each
//!    written through parquet's `AsyncArrowWriter` into an S3 multipart upload, SNAPPY, split at
//!    MAXFILESIZE; only one chunk of rows is in memory at a time;
//! 6. write the MANIFEST (if asked and there were rows), close the cursor, commit.
//!
//! While it writes, the rows and completed files are counted in an
//! [`UnloadProgress`](crate::history::UnloadProgress) that `sys_unload_history` reports
//! ([`crate::history`]); the `fetch_delay_ms` knob sleeps after each FETCH, so that a test can
//! watch a long UNLOAD progress.
//!
//! File names: PARALLEL ON `<prefix>0000_part_00.parquet` (slice, part); PARALLEL OFF
//! `<prefix>000.parquet`, `<prefix>001.parquet`, ...; `EXTENSION 'ext'` replaces `.parquet`.

pub mod convert;
mod int96;
pub mod parse;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use parquet::arrow::AsyncArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use pgwire::messages::response::TransactionStatus;
use serde::Serialize;
use tokio::sync::Notify;

use crate::backend::{Backend, BackendError};
use crate::config::{EmulatorConfig, FaultSettings};
use crate::error::StatementError;
use crate::history::UnloadProgress;
use crate::sql;
use convert::{Column, arrow_schema, column_from_field, rows_to_batch};
use parse::{Authorization, ManifestKind, UnloadStatement, parse_unload};

/// Redshift's message for LIMIT in the outermost SELECT.
pub const LIMIT_NOT_SUPPORTED: &str = "Limit clause is not supported in the outermost select";
/// Redshift's message when the destination already holds objects.
pub const DESTINATION_NOT_EMPTY: &str = "Specified unload destination on S3 is not empty. Consider using a different bucket / prefix, manually removing the target files in S3, or using the ALLOWOVERWRITE option.";

const CURSOR: &str = "redshift_emulator_unload";
const SAVEPOINT: &str = "redshift_emulator_unload";

/// Cancellation of a running UNLOAD, set by a CancelRequest.
#[derive(Debug, Default)]
pub(crate) struct CancelFlag {
    cancelled: AtomicBool,
    notify: Notify,
}

impl CancelFlag {
    /// Marks the running statement cancelled.
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Clears the flag before a new statement.
    pub(crate) fn reset(&self) {
        self.cancelled.store(false, Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StatementError> {
        if self.cancelled.load(Ordering::SeqCst) {
            Err(StatementError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps, returning early with an error if cancelled.
    pub(crate) async fn sleep(&self, d: Duration) -> Result<(), StatementError> {
        let notified = self.notify.notified();
        self.check()?;
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = notified => Err(StatementError::Cancelled),
        }
    }
}

/// What an UNLOAD needs from the emulator.
#[derive(Debug)]
pub(crate) struct UnloadEnv<'a> {
    pub(crate) config: &'a EmulatorConfig,
    pub(crate) faults: FaultSettings,
    pub(crate) cancel: &'a CancelFlag,
    /// What has been written so far (reported in `sys_unload_history`).
    pub(crate) progress: Arc<UnloadProgress>,
}

fn lost(e: BackendError) -> StatementError {
    StatementError::BackendLost(e.to_string())
}

fn s3_err(e: object_store::Error) -> StatementError {
    StatementError::S3(e.to_string())
}

/// The backend session setting that holds the count `pg_last_unload_count()` returns (the
/// compatibility function of the same name reads it, see [`crate::compat`]).
pub const LAST_UNLOAD_COUNT_SETTING: &str = "redshift_emulator.last_unload_count";

/// What `pg_last_unload_count()` reports after an UNLOAD ended with `result`, following
/// Redshift: the rows unloaded on success; unchanged (`None`) when the statement failed on a
/// syntax error or missing privileges (SQLSTATE class 42); 0 when it failed while unloading.
pub(crate) fn count_after(result: &Result<u64, StatementError>) -> Option<u64> {
    match result {
        Ok(rows) => Some(*rows),
        Err(StatementError::Syntax(_)) | Err(StatementError::BackendLost(_)) => None,
        Err(StatementError::Backend(info)) if info.code.starts_with("42") => None,
        Err(_) => Some(0),
    }
}

/// Stores `rows` as the session's last UNLOAD count in the backend session, where
/// `pg_last_unload_count()` reads it. A session whose transaction already failed keeps the
/// previous value (nothing can run there until ROLLBACK).
pub(crate) async fn record_count(backend: &mut Backend, rows: u64) -> Result<(), StatementError> {
    if backend.status == TransactionStatus::Error {
        return Ok(());
    }
    let recorded = backend
        .simple(&format!(
            "SELECT pg_catalog.set_config('{LAST_UNLOAD_COUNT_SETTING}', '{rows}', false)"
        ))
        .await
        .map_err(lost)?;
    if let Err(e) = recorded {
        tracing::warn!(error = %e.message, "cannot record pg_last_unload_count()");
    }
    Ok(())
}

/// An UNLOAD that parsed and passed the checks Redshift makes before it runs anything.
#[derive(Debug)]
pub(crate) struct PreparedUnload {
    st: UnloadStatement,
    select: String,
}

impl PreparedUnload {
    /// The destination as `sys_unload_history.unloaded_location` shows it: `s3://bucket/prefix`.
    pub(crate) fn location(&self) -> String {
        format!(
            "s3://{}/{}",
            self.st.destination.bucket, self.st.destination.prefix
        )
    }

    /// The output format as `sys_unload_history.file_format` shows it.
    pub(crate) fn file_format(&self) -> &'static str {
        match self.st.format {
            parse::UnloadFormat::Text => "text",
            parse::UnloadFormat::Csv => "csv",
            parse::UnloadFormat::Json => "json",
            parse::UnloadFormat::Parquet => "parquet",
        }
    }
}

/// Parses and validates one UNLOAD. A failure here is a syntax error or a rejection of the
/// statement itself (Redshift leaves `pg_last_unload_count()` unchanged then).
pub(crate) fn prepare(sql_text: &str) -> Result<PreparedUnload, StatementError> {
    let st = parse_unload(sql_text).map_err(|e| StatementError::Syntax(e.message))?;
    st.validate().map_err(StatementError::Rejected)?;
    let select = st
        .select
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace())
        .to_owned();
    if sql::has_outer_limit(&select).map_err(|e| StatementError::Syntax(e.to_string()))? {
        return Err(StatementError::Rejected(LIMIT_NOT_SUPPORTED.to_owned()));
    }
    // The SELECT reads consumer databases by three-part names as any statement does.
    let select = crate::catalog_sql::rewrite_relations(&select);
    Ok(PreparedUnload { st, select })
}

/// Executes a prepared UNLOAD on `backend`; returns the number of rows unloaded.
pub(crate) async fn execute(
    backend: &mut Backend,
    prepared: &PreparedUnload,
    env: &UnloadEnv<'_>,
) -> Result<u64, StatementError> {
    let PreparedUnload { st, select } = prepared;
    let store = make_store(st, env.config)?;
    tracing::info!(
        bucket = %st.destination.bucket,
        prefix = %st.destination.prefix,
        parallel = st.parallel,
        manifest = ?st.manifest,
        encrypted = ?st.encrypted,
        kms_key_id = ?st.kms_key_id,
        "UNLOAD"
    );

    // a transaction of our own, or a savepoint inside the client's
    let own_transaction = backend.status == TransactionStatus::Idle;
    let begin = if own_transaction {
        "BEGIN".to_owned()
    } else {
        format!("SAVEPOINT {SAVEPOINT}")
    };
    backend
        .simple(&begin)
        .await
        .map_err(lost)?
        .map_err(StatementError::Backend)?;

    let result = run_in_transaction(backend, st, select, Arc::clone(&store), env).await;

    let end = match (&result, own_transaction) {
        (Ok(_), true) => "COMMIT".to_owned(),
        (Err(_), true) => "ROLLBACK".to_owned(),
        // nothing the SELECT did needs to survive; the settings must not leak
        (_, false) => format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"),
    };
    if !matches!(result, Err(StatementError::BackendLost(_))) {
        let closed = backend.simple(&end).await.map_err(lost)?;
        if let (Ok(_), Err(e)) = (&result, closed) {
            return Err(StatementError::Backend(e));
        }
    }
    result
}

async fn run_in_transaction(
    backend: &mut Backend,
    st: &UnloadStatement,
    select: &str,
    store: Arc<dyn ObjectStore>,
    env: &UnloadEnv<'_>,
) -> Result<u64, StatementError> {
    let setup = format!(
        "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, MDY'; \
         SET LOCAL extra_float_digits = 1; SET LOCAL IntervalStyle = 'postgres'; \
         DECLARE {CURSOR} NO SCROLL CURSOR FOR {select}"
    );
    backend
        .simple(&setup)
        .await
        .map_err(lost)?
        .map_err(StatementError::Backend)?;

    let fetch = format!(
        "FETCH FORWARD {} FROM {CURSOR}",
        env.config.fetch_rows.max(1)
    );
    let first = backend
        .fetch(&fetch)
        .await
        .map_err(lost)?
        .map_err(StatementError::Backend)?;
    let description = first.description.ok_or_else(|| {
        StatementError::Rejected("the UNLOAD query returns no columns".to_owned())
    })?;
    let mut columns = Vec::with_capacity(description.fields.len());
    for field in &description.fields {
        let bytea_kind = if field.type_id == convert::BYTEA_OID {
            source_domain(backend, field.table_id, field.column_id).await?
        } else {
            None
        };
        columns.push(column_from_field(field, bytea_kind.as_deref())?);
    }
    let schema = arrow_schema(&columns);

    prepare_destination(&store, st).await?;
    let files = FileSet::new(st, env, Arc::clone(&store), Arc::clone(&schema));
    let (mut files, outcome) =
        write_all(backend, &fetch, first.rows, &columns, &schema, files, env).await;
    let written = match outcome {
        Ok(()) => files.finish().await,
        Err(e) => {
            files.abort().await;
            Err(e)
        }
    }?;
    if let Some(kind) = st.manifest
        && !written.is_empty()
    {
        if env.faults.skip_manifest {
            tracing::info!("not writing the manifest (skip_manifest)");
        } else {
            write_manifest(&store, st, kind, &columns, &written).await?;
            if env.faults.delete_manifest {
                tracing::info!("deleting the manifest just written (delete_manifest)");
                store
                    .delete(&key_path(&manifest_key(st)))
                    .await
                    .map_err(s3_err)?;
            }
        }
    }
    backend
        .simple(&format!("CLOSE {CURSOR}"))
        .await
        .map_err(lost)?
        .map_err(StatementError::Backend)?;
    Ok(written.iter().map(|f| f.rows).sum())
}

/// The key of an UNLOAD's manifest.
fn manifest_key(st: &UnloadStatement) -> String {
    format!("{}manifest", st.destination.prefix)
}

/// For a bytea column read straight from a table, the name of its domain (`geometry`,
/// `varbyte`), so the rejection names the Redshift type.
async fn source_domain(
    backend: &mut Backend,
    table_id: i32,
    column_id: i16,
) -> Result<Option<String>, StatementError> {
    if table_id == 0 {
        return Ok(None);
    }
    let rows = backend
        .simple(&format!(
            "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
             WHERE a.attrelid = {} AND a.attnum = {column_id}",
            table_id as u32
        ))
        .await
        .map_err(lost)?
        .map_err(StatementError::Backend)?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| r.into_iter().next().flatten())
        .filter(|t| t == "geometry" || t == "varbyte"))
}

/// Aborts the writer task when the UNLOAD is dropped (cancelled).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches, converts and writes every row. Fetching runs here while the rows are converted and the
/// Parquet files encoded and uploaded on a task of their own, so the two overlap (as a cluster's
/// slices write in parallel). Returns the files, for `finish` or `abort`.
async fn write_all(
    backend: &mut Backend,
    fetch: &str,
    first_rows: Vec<Vec<Option<String>>>,
    columns: &[Column],
    schema: &SchemaRef,
    mut files: FileSet,
    env: &UnloadEnv<'_>,
) -> (FileSet, Result<(), StatementError>) {
    if env.faults.fail_after_files == Some(0) {
        return (files, Err(injected_failure(0)));
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, Vec<Vec<Option<String>>>)>(2);
    let (schema, columns) = (Arc::clone(schema), columns.to_vec());
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        while let Some((chunk, rows)) = rx.recv().await {
            let written = match rows_to_batch(&schema, &columns, &rows) {
                Ok(batch) => files.write(chunk, &batch).await,
                Err(e) => Err(e),
            };
            if let Err(e) = written {
                return (files, Err(e));
            }
        }
        (files, Ok(()))
    }));
    let read = async {
        let mut rows = first_rows;
        let mut chunk = 0usize;
        while !rows.is_empty() {
            env.cancel.check()?;
            let last = rows.len() < env.config.fetch_rows.max(1);
            if tx.send((chunk, rows)).await.is_err() {
                // The writer failed; its error is the one to report.
                break;
            }
            chunk += 1;
            if last {
                break;
            }
            if env.faults.fetch_delay_ms > 0 {
                env.cancel
                    .sleep(Duration::from_millis(env.faults.fetch_delay_ms))
                    .await?;
            }
            rows = backend
                .fetch(fetch)
                .await
                .map_err(lost)?
                .map_err(StatementError::Backend)?
                .rows;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let (files, written) = match (&mut writer.0).await {
        Ok(done) => done,
        Err(e) => panic!("the UNLOAD writer task failed: {e}"),
    };
    (files, written.and(read))
}

fn injected_failure(files: u64) -> StatementError {
    StatementError::S3(format!(
        "We encountered an internal error. Please try again.,Status 500,Error InternalError (injected by the Redshift emulator after {files} data file(s): fail_after_files)"
    ))
}

/// Redshift's error for a bucket in another region than the cluster's (UNLOAD without REGION).
pub const BUCKET_IN_OTHER_REGION: &str = "The S3 bucket addressed by the query is in a different region from this cluster.,Status 301,Error PermanentRedirect";
/// S3's error for a bucket addressed in the wrong region (UNLOAD with a wrong REGION).
pub const BUCKET_NEEDS_OTHER_ENDPOINT: &str = "The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.,Status 301,Error PermanentRedirect";

/// Fails like Redshift when the UNLOAD's region (its REGION, else the cluster's) is not the
/// bucket's.
fn check_region(st: &UnloadStatement, config: &EmulatorConfig) -> Result<(), StatementError> {
    let bucket_region = config.bucket_region();
    match &st.region {
        None if config.region != bucket_region => {
            Err(StatementError::S3(BUCKET_IN_OTHER_REGION.to_owned()))
        }
        Some(region) if region != bucket_region => {
            Err(StatementError::S3(BUCKET_NEEDS_OTHER_ENDPOINT.to_owned()))
        }
        _ => Ok(()),
    }
}

/// Builds the S3 client for the destination bucket: in the bucket's region, every object (data
/// files and manifest) written with SSE-S3 as Redshift does by default, SSE-KMS with
/// `KMS_KEY_ID ... ENCRYPTED`, the bucket's default with `ENCRYPTED AUTO`.
fn make_store(
    st: &UnloadStatement,
    config: &EmulatorConfig,
) -> Result<Arc<dyn ObjectStore>, StatementError> {
    check_region(st, config)?;
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&st.destination.bucket)
        .with_region(config.bucket_region())
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(10),
            ..RetryConfig::default()
        });
    if let Some(endpoint) = &config.s3_endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false);
    }
    let env_var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (key, secret, token) = match &st.authorization {
        Authorization::AccessKeys {
            access_key_id,
            secret_access_key,
            session_token,
        } => (
            Some(access_key_id.clone()),
            Some(secret_access_key.clone()),
            session_token.clone(),
        ),
        // IAM roles: the emulator writes with its own credentials
        Authorization::DefaultRole | Authorization::Roles(_) => (
            config
                .s3_access_key_id
                .clone()
                .or_else(|| env_var("AWS_ACCESS_KEY_ID")),
            config
                .s3_secret_access_key
                .as_ref()
                .map(|s| s.expose().to_owned())
                .or_else(|| env_var("AWS_SECRET_ACCESS_KEY")),
            env_var("AWS_SESSION_TOKEN"),
        ),
    };
    let (Some(key), Some(secret)) = (key, secret) else {
        return Err(StatementError::S3(
            "the Redshift emulator has no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
        ));
    };
    builder = builder
        .with_access_key_id(key)
        .with_secret_access_key(secret);
    if let Some(token) = token {
        builder = builder.with_token(token);
    }
    builder = match (&st.kms_key_id, st.encrypted) {
        (Some(key), _) => builder.with_sse_kms_encryption(key),
        (None, Some(parse::Encrypted::Auto)) => builder,
        (None, _) => {
            let key = "aws_server_side_encryption"
                .parse::<object_store::aws::AmazonS3ConfigKey>()
                .map_err(|e| StatementError::S3(e.to_string()))?;
            builder.with_config(key, "AES256")
        }
    };
    let store = builder
        .build()
        .map_err(|e| StatementError::S3(e.to_string()))?;
    Ok(Arc::new(store))
}

/// The object path for a full key.
fn key_path(key: &str) -> Path {
    Path::from(key)
}

/// Lists the objects whose key starts with `prefix` (a raw S3 key prefix, not a directory).
async fn list_prefix(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> Result<Vec<Path>, StatementError> {
    let dir = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
    let dir_path = (!dir.is_empty()).then(|| Path::from(dir));
    let all: Vec<_> = store
        .list(dir_path.as_ref())
        .try_collect()
        .await
        .map_err(s3_err)?;
    Ok(all
        .into_iter()
        .map(|m| m.location)
        .filter(|p| p.as_ref().starts_with(prefix.trim_start_matches('/')))
        .collect())
}

async fn prepare_destination(
    store: &Arc<dyn ObjectStore>,
    st: &UnloadStatement,
) -> Result<(), StatementError> {
    let existing = list_prefix(store, &st.destination.prefix).await?;
    if st.clean_path {
        for path in &existing {
            store.delete(path).await.map_err(s3_err)?;
        }
    } else if !existing.is_empty() && !st.allow_overwrite {
        return Err(StatementError::Rejected(DESTINATION_NOT_EMPTY.to_owned()));
    }
    Ok(())
}

/// A data file that has been completely written.
#[derive(Debug, Clone)]
pub(crate) struct WrittenFile {
    key: String,
    rows: u64,
    content_length: u64,
}

/// The Parquet writer of one file: parquet's Arrow writer, or the INT96 one when the knob
/// `int96_timestamps` is on and the file has a timestamp column.
enum FileWriter {
    Arrow(Box<AsyncArrowWriter<BufWriter>>),
    Int96(Box<int96::Int96Writer>),
}

impl FileWriter {
    fn size(&self) -> usize {
        match self {
            Self::Arrow(w) => w.bytes_written() + w.in_progress_size(),
            Self::Int96(w) => w.bytes_written() + w.in_progress_size(),
        }
    }

    async fn write(&mut self, batch: &RecordBatch) -> Result<(), StatementError> {
        match self {
            Self::Arrow(w) => w.write(batch).await,
            Self::Int96(w) => w.write(batch).await,
        }
        .map_err(|e| StatementError::Parquet(e.to_string()))
    }

    async fn close(self) -> Result<(), StatementError> {
        match self {
            Self::Arrow(w) => w.close().await.map(|_| ()),
            Self::Int96(w) => w.close().await,
        }
        .map_err(|e| StatementError::Parquet(e.to_string()))
    }

    fn into_inner(self) -> BufWriter {
        match self {
            Self::Arrow(w) => (*w).into_inner(),
            Self::Int96(w) => w.into_inner(),
        }
    }
}

struct OpenFile {
    writer: FileWriter,
    key: String,
    rows: u64,
}

/// The output stream of one slice (or the one serial stream).
struct Slice {
    index: usize,
    next_part: usize,
    open: Option<OpenFile>,
    /// growth in bytes caused by the last batch, to split before exceeding MAXFILESIZE
    last_growth: usize,
}

/// All output files of one UNLOAD.
struct FileSet {
    store: Arc<dyn ObjectStore>,
    schema: SchemaRef,
    prefix: String,
    extension: String,
    parallel: bool,
    max_file_size: u64,
    props: WriterProperties,
    slices: Vec<Slice>,
    written: Vec<WrittenFile>,
    fail_after_files: Option<u64>,
    /// Set when timestamps are written as INT96: the row-group limit that writer applies.
    int96: Option<int96::RowGroupLimit>,
    /// Rows and files written so far.
    progress: Arc<UnloadProgress>,
}

impl FileSet {
    fn new(
        st: &UnloadStatement,
        env: &UnloadEnv<'_>,
        store: Arc<dyn ObjectStore>,
        schema: SchemaRef,
    ) -> Self {
        let slice_count = if st.parallel {
            env.config.slices.max(1)
        } else {
            1
        };
        let row_group_bytes = st.row_group_size.unwrap_or(parse::MIN_ROW_GROUP_SIZE) as usize;
        let mut props = WriterProperties::builder().set_compression(Compression::SNAPPY);
        props = if env.config.row_group_rows > 0 {
            props
                .set_max_row_group_row_count(Some(env.config.row_group_rows))
                .set_max_row_group_bytes(None)
        } else {
            props
                .set_max_row_group_row_count(None)
                .set_max_row_group_bytes(Some(row_group_bytes))
        };
        let extension = match &st.extension {
            Some(ext) => format!(".{}", ext.trim_start_matches('.')),
            None => ".parquet".to_owned(),
        };
        Self {
            store,
            schema,
            prefix: st.destination.prefix.clone(),
            extension,
            parallel: st.parallel,
            max_file_size: st.max_file_size.unwrap_or(parse::MAX_MAX_FILE_SIZE),
            props: props.build(),
            slices: (0..slice_count)
                .map(|index| Slice {
                    index,
                    next_part: 0,
                    open: None,
                    last_growth: 0,
                })
                .collect(),
            written: Vec::new(),
            progress: Arc::clone(&env.progress),
            fail_after_files: env.faults.fail_after_files,
            int96: env
                .faults
                .int96_timestamps
                .then_some(if env.config.row_group_rows > 0 {
                    int96::RowGroupLimit::Rows(env.config.row_group_rows)
                } else {
                    int96::RowGroupLimit::Bytes(row_group_bytes)
                }),
        }
    }

    fn file_key(&self, slice: usize, part: usize) -> String {
        if self.parallel {
            format!("{}{slice:04}_part_{part:02}{}", self.prefix, self.extension)
        } else {
            format!("{}{part:03}{}", self.prefix, self.extension)
        }
    }

    async fn write(&mut self, chunk: usize, batch: &RecordBatch) -> Result<(), StatementError> {
        let slice_no = chunk % self.slices.len();
        let max = self.max_file_size as usize;
        // split before the file would grow past MAXFILESIZE
        let must_close = {
            let slice = &self.slices[slice_no];
            slice
                .open
                .as_ref()
                .is_some_and(|f| f.rows > 0 && f.writer.size() + slice.last_growth > max)
        };
        if must_close {
            self.close_slice(slice_no).await?;
        }
        if self.slices[slice_no].open.is_none() {
            let part = self.slices[slice_no].next_part;
            let key = self.file_key(self.slices[slice_no].index, part);
            let buf = BufWriter::new(Arc::clone(&self.store), key_path(&key));
            let has_timestamps = self
                .schema
                .fields()
                .iter()
                .any(|f| matches!(f.data_type(), arrow::datatypes::DataType::Timestamp(..)));
            let writer = match self.int96 {
                Some(limit) if has_timestamps => FileWriter::Int96(Box::new(
                    int96::Int96Writer::try_new(
                        buf,
                        Arc::clone(&self.schema),
                        self.props.clone(),
                        limit,
                    )
                    .map_err(|e| StatementError::Parquet(e.to_string()))?,
                )),
                _ => FileWriter::Arrow(Box::new(
                    AsyncArrowWriter::try_new_with_options(
                        buf,
                        Arc::clone(&self.schema),
                        ArrowWriterOptions::new()
                            .with_properties(self.props.clone())
                            .with_skip_arrow_metadata(true),
                    )
                    .map_err(|e| StatementError::Parquet(e.to_string()))?,
                )),
            };
            let slice = &mut self.slices[slice_no];
            slice.next_part += 1;
            slice.open = Some(OpenFile {
                writer,
                key,
                rows: 0,
            });
        }
        let slice = &mut self.slices[slice_no];
        let Some(file) = slice.open.as_mut() else {
            return Err(StatementError::Parquet("no open file".to_owned()));
        };
        let before = file.writer.size();
        file.writer.write(batch).await?;
        let after = file.writer.size();
        slice.last_growth = after.saturating_sub(before);
        file.rows += batch.num_rows() as u64;
        self.progress.add_rows(batch.num_rows() as u64);
        Ok(())
    }

    async fn close_slice(&mut self, slice_no: usize) -> Result<(), StatementError> {
        let Some(file) = self.slices[slice_no].open.take() else {
            return Ok(());
        };
        file.writer.close().await?;
        let meta = self
            .store
            .head(&key_path(&file.key))
            .await
            .map_err(s3_err)?;
        self.written.push(WrittenFile {
            key: meta.location.to_string(),
            rows: file.rows,
            content_length: meta.size,
        });
        self.progress.add_file(meta.size);
        if let Some(n) = self.fail_after_files
            && self.written.len() as u64 >= n
        {
            return Err(injected_failure(n));
        }
        Ok(())
    }

    /// Closes every open file; returns all written files, ordered by name.
    async fn finish(mut self) -> Result<Vec<WrittenFile>, StatementError> {
        for i in 0..self.slices.len() {
            if let Err(e) = self.close_slice(i).await {
                self.abort().await;
                return Err(e);
            }
        }
        let mut written = std::mem::take(&mut self.written);
        written.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(written)
    }

    /// Abandons the open multipart uploads (written files stay, like a failed Redshift UNLOAD).
    async fn abort(&mut self) {
        for slice in &mut self.slices {
            if let Some(file) = slice.open.take() {
                let mut buf = file.writer.into_inner();
                if let Err(e) = buf.abort().await {
                    tracing::debug!(error = %e, "aborting a multipart upload failed");
                }
            }
        }
    }
}

#[derive(Serialize)]
struct Manifest {
    entries: Vec<ManifestEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<ManifestSchema>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<ManifestMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    author: Option<ManifestAuthor>,
}

#[derive(Serialize)]
struct ManifestEntry {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<ManifestMeta>,
}

#[derive(Serialize)]
struct ManifestMeta {
    content_length: u64,
    record_count: u64,
}

#[derive(Serialize)]
struct ManifestSchema {
    elements: Vec<ManifestElement>,
}

#[derive(Serialize)]
struct ManifestElement {
    name: String,
    #[serde(rename = "type")]
    ty: serde_json::Value,
}

#[derive(Serialize)]
struct ManifestAuthor {
    name: &'static str,
    version: &'static str,
}

async fn write_manifest(
    store: &Arc<dyn ObjectStore>,
    st: &UnloadStatement,
    kind: ManifestKind,
    columns: &[Column],
    files: &[WrittenFile],
) -> Result<(), StatementError> {
    let bucket = &st.destination.bucket;
    let verbose = kind == ManifestKind::Verbose;
    let manifest = Manifest {
        entries: files
            .iter()
            .map(|f| ManifestEntry {
                url: format!("s3://{bucket}/{}", f.key),
                meta: verbose.then_some(ManifestMeta {
                    content_length: f.content_length,
                    record_count: f.rows,
                }),
            })
            .collect(),
        schema: verbose.then(|| ManifestSchema {
            elements: columns
                .iter()
                .map(|c| ManifestElement {
                    name: c.name.clone(),
                    ty: c.ty.manifest_type(),
                })
                .collect(),
        }),
        meta: verbose.then(|| ManifestMeta {
            content_length: files.iter().map(|f| f.content_length).sum(),
            record_count: files.iter().map(|f| f.rows).sum(),
        }),
        author: verbose.then_some(ManifestAuthor {
            name: "Amazon Redshift",
            version: "1.0.0",
        }),
    };
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| StatementError::S3(format!("cannot encode the manifest: {e}")))?;
    let key = manifest_key(st);
    store
        .put(&key_path(&key), PutPayload::from(body))
        .await
        .map_err(s3_err)?;
    Ok(())
}
