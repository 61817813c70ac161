//! A flood of wrong-password Handshakes must not hold up other clients: Argon2 verification runs on
//! the blocking pool behind a small semaphore, never on the async workers that serve GetSchema.
//!
//! The test measures GetSchema latency (median and 95th percentile over many sequential calls)
//! on a quiet server, then while 50 clients keep sending Handshakes with a wrong password (half
//! for a real user, half for unknown names, which cost the same dummy verification), and compares.
//!
//! A test binary of its own, not a module of `tests/it/`: the latencies it compares would move with
//! whatever other tests ran in the same process at the same time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::FlightDescriptor;
use base64::Engine;
use common::{TestServer, pg, unique};

/// Calls measured in each phase, at least.
const CALLS: usize = 200;
/// How long each phase measures, at least (long enough for dozens of verifications).
const PHASE: Duration = Duration::from_secs(3);

/// GetSchema latencies of sequential calls for [`PHASE`] (and at least [`CALLS`]), sorted.
async fn get_schema_latencies(server: &TestServer, token: &str, path: &[String]) -> Vec<Duration> {
    let mut client = server.client().await;
    client
        .add_header("authorization", &format!("Bearer {token}"))
        .unwrap();
    let descriptor = FlightDescriptor::new_path(path.to_vec());
    let mut latencies = Vec::with_capacity(CALLS);
    let phase = Instant::now();
    while latencies.len() < CALLS || phase.elapsed() < PHASE {
        let started = Instant::now();
        client
            .get_schema(descriptor.clone())
            .await
            .expect("GetSchema");
        latencies.push(started.elapsed());
    }
    latencies.sort();
    latencies
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_flood_does_not_delay_get_schema() {
    let schema = unique("handshake");
    pg().await
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int PRIMARY KEY, name text);"
        ))
        .await
        .unwrap();
    let hash = redshift_flight::auth::hash_password("the-right-password").unwrap();
    let auth_file = std::env::temp_dir().join(format!("{schema}-access.toml"));
    std::fs::write(
        &auth_file,
        format!("[[users]]\nname = \"alice\"\npassword_hash = \"{hash}\"\n"),
    )
    .unwrap();
    let token = "measuring-client-token-0123456789";
    let server = TestServer::start(&[
        ("auth_file", auth_file.to_str().unwrap()),
        ("auth_tokens", token),
    ])
    .await;
    let path = vec![schema.clone(), "t".to_string()];

    // Warm up (catalog cached, connections open), then the quiet baseline.
    get_schema_latencies(&server, token, &path).await;
    let quiet = get_schema_latencies(&server, token, &path).await;

    // The flood: 50 clients, each on its own connection, sending wrong passwords back to back
    // (after an UNAVAILABLE "busy" answer, a client backs off for 20 ms as a real one would).
    let stop = Arc::new(AtomicBool::new(false));
    let verified = Arc::new(AtomicUsize::new(0));
    let busy = Arc::new(AtomicUsize::new(0));
    let mut flood = Vec::new();
    for i in 0..50 {
        let mut client = server.client().await;
        let user = if i % 2 == 0 { "alice" } else { "mallory" };
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:wrong-{i}"));
        client
            .add_header("authorization", &format!("Basic {basic}"))
            .unwrap();
        let (stop, verified, busy) = (Arc::clone(&stop), Arc::clone(&verified), Arc::clone(&busy));
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match common::status(client.handshake(bytes::Bytes::new()).await) {
                    (tonic::Code::Unauthenticated, _) => {
                        verified.fetch_add(1, Ordering::Relaxed);
                    }
                    (tonic::Code::Unavailable, message) => {
                        assert!(message.contains("too many Handshakes"), "{message}");
                        busy.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => panic!("a wrong password got {other:?}"),
                }
            }
        }));
    }
    // Measure only once the flood is verifying passwords.
    assert!(
        common::eventually(Duration::from_secs(30), || {
            let verified = Arc::clone(&verified);
            async move { verified.load(Ordering::Relaxed) >= 4 }
        })
        .await,
        "no Handshake was answered"
    );
    let before = verified.load(Ordering::Relaxed);
    let flooded = get_schema_latencies(&server, token, &path).await;
    let during = verified.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        task.await.unwrap();
    }

    let (quiet_median, quiet_p95) = (percentile(&quiet, 50), percentile(&quiet, 95));
    let (flood_median, flood_p95) = (percentile(&flooded, 50), percentile(&flooded, 95));
    eprintln!(
        "GetSchema quiet: median {quiet_median:?} p95 {quiet_p95:?}; during the flood \
         ({during} passwords verified, {} busy answers): median {flood_median:?} p95 {flood_p95:?}",
        busy.load(Ordering::Relaxed)
    );
    // The flood was real: passwords were being verified all through the measurement.
    assert!(
        during >= 10,
        "only {during} Handshakes answered while measuring"
    );
    // Bounds: one Argon2 verification takes tens of milliseconds, so a GetSchema that had to wait
    // for one (the old behaviour: verification on the two async workers) is delayed by about
    // that much in the median already. With verification off the workers, the only cost is CPU
    // sharing on a small (2-core) machine: the median may grow by scheduling noise (a few ms),
    // the 95th percentile by more (a time slice or two of the OS scheduler, which hands a busy
    // core to the woken worker within a few ms). 5 ms and 20 ms leave room for that noise while
    // staying well under one verification's cost.
    assert!(
        flood_median.saturating_sub(quiet_median) <= Duration::from_millis(5),
        "median GetSchema latency grew from {quiet_median:?} to {flood_median:?}"
    );
    assert!(
        flood_p95.saturating_sub(quiet_p95) <= Duration::from_millis(20),
        "p95 GetSchema latency grew from {quiet_p95:?} to {flood_p95:?}"
    );

    // The right password still works once the flood is over.
    let mut client = server.client().await;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:the-right-password");
    client
        .add_header("authorization", &format!("Basic {basic}"))
        .unwrap();
    let payload = client
        .handshake(bytes::Bytes::new())
        .await
        .expect("Handshake");
    assert!(
        String::from_utf8(payload.to_vec())
            .unwrap()
            .starts_with("rsfb2.")
    );
    server.stop().await;
    let _ = std::fs::remove_file(auth_file);
}
