//! DoAction: `CancelFlightInfo` deletes a flight's staged run at once (or, given the partial
//! FlightInfo of a query still running after PollFlightInfo, cancels that query: see
//! `super::sql::poll`); `RenewFlightEndpoint`
//! extends an endpoint's life (a new ticket with a later expiry, and a lease on the run so the
//! sweeper keeps it). Both find the run through the endpoints' signed, unexpired tickets, never
//! through anything the client could forge, and both check that the caller may read the ticket's
//! table (access may have been revoked since the ticket was issued), or for a Flight SQL query's
//! run every relation the query read. `CreatePreparedStatement` and `ClosePreparedStatement`
//! (Flight SQL) are `super::sql::prepared`'s. `CloseSession` (sent by ADBC on disconnect) succeeds: the
//! server keeps no session state.

use std::time::SystemTime;

use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightEndpoint, FlightInfo, RenewFlightEndpointRequest, Ticket,
};
use prost::Message;

use super::sql::prepared::{self, CLOSE_PREPARED_STATEMENT, CREATE_PREPARED_STATEMENT};
use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::clock::unix_ms;
use crate::plan::PlanError;

/// Action type of CancelFlightInfo (Flight protocol).
pub(super) const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";
/// Action type of RenewFlightEndpoint (Flight protocol).
pub(super) const RENEW_FLIGHT_ENDPOINT: &str = "RenewFlightEndpoint";

/// Action type of CloseSession (Flight protocol, sessions).
pub(super) const CLOSE_SESSION: &str = "CloseSession";

