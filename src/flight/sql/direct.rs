//! Flight SQL queries answered on the connection: when Redshift estimates (`EXPLAIN`) a query's
//! result at fewer than `direct_max_rows` rows, GetFlightInfo stages nothing. Its one endpoint's
//! ticket (`TicketStatementQuery`) holds a signed direct handle (`super::handle`, magic `RSD1`)
//! carrying the query and its bound values; DoGet validates, authorises and describes it again
//! (a ticket is not a permission), checks the result still has the promised columns, and runs it
//! once through a cursor (`crate::redshift::RowCursor`), converting each fetch to Arrow with the
//! same conversion as staged files (`crate::direct`).
//!
//! Imports: the parent's statement planning and handles, `crate::direct`, `crate::stage::columns`.

use std::sync::Arc;
use std::time::SystemTime;

use arrow_flight::sql::{ProstMessageExt, TicketStatementQuery};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use prost::Message;
use serde::Serialize;
use tonic::Status;

use super::super::{Service, ServiceError};
use super::handle::{BoundValue, HandleCodec, HandleError, HandlePayload};
use super::statement::{Parameters, plan};
use crate::auth::Principal;
use crate::direct::{fetch_rows, to_record_batch};
use crate::plan::Plan;
use crate::redshift::RedshiftError;
use crate::stage::columns::RunColumns;

/// What a query was planned from: the text and bound values a direct ticket carries so that DoGet
/// can plan it again.
#[derive(Debug, Clone, Default)]
pub(super) struct Origin {
    /// The client's SQL.
    pub(super) query: String,
    /// A prepared statement's bound values (empty for a plain statement).
    pub(super) parameters: Vec<BoundValue>,
}

/// FlightInfo.app_metadata of a direct answer, as JSON.
#[derive(Debug, Serialize)]
struct AppMetadata<'a> {
    query: &'a str,
    direct: bool,
    estimated_rows: u64,
}

fn codec(service: &Service) -> HandleCodec {
    HandleCodec::direct(Arc::clone(service.tickets.keys()))
}

/// The FlightInfo of a query small enough to answer on the connection, or `None` when it should
/// be staged by UNLOAD (direct answers disabled, no estimate, or too many rows estimated).
pub(super) async fn flight_info(
    service: &Service,
    descriptor: &FlightDescriptor,
    plan: &Plan,
    origin: &Origin,
) -> Result<Option<FlightInfo>, ServiceError> {
    if service.direct_max_rows == 0 {
        return Ok(None);
    }
    let estimate = match service.stager.warehouse().estimate(&plan.select).await {
        Ok(Some(estimate)) if estimate.rows < service.direct_max_rows => estimate,
        Ok(_) => return Ok(None),
        Err(error) => {
            // An estimate is an optimisation: without one the query is staged as usual.
            tracing::debug!(%error, "no EXPLAIN estimate; staging the query");
            return Ok(None);
        }
    };
    let now = SystemTime::now();
    let expires = now + service.stager.ttl();
    let mut payload = HandlePayload::new(origin.query.clone(), origin.parameters.clone(), now);
    payload.expires_at_ms = crate::clock::unix_ms(expires);
    payload.columns_sha256 = RunColumns::new(&plan.columns, &[]).fingerprint().to_vec();
    payload.fetch_rows = fetch_rows(estimate.width) as u64;
    let ticket = ticket_of(&codec(service), &payload);
    let metadata = AppMetadata {
        query: &plan.table.table.table,
        direct: true,
        estimated_rows: estimate.rows,
    };
    tracing::info!(
        estimated_rows = estimate.rows,
        width = estimate.width,
        "query answered on the connection"
    );
    Ok(Some(
        FlightInfo::new()
            .try_with_schema(&plan.schema)?
            .with_descriptor(descriptor.clone())
            .with_endpoint(
                service
                    .endpoint(ticket)
                    .with_expiration_time(super::super::timestamp_ms(payload.expires_at_ms)),
            )
            .with_app_metadata(serde_json::to_vec(&metadata).unwrap_or_default()),
    ))
}

