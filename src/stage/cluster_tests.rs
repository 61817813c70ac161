//! Several replicas (stagers sharing one in-memory store, which honours conditional writes as S3
//! does): single flight across replicas, the cluster-wide UNLOAD limit, and sweepers running at
//! once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use object_store::path::Path;

use super::claim::{Claim, Claims, Read};
use super::flights::{FlightRecord, FlightState, SharedFlight};
use super::slots::SlotRecord;
use super::tests::{fixture, fixture_with, keys, plan};
use super::{ClusterOptions, Stager};
use crate::metrics::Metrics;

/// Another replica of `stager`: same warehouse and bucket, its own process state.
fn replica(stager: &Stager, cluster: ClusterOptions) -> Arc<Stager> {
    let mut settings = stager.settings.clone();
    settings.cluster = cluster;
    Arc::new(Stager::new(
        Arc::clone(&stager.warehouse),
        Arc::clone(&stager.store),
        settings,
        Metrics::new(),
    ))
}

fn lease(millis: u64) -> ClusterOptions {
    ClusterOptions {
        lease: Duration::from_millis(millis),
        max_parallel_unloads: 0,
    }
}

fn answer(reader: &str) -> SharedFlight {
    SharedFlight {
        flight_info: reader.as_bytes().to_vec(),
        first_reader: reader.to_string(),
        run: Some(("r".into(), 1)),
    }
}

/// A request computed on `stager` by `reader`, taking `work`; counts computations in `computed`.
async fn request(
    stager: &Stager,
    window: Duration,
    reader: &str,
    work: Duration,
    computed: &AtomicUsize,
) -> Result<SharedFlight, String> {
    stager
        .single_flight("key", window, || async {
            computed.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(work).await;
            Ok::<_, String>(answer(reader))
        })
        .await
}