/// `arrow.flight.protocol.CloseSessionResult` (arrow-flight has no type for it): status 1 is
/// `CLOSED`.
#[derive(Clone, PartialEq, prost::Message)]
struct CloseSessionResult {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// The actions this server offers.
pub(super) fn list() -> Vec<ActionType> {
    vec![
        ActionType {
            r#type: CANCEL_FLIGHT_INFO.into(),
            description: "Delete the staged files of a FlightInfo now (body: CancelFlightInfoRequest)".into(),
        },
        ActionType {
            r#type: RENEW_FLIGHT_ENDPOINT.into(),
            description: "Extend an endpoint's expiration (body: RenewFlightEndpointRequest; result: FlightEndpoint)"
                .into(),
        },
        ActionType {
            r#type: CREATE_PREPARED_STATEMENT.into(),
            description: "Flight SQL: prepare a query (body: Any(ActionCreatePreparedStatementRequest); result: Any(ActionCreatePreparedStatementResult))".into(),
        },
        ActionType {
            r#type: CLOSE_PREPARED_STATEMENT.into(),
            description: "Flight SQL: close a prepared statement (body: Any(ActionClosePreparedStatementRequest))".into(),
        },
    ]
}

fn bad(message: impl Into<String>) -> ServiceError {
    ServiceError::Plan(PlanError::Descriptor(message.into()))
}

/// Deletes the staged runs of a FlightInfo's endpoints, found through their signed, unexpired
/// tickets. With a principal, it must be allowed to read what each run holds (a job's own task,
/// cancelling a query a caller already cancelled, passes none).
pub(super) async fn cancel_runs(
    service: &Service,
    principal: Option<&Principal>,
    info: &FlightInfo,
) -> Result<CancelStatus, ServiceError> {
    let mut runs: Vec<(String, String, u32)> = Vec::new();
    for endpoint in &info.endpoint {
        let ticket = endpoint
            .ticket
            .as_ref()
            .ok_or_else(|| bad("an endpoint has no ticket"))?;
        // A query answered on the connection staged nothing: there is nothing to delete.
        if super::sql::direct::is_direct_ticket(&ticket.ticket) {
            continue;
        }
        // Only a caller who may read the table, holding a live ticket, may delete its
        // run: an expired ticket's run is the sweeper's to delete.
        let payload = service.tickets.decode(&ticket.ticket, SystemTime::now())?;
        if let Some(principal) = principal {
            service.check_ticket(principal, &payload).await?;
        }
        let run = (payload.run_id, payload.reader, payload.run_endpoints);
        if !runs.contains(&run) {
            runs.push(run);
        }
    }
    for (run_id, reader, run_endpoints) in &runs {
        service.snapshots.forget_run(run_id);
        service
            .stager
            .cancel_run(run_id, reader, *run_endpoints)
            .await?;
    }
    Ok(if runs.is_empty() {
        CancelStatus::NotCancellable
    } else {
        CancelStatus::Cancelled
    })
}

pub(super) async fn do_action(
    service: &Service,
    principal: &Principal,
    action: Action,
) -> Result<Vec<arrow_flight::Result>, ServiceError> {
    match action.r#type.as_str() {
        CANCEL_FLIGHT_INFO => {
            let request = CancelFlightInfoRequest::decode(action.body).map_err(|e| {
                bad(format!(
                    "CancelFlightInfo body is not a CancelFlightInfoRequest: {e}"
                ))
            })?;
            let info = request
                .info
                .ok_or_else(|| bad("CancelFlightInfoRequest has no info"))?;
            // A running poll's FlightInfo (no endpoints yet) names its job by a poll token.
            let status = match super::sql::poll::token_of(&info) {
                Some(token) if info.endpoint.is_empty() => {
                    super::sql::poll::cancel(service, principal, &token).await?
                }
                _ => cancel_runs(service, Some(principal), &info).await?,
            };
            let result = CancelFlightInfoResult {
                status: status as i32,
            };
            Ok(vec![arrow_flight::Result {
                body: result.encode_to_vec().into(),
            }])
        }
        RENEW_FLIGHT_ENDPOINT => {
            let request = RenewFlightEndpointRequest::decode(action.body).map_err(|e| {
                bad(format!(
                    "RenewFlightEndpoint body is not a RenewFlightEndpointRequest: {e}"
                ))
            })?;
            let endpoint = request
                .endpoint
                .ok_or_else(|| bad("RenewFlightEndpointRequest has no endpoint"))?;
            let ticket = endpoint
                .ticket
                .as_ref()
                .ok_or_else(|| bad("the endpoint has no ticket"))?;
            if super::sql::direct::is_direct_ticket(&ticket.ticket) {
                let (ticket, expires_at_ms) = super::sql::direct::renew(service, &ticket.ticket)?;
                let renewed = FlightEndpoint {
                    ticket: Some(ticket),
                    expiration_time: Some(super::timestamp_ms(expires_at_ms)),
                    ..endpoint
                };
                return Ok(vec![arrow_flight::Result {
                    body: renewed.encode_to_vec().into(),
                }]);
            }
            let mut payload = service.tickets.decode(&ticket.ticket, SystemTime::now())?;
            service.check_ticket(principal, &payload).await?;
            let until = SystemTime::now() + service.stager.ttl();
            service.stager.renew_run(&payload.run_id, until).await?;
            payload.expires_at_ms = unix_ms(until);
            let renewed = FlightEndpoint {
                ticket: Some(Ticket::new(service.tickets.encode(&payload))),
                expiration_time: Some(super::timestamp_ms(payload.expires_at_ms)),
                ..endpoint
            };
            Ok(vec![arrow_flight::Result {
                body: renewed.encode_to_vec().into(),
            }])
        }
        CREATE_PREPARED_STATEMENT => Ok(vec![arrow_flight::Result {
            body: prepared::create(service, principal, &action.body)
                .await?
                .into(),
        }]),
        CLOSE_PREPARED_STATEMENT => {
            prepared::close(service, &action.body)?;
            Ok(Vec::new())
        }
        // Flight SQL clients (ADBC) close their session on disconnect; there is no session
        // state here, so it is closed already.
        CLOSE_SESSION => Ok(vec![arrow_flight::Result {
            body: CloseSessionResult { status: 1 }.encode_to_vec().into(),
        }]),
        other => Err(ServiceError::Plan(PlanError::Unsupported(format!(
            "action {other:?} is not supported (ListActions lists {CANCEL_FLIGHT_INFO}, {RENEW_FLIGHT_ENDPOINT}, {CREATE_PREPARED_STATEMENT} and {CLOSE_PREPARED_STATEMENT})"
        )))),
    }
}