/// Whether `ticket` is a direct ticket (a Flight SQL `TicketStatementQuery`).
pub(in crate::flight) fn is_direct_ticket(ticket: &[u8]) -> bool {
    matches!(
        super::decode(ticket),
        Some(Ok(arrow_flight::sql::Command::TicketStatementQuery(_)))
    )
}

/// RenewFlightEndpoint of a direct ticket: the same ticket with a new expiry (the staging TTL
/// from now). Nothing is staged, so nothing else is renewed; DoGet checks the caller.
pub(in crate::flight) fn renew(
    service: &Service,
    ticket: &[u8],
) -> Result<(Ticket, i64), ServiceError> {
    let Some(Ok(arrow_flight::sql::Command::TicketStatementQuery(command))) = super::decode(ticket)
    else {
        return Err(ServiceError::FlightSql("not a direct query ticket".into()));
    };
    let codec = codec(service);
    let mut payload = codec.decode(&command.statement_handle, SystemTime::now())?;
    payload.expires_at_ms = crate::clock::unix_ms(SystemTime::now() + service.stager.ttl());
    Ok((ticket_of(&codec, &payload), payload.expires_at_ms))
}

/// The direct ticket carrying `payload`: an `Any`-wrapped `TicketStatementQuery`.
fn ticket_of(codec: &HandleCodec, payload: &HandlePayload) -> Ticket {
    let command = TicketStatementQuery {
        statement_handle: codec.encode(payload).into(),
    };
    Ticket::new(command.as_any().encode_to_vec())
}

/// DoGet of a direct ticket: plans the query again for this caller and streams its rows.
pub(super) async fn do_get(
    service: &Service,
    principal: &Principal,
    command: TicketStatementQuery,
) -> Result<BoxStream<'static, Result<FlightData, Status>>, ServiceError> {
    let payload = codec(service).decode(&command.statement_handle, SystemTime::now())?;
    let values = super::prepared::bound_values(service, &payload).await?;
    let parameters = if payload.parameters.is_empty() {
        Parameters::Refused
    } else {
        Parameters::Bound(&values)
    };
    let plan = plan(service, principal, &payload.query, parameters).await?;
    if RunColumns::new(&plan.columns, &[]).fingerprint().as_slice() != payload.columns_sha256 {
        return Err(HandleError::Changed.into());
    }
    let fetch = usize::try_from(payload.fetch_rows).unwrap_or(1).max(1);
    let cursor = service
        .stager
        .warehouse()
        .open_cursor(&plan.select, fetch)
        .await
        .map_err(query_error)?;
    let schema = Arc::clone(&plan.schema);
    let types: Vec<_> = plan
        .columns
        .iter()
        .map(|c| c.redshift_type.clone())
        .collect();
    let batches = futures::stream::try_unfold(cursor, |mut cursor| async move {
        Ok::<_, ServiceError>(
            cursor
                .next_batch()
                .await
                .map_err(query_error)?
                .map(|b| (b, cursor)),
        )
    })
    .and_then(move |rows| {
        let result = to_record_batch(&rows, &schema, &types).map_err(|e| {
            ServiceError::FlightSql(format!("a row Redshift returned does not convert: {e}"))
        });
        futures::future::ready(result)
    })
    .map_err(|e| arrow_flight::error::FlightError::Tonic(Box::new(Status::from(e))));
    Ok(arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_schema(Arc::clone(&plan.schema))
        .build(batches)
        .map_err(Status::from)
        .boxed())
}

/// Redshift's error running the client's query (classified by the error contract: the
/// client's own fault, such as a bad cast, is INVALID_ARGUMENT with Redshift's message).
fn query_error(source: RedshiftError) -> ServiceError {
    ServiceError::QueryFailed { source }
}