#[tokio::test]
async fn identical_requests_on_three_replicas_share_one_computation() {
    let (a, _, _) = fixture(vec![]);
    let (b, c) = (replica(&a, lease(2000)), replica(&a, lease(2000)));
    let computed = AtomicUsize::new(0);
    let work = Duration::from_millis(300);
    let (ra, rb, rc) = tokio::join!(
        request(&a, Duration::ZERO, "a", work, &computed),
        request(&b, Duration::ZERO, "b", work, &computed),
        request(&c, Duration::ZERO, "c", work, &computed),
    );
    let (ra, rb, rc) = (ra.unwrap(), rb.unwrap(), rc.unwrap());
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(ra, rb);
    assert_eq!(rb, rc);
    // Window 0: shared only while it ran; the next request computes afresh.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let again = request(&b, Duration::ZERO, "b2", Duration::ZERO, &computed).await;
    assert_eq!(again.unwrap().first_reader, "b2");
    assert_eq!(computed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_finished_request_is_joined_within_the_window_only() {
    let (a, _, _) = fixture(vec![]);
    let b = replica(&a, lease(2000));
    let computed = AtomicUsize::new(0);
    let window = Duration::from_millis(500);
    let first = request(&a, window, "a", Duration::ZERO, &computed).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let joined = request(&b, window, "b", Duration::ZERO, &computed).await;
    assert_eq!(joined.unwrap(), first.unwrap());
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    tokio::time::sleep(window).await;
    let later = request(&b, window, "b2", Duration::ZERO, &computed).await;
    assert_eq!(later.unwrap().first_reader, "b2");
    assert_eq!(computed.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_dead_holder_is_taken_over_once_its_lease_passes() {
    let (a, _, _) = fixture(vec![]);
    let cluster = lease(400);
    let b = replica(&a, cluster.clone());
    // A replica that claimed the request and was killed: nothing renews or releases its claim.
    let dead = Claim::new(
        FlightRecord {
            state: FlightState::Running,
            flight_info: None,
            first_reader: None,
            run_id: None,
            run_endpoints: 0,
        },
        SystemTime::now() + cluster.lease,
    );
    let path = b.flight_path("key");
    let claims = Claims::new(Arc::clone(&a.store));
    assert!(claims.create(&path, &dead).await.unwrap().is_some());
    let started = Instant::now();
    let computed = AtomicUsize::new(0);
    let answer = request(&b, Duration::ZERO, "b", Duration::ZERO, &computed).await;
    assert_eq!(answer.unwrap().first_reader, "b");
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "waited {waited:?}");
    assert!(waited < Duration::from_millis(2500), "waited {waited:?}");
}

#[tokio::test]
async fn a_live_holder_is_waited_for_past_its_first_lease() {
    let (a, _, _) = fixture(vec![]);
    let cluster = lease(200);
    let (a, b) = (replica(&a, cluster.clone()), replica(&a, cluster));
    let computed = AtomicUsize::new(0);
    // Five leases long: the holder renews, so the waiter never takes over.
    let (ra, rb) = tokio::join!(
        request(
            &a,
            Duration::ZERO,
            "a",
            Duration::from_millis(1000),
            &computed
        ),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            request(&b, Duration::ZERO, "b", Duration::ZERO, &computed).await
        }
    );
    assert_eq!(computed.load(Ordering::SeqCst), 1);
    assert_eq!(rb.unwrap(), ra.unwrap());
}

#[tokio::test]
async fn a_failed_or_abandoned_holder_hands_over_at_once() {
    let (a, _, _) = fixture(vec![]);
    let cluster = lease(5000);
    let (a, b) = (replica(&a, cluster.clone()), replica(&a, cluster));
    // Failure: the waiter stages it itself, long before the lease would pass.
    let started = Instant::now();
    let (ra, rb) = tokio::join!(
        a.single_flight("key", Duration::ZERO, || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err::<SharedFlight, _>("UNLOAD failed".to_string())
        }),
        async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let computed = AtomicUsize::new(0);
            request(&b, Duration::ZERO, "b", Duration::ZERO, &computed).await
        }
    );
    assert_eq!(ra.unwrap_err(), "UNLOAD failed");
    assert_eq!(rb.unwrap().first_reader, "b");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Abandoned (the client went away): released when dropped.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let computed = AtomicUsize::new(0);
    let abandoned = tokio::time::timeout(
        Duration::from_millis(100),
        request(&a, Duration::ZERO, "a", Duration::from_secs(60), &computed),
    );
    assert!(abandoned.await.is_err());
    let taken = request(&b, Duration::ZERO, "b2", Duration::ZERO, &computed).await;
    assert_eq!(taken.unwrap().first_reader, "b2");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn the_cluster_limit_holds_over_replicas_and_a_dead_holder_frees_its_slot() {
    let (a, _, _) = fixture_with(
        vec![],
        Duration::from_millis(300),
        false,
        Duration::from_secs(60),
    );
    let cluster = ClusterOptions {
        lease: Duration::from_millis(400),
        max_parallel_unloads: 1,
    };
    let replicas: Vec<_> = (0..3).map(|_| replica(&a, cluster.clone())).collect();
    let started = Instant::now();
    let plan = plan();
    let runs = futures::future::join_all(replicas.iter().map(|r| r.stage(&plan))).await;
    for run in runs {
        assert_eq!(run.unwrap().total_rows(), 1);
    }
    // One at a time: three UNLOADs of 300 ms each.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(850), "{elapsed:?}");
    // A slot held by a replica that died passes with its lease.
    let dead = Claim::new(
        SlotRecord {
            table: "s.t".into(),
        },
        SystemTime::now() + cluster.lease,
    );
    let claims = Claims::new(Arc::clone(&a.store));
    let slot = replicas[0].slot_path(0);
    assert!(
        claims.create(&slot, &dead).await.unwrap().is_none(),
        "released, not deleted"
    );
    let Read::Found(_, version) = claims.read::<SlotRecord>(&slot).await.unwrap() else {
        panic!("the slot's claim is there");
    };
    assert!(
        claims
            .replace(&slot, &dead, version)
            .await
            .unwrap()
            .is_some()
    );
    let started = Instant::now();
    let run = replicas[1].stage(&plan).await.unwrap();
    assert_eq!(run.total_rows(), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn replicas_sweeping_at_once_delete_each_expired_run_once_and_spare_runs_being_written() {
    let ttl = Duration::from_millis(300);
    let (a, store, _) = fixture_with(vec![], Duration::ZERO, false, ttl);
    let sweepers: Vec<_> = (0..3).map(|_| replica(&a, lease(2000))).collect();
    for _ in 0..4 {
        a.stage(&plan()).await.unwrap();
    }
    let later = SystemTime::now() + Duration::from_secs(5);
    let swept = futures::future::join_all(sweepers.iter().map(|s| s.sweep(later))).await;
    let total: usize = swept.into_iter().map(Result::unwrap).sum();
    assert!(
        total >= 4,
        "every run deleted, some perhaps by two sweepers"
    );
    assert!(keys(&store).await.is_empty());

    // A run another replica is still writing (an UNLOAD three TTLs long) survives every sweep.
    let (writer, store, _) = fixture_with(vec![], Duration::from_millis(900), false, ttl);
    let sweeper = replica(&writer, lease(2000));
    let staging = tokio::spawn({
        let writer = Arc::clone(&writer);
        async move { writer.stage(&plan()).await }
    });
    let deadline = Instant::now() + Duration::from_millis(850);
    while Instant::now() < deadline {
        assert_eq!(sweeper.sweep(SystemTime::now()).await.unwrap(), 0);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let run = staging.await.unwrap().unwrap();
    assert_eq!(run.total_rows(), 1);
    assert!(!keys(&store).await.is_empty());
}

#[tokio::test]
async fn stale_flight_records_are_swept() {
    let (a, store, _) = fixture(vec![]);
    let computed = AtomicUsize::new(0);
    request(&a, Duration::ZERO, "a", Duration::ZERO, &computed)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let record = Path::from("stage/flights");
    let listed = |keys: Vec<String>| keys.iter().any(|k| k.starts_with(record.as_ref()));
    assert!(listed(keys(&store).await));
    assert_eq!(a.sweep_flights(SystemTime::now()).await.unwrap(), 0);
    let idle = a.settings.share_window + 2 * a.settings.cluster.lease;
    let later = SystemTime::now() + idle + Duration::from_secs(1);
    assert_eq!(a.sweep_flights(later).await.unwrap(), 1);
    assert!(!listed(keys(&store).await));
}
