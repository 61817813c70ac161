//! Tests of the stager as a whole, against a fake [`Warehouse`] and an in-memory store.

use super::*;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::catalog::{CatalogError, TableInfo};
use crate::config::IamRole;
use crate::plan::{Plan, UnloadOptions};
use crate::redshift::TextRow;
use crate::sql::Sql;
use crate::warehouse::Warehouse;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A Parquet file of one Int64 column holding `values`, `rows_per_group` rows per row group.
fn parquet_file(values: &[i64], rows_per_group: usize) -> Vec<u8> {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch};
    let column: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
    let batch = RecordBatch::try_from_iter([("v", column)]).unwrap();
    crate::testing::parquet_bytes(&batch, rows_per_group)
}

/// An unloader that writes what UNLOAD would, or fails as told.
#[derive(Debug)]
pub(super) struct FakeWarehouse {
    store: Arc<dyn ObjectStore>,
    failures: Mutex<Vec<RedshiftError>>,
    pub(super) calls: AtomicUsize,
    /// Destination prefix of every call.
    prefixes: Mutex<Vec<String>>,
    /// How long each UNLOAD takes.
    delay: Duration,
    /// Write the data but no manifest (a lost manifest), still reporting the rows.
    lose_manifest: bool,
}

#[async_trait::async_trait]
impl Warehouse for FakeWarehouse {
    async fn unload(&self, sql: &Sql) -> Result<u64, RedshiftError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let text = sql.as_str();
        let start = text.find("TO 's3://b/").unwrap() + "TO 's3://b/".len();
        let prefix = &text[start..start + text[start..].find('\'').unwrap()];
        self.prefixes.lock().unwrap().push(prefix.to_string());
        tokio::time::sleep(self.delay).await;
        let data = Path::from(format!("{prefix}0000_part_00.parquet"));
        let bytes = parquet_file(&[1], 1);
        let size = bytes.len();
        self.store
            .put(&data, PutPayload::from(bytes))
            .await
            .unwrap();
        if let Some(error) = self.failures.lock().unwrap().pop() {
            return Err(error);
        }
        if self.lose_manifest {
            return Ok(1);
        }
        let manifest = format!(
            r#"{{"entries":[{{"url":"s3://b/{data}","meta":{{"content_length":{size},"record_count":1}}}}]}}"#
        );
        self.store
            .put(
                &Path::from(format!("{prefix}manifest")),
                PutPayload::from(manifest.into_bytes()),
            )
            .await
            .unwrap();
        Ok(1)
    }

    async fn max_key(&self, _sql: &Sql) -> Result<Option<String>, RedshiftError> {
        Ok(None)
    }

    async fn schema_names(&self) -> Result<Vec<String>, RedshiftError> {
        Ok(Vec::new())
    }

    async fn describe(&self, _schema: &str) -> Result<Vec<TableInfo>, CatalogError> {
        Ok(Vec::new())
    }

    async fn query(&self, _sql: &Sql) -> Result<Vec<TextRow>, RedshiftError> {
        Ok(Vec::new())
    }

    async fn describe_query(
        &self,
        _sql: &Sql,
    ) -> Result<Vec<crate::catalog::ColumnInfo>, RedshiftError> {
        Ok(Vec::new())
    }
}

pub(super) fn fixture(
    failures: Vec<RedshiftError>,
) -> (Arc<Stager>, Arc<dyn ObjectStore>, Arc<FakeWarehouse>) {
    fixture_with(failures, Duration::ZERO, false, Duration::from_secs(60))
}

pub(super) fn fixture_with(
    failures: Vec<RedshiftError>,
    delay: Duration,
    lose_manifest: bool,
    ttl: Duration,
) -> (Arc<Stager>, Arc<dyn ObjectStore>, Arc<FakeWarehouse>) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let warehouse = Arc::new(FakeWarehouse {
        store: Arc::clone(&store),
        failures: Mutex::new(failures),
        calls: AtomicUsize::new(0),
        prefixes: Mutex::new(Vec::new()),
        delay,
        lose_manifest,
    });
    let settings = StageSettings {
        bucket: "b".into(),
        prefix: "stage".into(),
        unload: UnloadOptions {
            iam_role: IamRole::Default,
            max_file_size_mb: 256,
            kms_key_id: None,
            region: None,
        },
        ttl,
        grace: Duration::from_millis(10),
        max_parallel: 2,
        endpoint_rows: 0,
        share_window: Duration::ZERO,
        cluster: ClusterOptions::default(),
        retry: RetrySettings {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        },
    };
    let stager = Arc::new(Stager::new(
        Arc::clone(&warehouse) as _,
        Arc::clone(&store),
        settings,
        Metrics::new(),
    ));
    (stager, store, warehouse)
}

