//! One incremental sync step against a caller-supplied cursor store and sink, done the way the
//! wire contract requires (proto-docs/README.md, "Incremental reads"): plan with the stored
//! cursor, hand every batch of every endpoint to the sink, check the row count, let the sink
//! make its output durable, and only then store `next_cursor`. A crash anywhere before that
//! leaves the old cursor, so the next step reads the same window again (consumers upsert on the
//! primary key). [`FileCursorStore`] keeps the cursors in one JSON file, replaced atomically.
//! Imports external crates and `crate::{client, error, read, request}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::read::ReadOptions;
use crate::request::{Flight, Mode, TableRequest};

/// What the store keeps per table between sync steps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CursorState {
    /// The `next_cursor` of the last committed step (`None`: no key, or nothing synced yet).
    pub cursor: Option<String>,
    /// The row filter the cursor was reached with: a different filter starts over with a full
    /// read (rows matching only the new filter may lie below the cursor).
    #[serde(rename = "where", default)]
    pub filter: Option<String>,
    /// `schema.table` as the server resolved it.
    #[serde(default)]
    pub table: Option<String>,
    /// The upper bound the cursor encodes (for people).
    #[serde(default)]
    pub upper_bound: Option<String>,
    /// When the step committed, Unix milliseconds.
    #[serde(default)]
    pub synced_at_ms: u64,
}

/// Where cursors live between sync steps. `store` must be durable when it returns.
#[async_trait]
pub trait CursorStore: Send + std::marker::Sync {
    /// The state stored under `key`, if any.
    async fn load(&self, key: &str) -> Result<Option<CursorState>>;
    /// Replaces the state under `key` (and keeps every other key's).
    async fn store(&self, key: &str, state: &CursorState) -> Result<()>;
}

/// Receives the batches of one sync step. `commit` must make them durable; the cursor moves only
/// after it returned `Ok`. After an error the step calls `abort` and the sink should drop what it
/// got since `begin`.
#[async_trait]
pub trait BatchSink: Send {
    /// A step starts: `flight.metadata.mode` says whether it is a full snapshot (replace) or an
    /// incremental window (upsert on `redshift_flight.primary_key`).
    async fn begin(&mut self, flight: &Flight) -> Result<()>;
    /// One batch of the step.
    async fn write(&mut self, batch: RecordBatch) -> Result<()>;
    /// Every batch of the step was written: make it durable.
    async fn commit(&mut self, flight: &Flight) -> Result<()>;
    /// The step failed after `begin`: drop its batches. Default: nothing.
    async fn abort(&mut self) {}
}

/// What one step did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    /// The plan that was read (after re-plans, the last one).
    pub flight: Flight,
    /// Rows handed to the sink.
    pub rows: u64,
    /// The cursor the step started from.
    pub cursor_before: Option<String>,
    /// The cursor stored.
    pub cursor_after: Option<String>,
}

impl SyncOutcome {
    /// `"full"` or `"incremental"`.
    pub fn mode(&self) -> &str {
        &self.flight.metadata.mode
    }
}

/// Runs incremental sync steps of one table request against a cursor store.
#[derive(Debug, Clone)]
pub struct Sync<S> {
    client: Client,
    store: S,
    read: ReadOptions,
    max_attempts: usize,
}

impl<S: CursorStore> Sync<S> {
    /// Steps through `client`, cursors in `store`.
    pub fn new(client: Client, store: S) -> Self {
        Self {
            client,
            store,
            read: ReadOptions::default(),
            max_attempts: 3,
        }
    }

