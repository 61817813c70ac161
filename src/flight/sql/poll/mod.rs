//! Long Flight SQL queries: PollFlightInfo answers with progress until the result is staged, so
//! a client is not held on one long call (ADBC's incremental execution,
//! `adbc.statement.exec.incremental`), and CancelFlightInfo stops a running one.
//!
//! - The first PollFlightInfo of a query (`CommandStatementQuery`, `CommandPreparedStatementQuery`)
//!   plans it as GetFlightInfo does (validated, authorised, described), starts it on a task of
//!   its own ([`job`]) and waits up to `flight_sql_poll_wait_ms`. Done by then, the answer is
//!   complete (the FlightInfo with its endpoints, no descriptor, progress 1); failed, it is the
//!   status GetFlightInfo would have answered. Otherwise the job's state is published to S3
//!   (`crate::stage::jobs`) and the answer is: `info` the schema and the client's descriptor
//!   without endpoints, its `app_metadata` `{"job_id", "state", "progress", "poll_token"}`;
//!   `flight_descriptor` a CMD descriptor holding a signed poll token ([`token`]); `progress` in
//!   [0, 1); `expiration_time` the token's.
//! - Later polls with that descriptor, on any replica: the token is verified and the caller must
//!   still be allowed to read every relation it names; then the job's state answers: from memory
//!   on the replica running it (which waits up to the poll wait for it to end), else from S3.
//!   Running: the same kind of answer with a fresh token. Done: complete. Failed: the same
//!   status. Cancelled: CANCELLED. A job whose replica stopped updating it: UNAVAILABLE.
//! - CancelFlightInfo of the partial FlightInfo (its `app_metadata` or descriptor holds the
//!   token) cancels the job on the replica running it, or asks that replica through S3.
//!
//! Progress is the rows the UNLOAD has written so far (Redshift's `SYS_UNLOAD_HISTORY`) over
//! Redshift's estimate of the result's rows (EXPLAIN), below 1 until done.
//!
//! Plain Flight descriptors and the metadata commands are answered complete, as GetFlightInfo.
//!
//! Imports: the parent's `statement` and `prepared` entry points, `crate::stage::jobs`, the
//! flight layer's `Service`, errors and actions.

mod job;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arrow_flight::sql::{Command, CommandPreparedStatementQuery, CommandStatementQuery};
use arrow_flight::{CancelStatus, FlightDescriptor, FlightInfo, PollInfo};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tonic::{Code, Status};

use super::super::{Service, ServiceError, timestamp_ms};
use crate::auth::Principal;
use crate::clock::unix_ms;
use crate::status::{new_request_id, with_error_info};
pub(in crate::flight) use job::Jobs;
use job::{Job, Phase, Work};
use token::{PollPayload, Relation, TokenCodec, TokenError};

/// Why a poll cannot be answered with the job's state.
#[derive(Debug, thiserror::Error)]
enum PollError {
    /// The token was refused.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No state for the job: it expired and was swept (or its token names a job never started).
    #[error(
        "the query's state is gone (it expired, or was never started by this server); run the \
         query again"
    )]
    Gone,
    /// The replica running the job stopped updating it.
    #[error(
        "the server running the query stopped before it finished (its state was last updated \
         {0:?} ago); run the query again"
    )]
    Abandoned(Duration),
    /// The job was cancelled.
    #[error("the query was cancelled (CancelFlightInfo); run it again to read its result")]
    Cancelled,
}

impl From<PollError> for Status {
    fn from(error: PollError) -> Self {
        let (code, reason) = match &error {
            PollError::Token(TokenError::Malformed(_)) => {
                (Code::InvalidArgument, "INVALID_POLL_TOKEN")
            }
            PollError::Token(TokenError::BadSignature) => {
                (Code::InvalidArgument, "BAD_POLL_TOKEN_SIGNATURE")
            }
            PollError::Token(TokenError::Expired(_)) => {
                (Code::InvalidArgument, "POLL_TOKEN_EXPIRED")
            }
            PollError::Gone => (Code::NotFound, "QUERY_STATE_EXPIRED"),
            PollError::Abandoned(_) => (Code::Unavailable, "QUERY_ABANDONED"),
            PollError::Cancelled => (Code::Cancelled, "QUERY_CANCELLED"),
        };
        let request_id = new_request_id();
        tracing::info!(?code, reason, request_id, message = %error, "poll answered with an error");
        with_error_info(code, error.to_string(), reason, request_id)
    }
}

fn service_status(error: impl Into<ServiceError>) -> Status {
    Status::from(error.into())
}

fn codec(service: &Service) -> TokenCodec {
    TokenCodec::new(Arc::clone(service.tickets.keys()))
}