pub(super) fn plan() -> Plan {
    use crate::catalog::{ColumnInfo, TableInfo, TableKind, TableRef};
    let table = Arc::new(TableInfo {
        table: TableRef::new("s", "t"),
        kind: TableKind::Table,
        columns: vec![ColumnInfo::new("id", "integer", false)],
        primary_key: vec![],
        row_estimate: None,
        replication_key: None,
        strategy: None,
    });
    let request =
        crate::plan::FlightRequest::try_from_command(br#"{"table":"s.t","mode":"full"}"#).unwrap();
    Plan::try_new(table, &request, crate::plan::PlanSettings::default()).unwrap()
}

pub(super) async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

#[tokio::test]
async fn transient_failures_are_retried_after_cleanup_and_sql_errors_are_not() {
    let transient = RedshiftError::Unreachable {
        address: "h:1".into(),
        source: crate::redshift::ConnectError::Other("reset"),
    };
    let (stager, store, unloader) = fixture(vec![transient]);
    let run = stager.stage(&plan()).await.unwrap();
    assert_eq!(unloader.calls.load(Ordering::SeqCst), 2);
    assert_eq!(run.files.len(), 1);
    let prefixes = unloader.prefixes.lock().unwrap().clone();
    assert_eq!(prefixes.len(), 2);
    assert_ne!(
        prefixes[0], prefixes[1],
        "every attempt writes to a fresh prefix"
    );
    assert_eq!(prefixes[1], data_prefix(&run.prefix));
    assert_eq!(
        keys(&store).await,
        vec![
            format!("{}columns.json", run.prefix),
            format!("{}data/0000_part_00.parquet", run.prefix),
            format!("{}data/manifest", run.prefix),
            format!("{}lease", run.prefix),
        ],
        "the successful attempt's files and lease only: the abandoned prefix is gone"
    );

    let sql_error = RedshiftError::Sql {
        code: "XX000".into(),
        message: "S3 ServiceException".into(),
    };
    let (stager, store, unloader) = fixture(vec![sql_error]);
    let error = stager.stage(&plan()).await.unwrap_err();
    assert!(matches!(error, StageError::Unload { .. }));
    assert_eq!(
        unloader.calls.load(Ordering::SeqCst),
        1,
        "SQL errors are not retried"
    );
    assert!(
        keys(&store).await.is_empty(),
        "a failed UNLOAD leaves nothing behind"
    );
}

#[tokio::test]
async fn consumed_runs_are_deleted_after_grace_and_the_sweeper_honours_leases() {
    let (stager, store, _) = fixture(vec![]);
    let run = stager.stage(&plan()).await.unwrap();
    stager
        .file_consumed(&run.run_id, "0000_part_00.parquet", 1, "ab")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(keys(&store).await.is_empty(), "consumed run deleted");

    let a = stager.stage(&plan()).await.unwrap();
    let b = stager.stage(&plan()).await.unwrap();
    let outside = Path::from("other/keep.txt");
    store
        .put(&outside, PutPayload::from_static(b"x"))
        .await
        .unwrap();
    store
        .put(
            &Path::from("stage/not-a-run/x"),
            PutPayload::from_static(b"x"),
        )
        .await
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(120);
    stager
        .renew_run(&b.run_id, later + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(stager.sweep(later).await.unwrap(), 1);
    let left = keys(&store).await;
    assert!(
        left.iter().all(|k| !k.contains(&a.run_id)),
        "expired run swept"
    );
    assert!(
        left.iter().any(|k| k.contains(&b.run_id)),
        "renewed run kept"
    );
    assert!(
        left.contains(&"other/keep.txt".to_string()),
        "nothing outside the prefix is touched"
    );
    assert!(
        left.contains(&"stage/not-a-run/x".to_string()),
        "foreign folders are left alone"
    );
    stager.cancel_run(&b.run_id, "ab", 1).await.unwrap();
    assert!(keys(&store).await.iter().all(|k| !k.contains(&b.run_id)));
    assert!(stager.cancel_run("../other", "ab", 1).await.is_err());
    stager.delete_run("other/", "cancelled").await;
    stager.delete_run("stage/../other/", "cancelled").await;
    assert!(keys(&store).await.contains(&"other/keep.txt".to_string()));
}

#[tokio::test]
async fn a_lost_manifest_is_not_zero_rows() {
    let (stager, store, _) = fixture_with(vec![], Duration::ZERO, true, Duration::from_secs(60));
    let error = stager.stage(&plan()).await.unwrap_err();
    assert!(
        matches!(
            error,
            StageError::RowCount {
                unloaded: 1,
                listed: 0,
                ..
            }
        ),
        "{error}"
    );
    assert!(
        keys(&store).await.is_empty(),
        "the incomplete run is deleted"
    );
}

#[tokio::test]
async fn the_clock_starts_when_the_unload_finishes_and_a_long_unload_is_not_swept() {
    let ttl = Duration::from_millis(400);
    let (stager, store, _) = fixture_with(vec![], Duration::from_millis(1200), false, ttl);
    let staging = tokio::spawn({
        let stager = Arc::clone(&stager);
        async move { stager.stage(&plan()).await }
    });
    // Sweep while the UNLOAD runs three TTLs long: its lease keeps it.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1100);
    while tokio::time::Instant::now() < deadline {
        assert_eq!(stager.sweep(SystemTime::now()).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run = staging.await.unwrap().unwrap();
    let finished = SystemTime::now();
    assert!(
        run.expires_at + Duration::from_millis(100) >= finished + ttl,
        "tickets live a full TTL after the UNLOAD finished"
    );
    assert_eq!(stager.sweep(SystemTime::now()).await.unwrap(), 0);
    assert!(!keys(&store).await.is_empty());
    assert_eq!(
        stager
            .sweep(run.expires_at + Duration::from_millis(1))
            .await
            .unwrap(),
        1
    );
    assert!(keys(&store).await.is_empty());
}

/// Golden: the objects of a run's life in S3 are a protocol between replicas of different
/// versions (see `run_state`); do not change them without a compatibility plan.
#[tokio::test]
async fn the_on_s3_run_protocol_is_stable() {
    let (stager, store, _) = fixture(vec![]);
    let run = stager.stage(&plan()).await.unwrap();
    let p = run.prefix.clone();
    assert!(p.starts_with("stage/") && p.ends_with(&format!("{}/", run.run_id)));
    assert!(
        stager
            .add_readers(&run.run_id, &["00000000000000aa", "00000000000000BB"])
            .await
            .unwrap()
    );
    let until = SystemTime::UNIX_EPOCH + Duration::from_millis(1_900_000_000_123);
    stager.renew_run(&run.run_id, until).await.unwrap();
    stager
        .file_consumed(&run.run_id, "0000_part_00.parquet", 1, "00000000000000aa")
        .await
        .unwrap();
    assert_eq!(
        keys(&store).await,
        vec![
            format!("{p}columns.json"),
            format!("{p}consumed/00000000000000aa/0000_part_00.parquet"),
            format!("{p}data/0000_part_00.parquet"),
            format!("{p}data/manifest"),
            format!("{p}lease"),
            format!("{p}readers/00000000000000aa"),
            format!("{p}readers/00000000000000bb"),
        ]
    );
    let lease = store
        .get(&Path::from(format!("{p}lease")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        &lease[..],
        b"1900000000123",
        "lease: Unix milliseconds as decimal text"
    );
    let columns = store
        .get(&Path::from(format!("{p}columns.json")))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&columns).unwrap(),
        r#"{"version":1,"columns":[{"name":"id","catalog_type":"integer","nullable":false}],"primary_key":[]}"#
    );
    assert_eq!(run.columns.fingerprint().len(), 32);
    // One reader of two has streamed the only endpoint: the run stays; the second completes it.
    stager
        .file_consumed(&run.run_id, "0000_part_00.parquet", 1, "00000000000000bb")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !keys(&store).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the complete run is deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
