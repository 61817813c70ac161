//! GetFlightInfo: resolve the request, plan it, stage it with UNLOAD, and describe the staged
//! files as endpoints, one per manifest file, each with a signed ticket.

use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};
use prost_types::Timestamp;
use serde::Serialize;

use super::{Service, ServiceError};
use crate::plan::{FlightRequest, Mode, Plan};
use crate::ticket::{TICKET_VERSION, TicketColumn, TicketPayload, unix_ms};

/// FlightInfo.app_metadata, as JSON.
#[derive(Debug, Serialize)]
struct AppMetadata<'a> {
    table: String,
    mode: Mode,
    reason: &'a str,
    replication_key: Option<&'a str>,
    next_cursor: Option<&'a str>,
    run_id: &'a str,
    expires_at: String,
    files: usize,
}

pub(super) async fn get_flight_info(
    service: &Service,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, ServiceError> {
    let request = FlightRequest::try_from_descriptor(&descriptor)?;
    let table = service
        .resolve(request.schema.as_deref(), &request.table)
        .await?;
    let span = tracing::Span::current();
    span.record("table", tracing::field::display(&table.table));
    let plan = Plan::try_new(table, &request)?;
    let run = service.stager.stage(&plan).await?;
    span.record("run_id", run.run_id.as_str());

    let expires_at_ms = unix_ms(run.expires_at);
    let columns: Vec<TicketColumn> = plan
        .columns
        .iter()
        .map(|c| TicketColumn {
            name: c.name.clone(),
            catalog_type: c.catalog_type.clone(),
            nullable: c.nullable,
        })
        .collect();
    let expiration = Timestamp {
        seconds: expires_at_ms.div_euclid(1000),
        nanos: (expires_at_ms.rem_euclid(1000) * 1_000_000) as i32,
    };
    let endpoints = run
        .files
        .iter()
        .map(|file| {
            let payload = TicketPayload {
                version: TICKET_VERSION,
                schema: plan.table.table.schema.clone(),
                table: plan.table.table.table.clone(),
                run_id: run.run_id.clone(),
                key: file.key.clone(),
                file_size: file.size,
                rows: file.rows,
                columns: columns.clone(),
                expires_at_ms,
                primary_key: plan.table.primary_key.clone(),
            };
            FlightEndpoint::new()
                .with_ticket(Ticket::new(service.tickets.encode(&payload)))
                .with_expiration_time(expiration)
        })
        .collect();
    let expires: chrono::DateTime<chrono::Utc> = run.expires_at.into();
    let metadata = AppMetadata {
        table: plan.table.table.to_string(),
        mode: plan.mode,
        reason: &plan.reason,
        replication_key: None,
        next_cursor: None,
        run_id: &run.run_id,
        expires_at: expires.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        files: run.files.len(),
    };
    let app_metadata = serde_json::to_vec(&metadata).unwrap_or_default();
    tracing::info!(
        rows = run.total_rows(),
        bytes = run.total_bytes(),
        files = run.files.len(),
        "staged"
    );
    Ok(FlightInfo::new()
        .try_with_schema(&plan.schema)?
        .with_descriptor(descriptor)
        .with_endpoints(endpoints)
        .with_total_records(run.total_rows() as i64)
        .with_total_bytes(run.total_bytes() as i64)
        .with_ordered(false)
        .with_app_metadata(app_metadata))
}