/// PollFlightInfo: a poll token resumes its job; a Flight SQL query starts one; anything else is
/// answered complete, as GetFlightInfo.
pub(in crate::flight) async fn poll_flight_info(
    service: &Arc<Service>,
    principal: &Principal,
    descriptor: FlightDescriptor,
) -> Result<PollInfo, Status> {
    if token::is_token(&descriptor.cmd) {
        return resume(service, principal, &descriptor.cmd).await;
    }
    let work = match super::decode(&descriptor.cmd) {
        Some(Ok(Command::CommandStatementQuery(query))) => {
            statement_work(service, principal, descriptor, query).await
        }
        Some(Ok(Command::CommandPreparedStatementQuery(query))) => {
            prepared_work(service, principal, descriptor, query).await
        }
        _ => {
            let info =
                super::super::get_flight_info::get_flight_info(service, principal, descriptor)
                    .await
                    .map_err(service_status)?;
            return Ok(complete(info));
        }
    };
    begin(service, work.map_err(service_status)?).await
}

/// Plans a statement as GetFlightInfo does.
async fn statement_work(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
    command: CommandStatementQuery,
) -> Result<Work, ServiceError> {
    let (plan, origin) = super::statement::planned(service, principal, command).await?;
    Ok(Work {
        descriptor,
        plan,
        origin,
    })
}

/// Plans a prepared statement's query with its bound values, as its GetFlightInfo does.
async fn prepared_work(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
    command: CommandPreparedStatementQuery,
) -> Result<Work, ServiceError> {
    let (plan, origin) = super::prepared::planned(service, principal, &command).await?;
    Ok(Work {
        descriptor,
        plan,
        origin,
    })
}

/// Cancels a job whose first poll was abandoned before it was answered (nobody holds its token).
struct CancelUnlessAnswered(Option<Arc<Job>>);

impl Drop for CancelUnlessAnswered {
    fn drop(&mut self) {
        if let Some(job) = self.0.take() {
            job.cancel();
        }
    }
}

/// Starts a job and answers its first poll.
async fn begin(service: &Arc<Service>, work: Work) -> Result<PollInfo, Status> {
    let relations: Vec<Relation> = work
        .plan
        .relations
        .iter()
        .map(|r| Relation {
            schema: r.schema.clone(),
            table: r.table.clone(),
        })
        .collect();
    let partial = FlightInfo::new()
        .try_with_schema(&work.plan.schema)
        .map_err(service_status)?
        .with_descriptor(work.descriptor.clone())
        .with_ordered(false);
    let job = Job::new(
        service.stager.new_job_id(),
        partial,
        job::update_interval(service.poll_wait),
    );
    tracing::Span::current().record("job_id", job.id.as_str());
    job::start(service, &job, work);
    let mut unanswered = CancelUnlessAnswered(Some(Arc::clone(&job)));
    let mut snapshot = job.wait(service.poll_wait).await;
    if matches!(snapshot.phase, Phase::Running) {
        // A client is about to hold the token: from now on any replica must find the job.
        job.publish(service).await.map_err(service_status)?;
        snapshot = job.snapshot();
        tracing::info!(job_id = job.id, "query answered as running; poll again");
    }
    unanswered.0 = None;
    answer(service, &job.id, relations, Some(&job.partial), snapshot)
}

/// A later poll: the job the token names, as it is now.
async fn resume(
    service: &Arc<Service>,
    principal: &Principal,
    token: &[u8],
) -> Result<PollInfo, Status> {
    let payload = codec(service)
        .decode(token, SystemTime::now())
        .map_err(PollError::from)?;
    authorize(principal, &payload.relations).map_err(service_status)?;
    tracing::Span::current().record("job_id", payload.job_id.as_str());
    if let Some(job) = service.poll_jobs.get(&payload.job_id) {
        let snapshot = job.wait(service.poll_wait).await;
        return answer(
            service,
            &payload.job_id,
            payload.relations,
            Some(&job.partial),
            snapshot,
        );
    }
    let state = service
        .stager
        .read_job(&payload.job_id)
        .await
        .map_err(service_status)?
        .ok_or(PollError::Gone)?;
    let phase = job::phase_of(&state).ok_or(PollError::Gone)?;
    if matches!(phase, Phase::Running) {
        if service
            .stager
            .job_cancel_requested(&payload.job_id)
            .await
            .map_err(service_status)?
        {
            return Err(PollError::Cancelled.into());
        }
        let age = unix_ms(SystemTime::now()).saturating_sub(state.updated_ms);
        let age = Duration::from_millis(age.max(0) as u64);
        if age > job::stale_after(Duration::from_millis(state.update_interval_ms)) {
            return Err(PollError::Abandoned(age).into());
        }
    }
    let partial = job::partial_of(&state);
    let snapshot = job::Snapshot::from_state(phase, &state);
    answer(
        service,
        &payload.job_id,
        payload.relations,
        partial.as_ref(),
        snapshot,
    )
}

/// Checks the caller may read every relation a token names (a token is no permission).
fn authorize(principal: &Principal, relations: &[Relation]) -> Result<(), ServiceError> {
    for relation in relations {
        principal.check(&relation.schema, &relation.table)?;
    }
    Ok(())
}

