//! GetFlightInfo: resolve the request, plan it, freeze the cursor window with `SELECT MAX(key)`,
//! stage it with UNLOAD, and describe the staged files as endpoints, one per manifest file, each
//! with a signed ticket. `next_cursor` is in `app_metadata` before any data moves.

use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use serde::Serialize;

use super::snapshots::{Snapshot, SnapshotKey};
use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::catalog::TableKind;
use crate::plan::{FlightRequest, GeometryEncoding, Mode, Plan, PlanError, Window};
use crate::redshift::RedshiftError;
use crate::stage::{StageError, StagedRun, new_reader_id};
use crate::ticket::{TICKET_VERSION, TicketPayload, unix_ms};

/// Largest FlightInfo sent: gRPC clients refuse bigger messages by default.
pub(crate) const MAX_FLIGHT_INFO_BYTES: usize = 4 << 20;

/// FlightInfo.app_metadata, as JSON (documented in proto-docs/).
#[derive(Debug, Serialize)]
struct AppMetadata<'a> {
    table: String,
    mode: Mode,
    reason: &'a str,
    replication_key: Option<&'a str>,
    replication_key_source: Option<&'a str>,
    next_cursor: Option<String>,
    lower_bound: Option<&'a str>,
    upper_bound: Option<&'a str>,
    lookback: Option<&'a serde_json::Value>,
    run_id: Option<&'a str>,
    expires_at: Option<String>,
    files: usize,
    snapshot_reused: bool,
}

