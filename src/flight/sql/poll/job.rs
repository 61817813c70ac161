//! A job this replica runs: a long Flight SQL query started by PollFlightInfo, answered on a
//! tokio task of its own. The task runs the query (`statement::run`, which stages it), and on a
//! timer reads the UNLOAD's progress from Redshift, looks for a cancellation asked on another
//! replica, and, once the job was published (answered as running, so a client holds its token),
//! writes the job's state to S3 (`crate::stage::jobs`) for every replica to read. Cancelling
//! aborts the query's task: dropping its staging future cancels the statement on Redshift and
//! deletes what it wrote (the stager's guards).
//!
//! Every write of the job's state takes the job's writer lock and writes the state current at
//! that moment, so the last write is always the latest state whoever wrote it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arrow_flight::{FlightDescriptor, FlightInfo};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use tokio::sync::watch;
use tonic::Status;
use tracing::Instrument;

use super::super::super::Service;
use super::super::statement::{Origin, run};
use crate::clock::unix_ms;
use crate::plan::Plan;
use crate::sql::Sql;
use crate::stage::StageError;
use crate::stage::jobs::{JOB_STATE_VERSION, JobError, JobPhase, JobState};

/// The highest progress a job answers while it runs: 1 means done.
pub(super) const MAX_RUNNING_PROGRESS: f64 = 0.99;

/// How often the running replica updates a job (progress, cancellation, its state on S3): the
/// poll wait, within these bounds.
pub(super) fn update_interval(poll_wait: Duration) -> Duration {
    poll_wait.clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// How long a running job's state may go unwritten before its replica is presumed gone.
pub(super) fn stale_after(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(15))
}

/// The jobs this replica runs, by id, and the id of this replica (for logs).
pub(in crate::flight) struct Jobs {
    map: Mutex<HashMap<String, Arc<Job>>>,
    owner: String,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            owner: format!("{:016x}", rand::random::<u64>()),
        }
    }
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let running = self.map.lock().map(|m| m.len()).unwrap_or_default();
        f.debug_struct("Jobs")
            .field("owner", &self.owner)
            .field("running", &running)
            .finish()
    }
}

impl Jobs {
    /// The job `id`, if this replica runs it.
    pub(super) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.lock().get(id).cloned()
    }

    fn insert(&self, job: Arc<Job>) {
        self.lock().insert(job.id.clone(), job);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a job is, with what its answer needs.
#[derive(Debug, Clone)]
pub(super) enum Phase {
    /// Running.
    Running,
    /// Done: the final FlightInfo.
    Done(Box<FlightInfo>),
    /// Failed: the status GetFlightInfo would have answered.
    Failed(Status),
    /// Cancelled by the client.
    Cancelled,
}

/// A job's state at one moment.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    pub(super) phase: Phase,
    pub(super) progress: f64,
    rows: Option<u64>,
    estimate: Option<u64>,
}

impl Snapshot {
    /// A job's state read from S3, its phase decoded.
    pub(super) fn from_state(phase: Phase, state: &JobState) -> Self {
        Self {
            phase,
            progress: state.progress,
            rows: state.rows_unloaded,
            estimate: state.estimated_rows,
        }
    }
}

/// One job.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) id: String,
    /// The FlightInfo answered while it runs: the schema and the client's descriptor.
    pub(super) partial: FlightInfo,
    started_ms: i64,
    interval: Duration,
    state: watch::Sender<Snapshot>,
    cancel: watch::Sender<bool>,
    /// Whether the state is on S3 (a client was given the job's token); the writer lock.
    published: tokio::sync::Mutex<bool>,
}

impl Job {
    /// A running job answering `partial` until done, updated every `interval`.
    pub(super) fn new(id: String, partial: FlightInfo, interval: Duration) -> Arc<Self> {
        Arc::new(Self {
            id,
            partial,
            started_ms: unix_ms(SystemTime::now()),
            interval,
            state: watch::Sender::new(Snapshot {
                phase: Phase::Running,
                progress: 0.0,
                rows: None,
                estimate: None,
            }),
            cancel: watch::Sender::new(false),
            published: tokio::sync::Mutex::new(false),
        })
    }

    /// The current state.
    pub(super) fn snapshot(&self) -> Snapshot {
        self.state.borrow().clone()
    }

    /// Waits until the job has ended (or `limit` passed) and returns its state.
    pub(super) async fn wait(&self, limit: Duration) -> Snapshot {
        let mut changes = self.state.subscribe();
        let ended = changes.wait_for(|s| !matches!(s.phase, Phase::Running));
        let _ = tokio::time::timeout(limit, ended).await;
        self.snapshot()
    }