/// The PollInfo of a job's state.
fn answer(
    service: &Service,
    job_id: &str,
    relations: Vec<Relation>,
    partial: Option<&FlightInfo>,
    snapshot: job::Snapshot,
) -> Result<PollInfo, Status> {
    match snapshot.phase {
        Phase::Done(info) => Ok(complete(*info)),
        Phase::Failed(status) => Err(status),
        Phase::Cancelled => Err(PollError::Cancelled.into()),
        Phase::Running => {
            let partial = partial.ok_or(PollError::Gone)?;
            let progress = snapshot.progress.clamp(0.0, job::MAX_RUNNING_PROGRESS);
            let expires = SystemTime::now() + service.stager.ttl();
            let token =
                codec(service).encode(&PollPayload::new(job_id.to_string(), relations, expires));
            let metadata = serde_json::json!({
                "job_id": job_id,
                "state": "running",
                "progress": progress,
                "poll_token": BASE64.encode(&token),
            });
            let info = partial
                .clone()
                .with_app_metadata(serde_json::to_vec(&metadata).unwrap_or_default());
            Ok(PollInfo {
                info: Some(info),
                flight_descriptor: Some(FlightDescriptor::new_cmd(token)),
                progress: Some(progress),
                expiration_time: Some(timestamp_ms(unix_ms(expires))),
            })
        }
    }
}

/// A complete answer: the FlightInfo, nothing to poll again, progress 1; it expires with its
/// first endpoint.
fn complete(info: FlightInfo) -> PollInfo {
    let expiration_time = info
        .endpoint
        .iter()
        .filter_map(|e| e.expiration_time)
        .min_by_key(|t| (t.seconds, t.nanos));
    PollInfo {
        info: Some(info),
        flight_descriptor: None,
        progress: Some(1.0),
        expiration_time,
    }
}

/// The poll token a FlightInfo from a running poll carries (in its `app_metadata`, or as its
/// descriptor), if any.
pub(in crate::flight) fn token_of(info: &FlightInfo) -> Option<Vec<u8>> {
    let from_metadata = serde_json::from_slice::<serde_json::Value>(&info.app_metadata)
        .ok()
        .and_then(|m| m.get("poll_token")?.as_str().map(str::to_string))
        .and_then(|t| BASE64.decode(t).ok())
        .filter(|t| token::is_token(t));
    from_metadata.or_else(|| {
        info.flight_descriptor
            .as_ref()
            .map(|d| d.cmd.to_vec())
            .filter(|cmd| token::is_token(cmd))
    })
}

/// CancelFlightInfo of a running poll's FlightInfo: the job is cancelled here if this replica
/// runs it (the UNLOAD stops on Redshift, what it staged is deleted), else its replica is asked
/// through S3 (`Cancelling`); a job that finished has its staged run deleted.
pub(in crate::flight) async fn cancel(
    service: &Service,
    principal: &Principal,
    token: &[u8],
) -> Result<CancelStatus, ServiceError> {
    let payload = codec(service)
        .decode(token, SystemTime::now())
        .map_err(|e| ServiceError::FlightSql(e.to_string()))?;
    authorize(principal, &payload.relations)?;
    let id = payload.job_id.as_str();
    if let Some(job) = service.poll_jobs.get(id) {
        job.cancel();
        let snapshot = job.wait(Duration::from_secs(10)).await;
        return match snapshot.phase {
            Phase::Cancelled => Ok(CancelStatus::Cancelled),
            Phase::Running => Ok(CancelStatus::Cancelling),
            Phase::Done(info) => cancel_finished(service, principal, id, &info).await,
            Phase::Failed(_) => Ok(CancelStatus::NotCancellable),
        };
    }
    let Some(state) = service.stager.read_job(id).await? else {
        return Ok(CancelStatus::NotCancellable);
    };
    match job::phase_of(&state) {
        Some(Phase::Running) => {
            service.stager.request_job_cancel(id).await?;
            tracing::info!(
                job_id = id,
                "cancellation asked of the replica running the query"
            );
            Ok(CancelStatus::Cancelling)
        }
        Some(Phase::Done(info)) => cancel_finished(service, principal, id, &info).await,
        Some(Phase::Cancelled) => Ok(CancelStatus::Cancelled),
        Some(Phase::Failed(_)) | None => Ok(CancelStatus::NotCancellable),
    }
}

/// Cancels a job that finished: its staged run is deleted and later polls answer CANCELLED.
async fn cancel_finished(
    service: &Service,
    principal: &Principal,
    job_id: &str,
    info: &FlightInfo,
) -> Result<CancelStatus, ServiceError> {
    super::super::actions::cancel_runs(service, Some(principal), info).await?;
    let mut state = match service.stager.read_job(job_id).await? {
        Some(state) => state,
        // Never published: nobody polls it.
        None => return Ok(CancelStatus::Cancelled),
    };
    state.state = crate::stage::jobs::JobPhase::Cancelled;
    state.flight_info = String::new();
    state.updated_ms = unix_ms(SystemTime::now());
    let until = SystemTime::now() + service.stager.ttl();
    service.stager.write_job(job_id, &state, until).await?;
    Ok(CancelStatus::Cancelled)
}