pub(super) async fn get_flight_info(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, ServiceError> {
    if let Some(command) = super::sql::decode(&descriptor.cmd) {
        return super::sql::get_flight_info(service, principal, descriptor, command?).await;
    }
    let request = FlightRequest::try_from_descriptor(&descriptor)?;
    let reader = new_reader_id();
    if !service.snapshots.enabled() {
        return Ok(
            stage_answer(service, principal, &request, &descriptor, &reader, None)
                .await?
                .info,
        );
    }
    // Resolving first checks the caller may read the table, whoever staged the snapshot.
    let table = service
        .resolve(principal, request.schema.as_deref(), &request.table)
        .await?;
    let key = SnapshotKey::new(&table.table, &request);
    let across_replicas = service.share_across_replicas.then_some(&key);
    let (snapshot, _) = service
        .snapshots
        .get_or_compute(key.clone(), || {
            stage_answer(
                service,
                principal,
                &request,
                &descriptor,
                &reader,
                across_replicas,
            )
        })
        .await?;
    if snapshot.first_reader == reader {
        return Ok(snapshot.info);
    }
    match join(service, snapshot, &reader, descriptor.clone()).await {
        Some(info) => Ok(info),
        None => Ok(
            stage_answer(service, principal, &request, &descriptor, &reader, None)
                .await?
                .info,
        ),
    }
}

/// Plans `request` and stages it (planning once more if the cached catalog turns out stale),
/// answering with tickets for `reader`. With `across_replicas`, the UNLOAD is shared with
/// identical requests on other replicas that froze the same window (a claim in S3 decides which
/// replica runs it; see [`crate::stage::flights`]); a request with nothing new runs no UNLOAD and
/// claims nothing.
async fn stage_answer(
    service: &Service,
    principal: &Principal,
    request: &FlightRequest,
    descriptor: &FlightDescriptor,
    reader: &str,
    across_replicas: Option<&SnapshotKey>,
) -> Result<Snapshot, ServiceError> {
    let once = || async {
        let plan = plan(service, principal, request).await?;
        let Some(key) = across_replicas.filter(|_| plan.1 == Window::Read) else {
            return stage_here(service, request, descriptor, plan, reader).await;
        };
        let (plan, _) = plan;
        // The same request with the same frozen window is the same snapshot.
        let key = format!("{}|{}", key.as_str(), plan.upper.as_deref().unwrap_or(""));
        let shared = service
            .stager
            .single_flight(&key, service.snapshots.window(), || async {
                let snapshot = stage_here(
                    service,
                    request,
                    descriptor,
                    (plan.clone(), Window::Read),
                    reader,
                )
                .await?;
                Ok::<_, ServiceError>(snapshot.to_shared())
            })
            .await?;
        match Snapshot::from_shared(shared) {
            Some(snapshot) => Ok(snapshot),
            None => {
                tracing::warn!("another replica shared an unreadable FlightInfo; staging afresh");
                stage_here(service, request, descriptor, (plan, Window::Read), reader).await
            }
        }
    };
    match once().await {
        // The cached catalog is older than the table: forget it and plan once more.
        Err(error) if is_stale_catalog(&error) => {
            tracing::info!(%error, "the table changed since it was cached; reloading its catalog");
            let schema = request
                .schema
                .as_deref()
                .unwrap_or(service.catalog.default_schema());
            service.catalog.invalidate(schema).await;
            match once().await {
                Err(error) => Err(name_unresolved_view(service, request, error).await),
                ok => ok,
            }
        }
        Err(error) => Err(name_unresolved_view(service, request, error).await),
        ok => ok,
    }
}

/// A late-binding view whose tables changed so that it no longer resolves fails its MAX or its
/// UNLOAD with an unknown relation or column (or a changed type) even with a fresh catalog:
/// that is the view's state, which the client is told by name (FAILED_PRECONDITION), not a
/// missing table or a server fault. Any other error is returned as it is.
async fn name_unresolved_view(
    service: &Service,
    request: &FlightRequest,
    error: ServiceError,
) -> ServiceError {
    let unresolved = |e: &RedshiftError| matches!(e, RedshiftError::Sql { code, .. } if matches!(code.as_str(), "42703" | "42P01" | "42804"));
    if !matches!(&error, ServiceError::Stage(StageError::Max { source, .. } | StageError::Unload { source, .. }) if unresolved(source))
    {
        return error;
    }
    let schema = request
        .schema
        .as_deref()
        .unwrap_or(service.catalog.default_schema());
    let Ok(schema) = service.catalog.resolve_schema(schema).await else {
        return error;
    };
    let view = match service.catalog.table(&schema, &request.table).await {
        Ok(Some(table)) if table.kind == TableKind::LateBindingView => table.table.to_string(),
        _ => return error,
    };
    match error {
        ServiceError::Stage(StageError::Max { source, .. } | StageError::Unload { source, .. }) => {
            ServiceError::ViewUnresolved { view, source }
        }
        other => other,
    }
}

/// Stages a planned request on this replica (when there is anything to read) and answers it.
async fn stage_here(
    service: &Service,
    request: &FlightRequest,
    descriptor: &FlightDescriptor,
    (plan, window): (Plan, Window),
    reader: &str,
) -> Result<Snapshot, ServiceError> {
    let run = match window {
        Window::Read => Some(service.stager.stage(&plan).await?),
        Window::NothingNew => None,
    };
    if let Some(run) = &run {
        // Staging wrote the run's columns object; DoGet on this replica needs no GET for it.
        service
            .columns
            .insert(&run.run_id, std::sync::Arc::clone(&run.columns));
        tracing::Span::current().record("run_id", run.run_id.as_str());
        tracing::info!(
            rows = run.total_rows(),
            bytes = run.total_bytes(),
            files = run.files.len(),
            endpoints = run.parts.len(),
            "staged"
        );
    } else {
        tracing::info!("nothing new since the cursor: no UNLOAD");
    }
    let metadata = AppMetadata {
        table: plan.table.table.to_string(),
        mode: plan.mode,
        reason: &plan.reason,
        replication_key: plan.key.as_ref().map(|k| k.column.name.as_str()),
        replication_key_source: plan.key.as_ref().map(|k| k.source),
        next_cursor: plan.next_cursor(),
        lower_bound: plan.lower.as_ref().map(|c| c.bound.as_str()),
        upper_bound: plan.upper.as_deref(),
        lookback: request
            .lookback
            .as_ref()
            .filter(|_| plan.lookback.is_some()),
        run_id: run.as_ref().map(|r| r.run_id.as_str()),
        expires_at: run.as_ref().map(|r| {
            chrono::DateTime::<chrono::Utc>::from(r.expires_at)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }),
        files: run.as_ref().map_or(0, |r| r.files.len()),
        snapshot_reused: false,
    };
    let info = staged_flight_info(
        service,
        descriptor.clone(),
        &plan,
        run.as_ref(),
        reader,
        serde_json::to_vec(&metadata).unwrap_or_default(),
    )
    .await?;
    Ok(Snapshot {
        info,
        first_reader: reader.to_string(),
        run: run.map(|r| (r.run_id, r.parts.len() as u32)),
    })
}

/// Joins a snapshot staged for another request (on this replica or another): the tickets are
/// re-signed for `reader`, who is recorded as one of the run's readers. `None` when the run is
/// gone (cancelled, deleted) or its tickets expired: the caller stages afresh.
async fn join(
    service: &Service,
    snapshot: Snapshot,
    reader: &str,
    descriptor: FlightDescriptor,
) -> Option<FlightInfo> {
    let info = match reissue(service, snapshot.info, reader, descriptor) {
        Ok(info) => info,
        Err(error) => {
            tracing::info!(%error, "the shared run's tickets cannot be reissued; staging afresh");
            return None;
        }
    };
    if let Some((run_id, _)) = &snapshot.run {
        tracing::Span::current().record("run_id", run_id.as_str());
        let readers = [snapshot.first_reader.as_str(), reader];
        match service.stager.add_readers(run_id, &readers).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!("the shared run was cancelled or deleted; staging afresh");
                return None;
            }
            Err(error) => {
                tracing::info!(%error, "cannot join the shared run; staging afresh");
                return None;
            }
        }
    }
    service.metrics.snapshot_reuses.inc();
    tracing::info!("joined an identical request's snapshot");
    Some(info)
}