    /// How endpoints are read (re-plans are done by the step itself, from the start).
    pub fn read_options(mut self, options: ReadOptions) -> Self {
        self.read = options;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// One step of `request` (its `cursor` is replaced by the stored one; `Mode::Full` ignores
    /// the stored cursor and starts over). The key in the store is `request.table`.
    ///
    /// A stale cursor (its key column dropped or retyped) is [`Error::StaleCursor`]: run a step
    /// with `Mode::Full` to start over. When the staged run expires mid-read the sink is aborted
    /// and the step starts again from a new plan (up to 3 attempts).
    pub async fn step(
        &self,
        request: &TableRequest,
        sink: &mut dyn BatchSink,
    ) -> Result<SyncOutcome> {
        let key = request.table.clone();
        let stored = self.store.load(&key).await?.unwrap_or_default();
        let mut request = request.clone();
        let filter_changed = stored.cursor.is_some() && stored.filter != request.filter;
        if filter_changed {
            request.mode = Some(Mode::Full);
        }
        request.cursor = match request.mode {
            Some(Mode::Full) => None,
            _ => stored.cursor.clone(),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&request, sink).await {
                Ok((flight, rows)) => {
                    let state = CursorState {
                        cursor: flight.metadata.next_cursor.clone(),
                        filter: request.filter.clone(),
                        table: Some(flight.metadata.table.clone()),
                        upper_bound: flight.metadata.upper_bound.clone(),
                        synced_at_ms: SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64),
                    };
                    self.store.store(&key, &state).await?;
                    return Ok(SyncOutcome {
                        cursor_before: stored.cursor,
                        cursor_after: state.cursor,
                        flight,
                        rows,
                    });
                }
                Err(e) if e.is_run_expired() && attempt < self.max_attempts => {
                    tracing::info!(error = %e, "the staged run expired mid-sync; starting the step again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn attempt(
        &self,
        request: &TableRequest,
        sink: &mut dyn BatchSink,
    ) -> Result<(Flight, u64)> {
        let flight = self.client.plan(request).await?;
        sink.begin(&flight).await?;
        let options = ReadOptions {
            max_replans: 0,
            ..self.read
        };
        let mut batches = self.client.read_flight(flight.clone(), options);
        let mut rows = 0u64;
        let result = async {
            while let Some(batch) = batches.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                sink.write(batch).await?;
            }
            if let Some(total) = flight.total_records()
                && total != rows
            {
                return Err(Error::Protocol(format!(
                    "read {rows} rows but the server staged {total}"
                )));
            }
            sink.commit(&flight).await
        }
        .await;
        match result {
            Ok(()) => Ok((flight, rows)),
            Err(e) => {
                sink.abort().await;
                Err(e)
            }
        }
    }
}

/// Cursors in one JSON file, `{"version": 1, "tables": {"<key>": CursorState}}`, replaced
/// atomically (temporary file, fsync, rename) under a lock, so that a crash leaves the old file
/// or the new one. One process per file.
#[derive(Debug)]
pub struct FileCursorStore {
    path: PathBuf,
    lock: Mutex<()>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    tables: BTreeMap<String, CursorState>,
}

impl FileCursorStore {
    /// A store in `path` (created on the first `store`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read(&self) -> Result<StateFile> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                // Never start over silently: a lost cursor means a full resync.
                Error::io(
                    format!(
                        "cursor file {} is damaged; fix or remove it",
                        self.path.display()
                    ),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StateFile {
                version: 1,
                tables: BTreeMap::new(),
            }),
            Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
    }
}

#[async_trait]
impl CursorStore for FileCursorStore {
    async fn load(&self, key: &str) -> Result<Option<CursorState>> {
        let _guard = self.lock.lock().await;
        Ok(self.read().await?.tables.remove(key))
    }

    async fn store(&self, key: &str, state: &CursorState) -> Result<()> {
        let _guard = self.lock.lock().await;
        let mut file = self.read().await?;
        file.version = 1;
        file.tables.insert(key.to_string(), state.clone());
        let mut bytes = serde_json::to_vec_pretty(&file)
            .map_err(|e| Error::Protocol(format!("encoding the cursor file: {e}")))?;
        bytes.push(b'\n');
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(|e| Error::io("writing the cursor file", std::io::Error::other(e)))?
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let context = |what: &str| format!("{what} {}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(context("creating the folder of"), e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result: std::io::Result<()> = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename is durable once the folder is synced (not every platform can open one).
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| Error::io(context("writing"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_file_store_keeps_every_key() {
        let dir = std::env::temp_dir().join(format!("rsf-cursors-{}", std::process::id()));
        let store = FileCursorStore::new(dir.join("cursors.json"));
        assert_eq!(store.load("a").await.unwrap(), None);
        let a = CursorState {
            cursor: Some("rsfc1.a".into()),
            ..CursorState::default()
        };
        let b = CursorState {
            cursor: Some("rsfc1.b".into()),
            filter: Some("x = 1".into()),
            ..CursorState::default()
        };
        store.store("a", &a).await.unwrap();
        store.store("b", &b).await.unwrap();
        let again = FileCursorStore::new(dir.join("cursors.json"));
        assert_eq!(again.load("a").await.unwrap(), Some(a));
        assert_eq!(again.load("b").await.unwrap(), Some(b));
        std::fs::write(dir.join("cursors.json"), b"{not json").unwrap();
        assert!(again.load("a").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