    /// Asks the job's task to cancel the query.
    pub(super) fn cancel(&self) {
        self.cancel.send_replace(true);
    }

    async fn cancelled(&self) {
        let mut requested = self.cancel.subscribe();
        let _ = requested.wait_for(|c| *c).await;
    }

    /// Writes the job's state to S3 from now on (a client is about to hold its token).
    pub(super) async fn publish(&self, service: &Service) -> Result<(), StageError> {
        let mut published = self.published.lock().await;
        self.write(service).await?;
        *published = true;
        Ok(())
    }

    async fn is_published(&self) -> bool {
        *self.published.lock().await
    }

    /// Writes the current state if the job is published.
    async fn write_if_published(&self, service: &Service) {
        let published = self.published.lock().await;
        if *published && let Err(error) = self.write(service).await {
            tracing::warn!(job_id = self.id, %error, "could not write the job's state");
        }
    }

    async fn write(&self, service: &Service) -> Result<(), StageError> {
        let state = self.to_state(&self.snapshot(), &service.poll_jobs.owner);
        let until = SystemTime::now() + service.stager.ttl();
        service.stager.write_job(&self.id, &state, until).await
    }

    fn to_state(&self, snapshot: &Snapshot, owner: &str) -> JobState {
        let (state, info, error) = match &snapshot.phase {
            Phase::Running => (JobPhase::Running, Some(&self.partial), None),
            Phase::Done(info) => (JobPhase::Done, Some(info.as_ref()), None),
            Phase::Failed(status) => (
                JobPhase::Failed,
                None,
                Some(JobError {
                    code: status.code() as i32,
                    message: status.message().to_string(),
                    details: BASE64.encode(status.details()),
                }),
            ),
            Phase::Cancelled => (JobPhase::Cancelled, None, None),
        };
        JobState {
            version: JOB_STATE_VERSION,
            state,
            progress: snapshot.progress,
            rows_unloaded: snapshot.rows,
            estimated_rows: snapshot.estimate,
            started_ms: self.started_ms,
            updated_ms: unix_ms(SystemTime::now()),
            update_interval_ms: self.interval.as_millis() as u64,
            owner: owner.to_string(),
            flight_info: info
                .map(|info| BASE64.encode(info.encode_to_vec()))
                .unwrap_or_default(),
            error,
        }
    }
}

/// What a job runs: a planned query and what it was planned from.
#[derive(Debug)]
pub(super) struct Work {
    pub(super) descriptor: FlightDescriptor,
    pub(super) plan: Plan,
    pub(super) origin: Origin,
}

/// Registers `job` and starts its task.
pub(super) fn start(service: &Arc<Service>, job: &Arc<Job>, work: Work) {
    service.poll_jobs.insert(Arc::clone(job));
    let span = tracing::info_span!(
        "poll_job",
        job_id = job.id,
        table = tracing::field::Empty,
        run_id = tracing::field::Empty
    );
    tokio::spawn(drive(Arc::clone(service), Arc::clone(job), work).instrument(span));
}