/// `info` answered to `reader`'s request (`descriptor`): every ticket re-signed with `reader`,
/// and `snapshot_reused` set in its metadata.
fn reissue(
    service: &Service,
    mut info: FlightInfo,
    reader: &str,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, ServiceError> {
    let now = std::time::SystemTime::now();
    for endpoint in &mut info.endpoint {
        let Some(ticket) = endpoint.ticket.as_mut() else {
            continue;
        };
        let mut payload = service.tickets.decode(&ticket.ticket, now)?;
        payload.reader = reader.to_string();
        ticket.ticket = service.tickets.encode(&payload).into();
    }
    info.flight_descriptor = Some(descriptor);
    if let Ok(mut metadata) = serde_json::from_slice::<serde_json::Value>(&info.app_metadata) {
        metadata["snapshot_reused"] = serde_json::Value::Bool(true);
        info.app_metadata = serde_json::to_vec(&metadata).unwrap_or_default().into();
    }
    Ok(info)
}

/// The FlightInfo of a plan and its staged run (`None`: nothing to read): the promised schema,
/// one endpoint per part, the totals and `app_metadata`. A FlightInfo clients would refuse (over
/// gRPC's 4 MiB) is never sent; its run is dropped at once.
pub(super) async fn staged_flight_info(
    service: &Service,
    descriptor: FlightDescriptor,
    plan: &Plan,
    run: Option<&StagedRun>,
    reader: &str,
    app_metadata: Vec<u8>,
) -> Result<FlightInfo, ServiceError> {
    let info = FlightInfo::new()
        .try_with_schema(&plan.schema)?
        .with_descriptor(descriptor)
        .with_ordered(false)
        .with_app_metadata(app_metadata);
    let Some(run) = run else {
        return Ok(info.with_total_records(0).with_total_bytes(0));
    };
    let info = info
        .with_endpoints(endpoints(service, plan, run, reader))
        .with_total_records(run.total_rows() as i64)
        .with_total_bytes(run.total_bytes() as i64);
    let bytes = prost::Message::encoded_len(&info);
    if bytes > MAX_FLIGHT_INFO_BYTES {
        if let Err(error) = service
            .stager
            .cancel_run(&run.run_id, reader, run.parts.len() as u32)
            .await
        {
            tracing::warn!(%error, "could not drop the run of an oversized FlightInfo");
        }
        return Err(ServiceError::FlightInfoTooLarge {
            bytes,
            endpoints: run.parts.len(),
        });
    }
    Ok(info)
}

/// Resolves and plans `request`, and freezes its window (correctness rule 1: the upper end is
/// fixed with `SELECT MAX(key)` before any data moves).
async fn plan(
    service: &Service,
    principal: &Principal,
    request: &FlightRequest,
) -> Result<(Plan, Window), ServiceError> {
    let table = service
        .resolve(principal, request.schema.as_deref(), &request.table)
        .await?;
    tracing::Span::current().record("table", tracing::field::display(&table.table));
    let mut plan = Plan::try_new(table, request, service.settings)?;
    let max = service.stager.max_key(&plan).await?;
    let window = plan.close_window(max)?;
    Ok((plan, window))
}

/// Redshift says a column or table of the plan does not exist, or MAX(key) is not of the cached
/// type: the catalog cache is stale.
fn is_stale_catalog(error: &ServiceError) -> bool {
    let stale = |e: &RedshiftError| matches!(e, RedshiftError::Sql { code, .. } if code == "42703" || code == "42P01");
    match error {
        ServiceError::Stage(StageError::Max { source, .. } | StageError::Unload { source, .. }) => {
            stale(source)
        }
        ServiceError::Plan(PlanError::BadMax { .. }) => true,
        _ => false,
    }
}

/// One endpoint per part of a staged file (a row-group range), each with a signed ticket carrying
/// what DoGet needs.
fn endpoints(service: &Service, plan: &Plan, run: &StagedRun, reader: &str) -> Vec<FlightEndpoint> {
    let expires_at_ms = unix_ms(run.expires_at);
    let expiration = super::timestamp_ms(expires_at_ms);
    let columns_sha256 = run.columns.fingerprint().to_vec();
    run.parts
        .iter()
        .map(|part| {
            let file = &run.files[part.file];
            let layout = &run.layouts[part.file];
            let whole = part.row_groups.start == 0
                && part.row_groups.end as usize == layout.row_group_rows.len();
            let payload = TicketPayload {
                version: TICKET_VERSION,
                schema: plan.table.table.namespace(),
                table: plan.table.table.table.clone(),
                run_id: run.run_id.clone(),
                key: file.key.clone(),
                file_size: file.size,
                rows: part.rows,
                expires_at_ms,
                run_endpoints: run.parts.len() as u32,
                row_group_start: if whole { 0 } else { part.row_groups.start },
                row_group_end: if whole { 0 } else { part.row_groups.end },
                footer_len: layout.footer_len,
                reader: reader.to_string(),
                dictionary: plan.dictionary,
                columns_sha256: columns_sha256.clone(),
                ewkb: plan.geometry == GeometryEncoding::Ewkb,
            };
            service
                .endpoint(Ticket::new(service.tickets.encode(&payload)))
                .with_expiration_time(expiration)
        })
        .collect()
}