/// Runs a job to its end.
async fn drive(service: Arc<Service>, job: Arc<Job>, work: Work) {
    let mut probe = Probe {
        rows_sql: service.stager.unload_progress_sql(&work.plan),
        estimate_sql: work.plan.select.clone(),
        estimate: None,
        rows: None,
    };
    let query = {
        let service = Arc::clone(&service);
        let Work {
            descriptor,
            plan,
            origin,
        } = work;
        tokio::spawn(
            async move { run(&service, descriptor, plan, &origin).await }
                .instrument(tracing::Span::current()),
        )
    };
    tokio::pin!(query);
    let start = tokio::time::Instant::now() + job.interval;
    let mut timer = tokio::time::interval_at(start, job.interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut phase = loop {
        tokio::select! {
            joined = &mut query => break match joined {
                Ok(Ok(info)) => Phase::Done(Box::new(info)),
                Ok(Err(error)) => Phase::Failed(Status::from(error)),
                Err(error) => {
                    tracing::error!(%error, "the query's task failed");
                    Phase::Failed(Status::internal("the query's task failed; run it again"))
                }
            },
            () = job.cancelled() => {
                // Dropping the staging future cancels the UNLOAD on Redshift and deletes what it
                // wrote.
                query.abort();
                let _ = (&mut query).await;
                tracing::info!("query cancelled");
                break Phase::Cancelled;
            }
            _ = timer.tick() => {
                let (progress, rows, estimate) = probe.progress(&service, job.interval).await;
                job.state.send_modify(|s| {
                    if matches!(s.phase, Phase::Running) {
                        s.progress = progress;
                        s.rows = rows;
                        s.estimate = estimate;
                    }
                });
                if job.is_published().await
                    && service.stager.job_cancel_requested(&job.id).await.unwrap_or(false)
                {
                    job.cancel();
                    continue;
                }
                job.write_if_published(&service).await;
            }
        }
    };
    // A cancellation asked on another replica as the query finished: honour it.
    if let Phase::Done(info) = &phase
        && job.is_published().await
        && service
            .stager
            .job_cancel_requested(&job.id)
            .await
            .unwrap_or(false)
    {
        if let Err(error) = super::super::super::actions::cancel_runs(&service, None, info).await {
            tracing::warn!(%error, "could not drop the run of a query cancelled as it finished");
        }
        phase = Phase::Cancelled;
    }
    let progress = if matches!(phase, Phase::Done(_)) {
        1.0
    } else {
        job.snapshot().progress
    };
    job.state.send_modify(|s| {
        s.phase = phase;
        s.progress = progress;
    });
    job.write_if_published(&service).await;
    service.poll_jobs.remove(&job.id);
}

/// Where a job's progress comes from: Redshift's count of rows its UNLOAD has written so far,
/// over Redshift's estimate of the result's rows.
struct Probe {
    /// The rows-so-far query (`None` once it failed: the cluster does not show them).
    rows_sql: Option<Sql>,
    estimate_sql: Sql,
    /// `None` until asked; then Redshift's estimate, if it gave one.
    estimate: Option<Option<u64>>,
    rows: Option<u64>,
}

impl Probe {
    /// Progress below 1, the rows written so far and the estimate, as far as known.
    async fn progress(
        &mut self,
        service: &Service,
        limit: Duration,
    ) -> (f64, Option<u64>, Option<u64>) {
        let limit = limit * 2;
        if self.estimate.is_none() {
            let estimate = tokio::time::timeout(
                limit,
                service.stager.warehouse().estimate(&self.estimate_sql),
            )
            .await;
            self.estimate = Some(match estimate {
                Ok(Ok(estimate)) => estimate.map(|e| e.rows),
                Ok(Err(error)) => {
                    tracing::info!(%error, "no row estimate for the query's progress");
                    None
                }
                Err(_) => None,
            });
        }
        if let Some(sql) = &self.rows_sql {
            match tokio::time::timeout(limit, service.stager.unloaded_rows(sql)).await {
                Ok(Ok(Some(rows))) => self.rows = Some(rows.max(self.rows.unwrap_or(0))),
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(error)) => {
                    tracing::info!(
                        %error,
                        "cannot read the UNLOAD's progress (sys_unload_history); progress stays 0"
                    );
                    self.rows_sql = None;
                }
            }
        }
        let estimate = self.estimate.flatten();
        let progress = match (self.rows, estimate) {
            (Some(rows), Some(estimate)) if estimate > 0 => {
                (rows as f64 / estimate as f64).min(MAX_RUNNING_PROGRESS)
            }
            _ => 0.0,
        };
        (progress, self.rows, estimate)
    }
}

/// A job's state read from S3, as a phase (`None`: a FlightInfo that does not decode).
pub(super) fn phase_of(state: &JobState) -> Option<Phase> {
    let info = || {
        BASE64
            .decode(&state.flight_info)
            .ok()
            .and_then(|bytes| FlightInfo::decode(bytes.as_slice()).ok())
    };
    Some(match state.state {
        JobPhase::Running => Phase::Running,
        JobPhase::Done => Phase::Done(Box::new(info()?)),
        JobPhase::Cancelled => Phase::Cancelled,
        JobPhase::Failed => {
            let error = state.error.clone().unwrap_or(JobError {
                code: tonic::Code::Internal as i32,
                message: "the query failed".into(),
                details: String::new(),
            });
            let details = BASE64.decode(&error.details).unwrap_or_default();
            Phase::Failed(Status::with_details(
                tonic::Code::from_i32(error.code),
                error.message,
                details.into(),
            ))
        }
    })
}

/// The partial FlightInfo of a running job read from S3.
pub(super) fn partial_of(state: &JobState) -> Option<FlightInfo> {
    let bytes = BASE64.decode(&state.flight_info).ok()?;
    FlightInfo::decode(bytes.as_slice()).ok()
}
