//! Flight SQL on the same port as plain Flight: ADBC, the JDBC/ODBC drivers and BI tools send
//! `google.protobuf.Any`-wrapped `arrow.flight.protocol.sql` messages as descriptor commands,
//! tickets and actions; plain Flight's JSON commands and `RSF2` tickets never look like one, so
//! each RPC recognises a Flight SQL message by its first bytes and its type URL and routes it
//! here.
//!
//! - queries ([`statement`]): `CommandStatementQuery` is validated (`crate::sql::query`), every
//!   relation it reads is checked against the caller's table patterns, its result schema is
//!   described on Redshift, and it is staged by UNLOAD like a table read; its endpoints carry
//!   ordinary signed tickets, so DoGet is the plain Flight path;
//! - prepared statements ([`prepared`]): the handle ([`handle`]) is a signed token carrying the
//!   query and its bound values; each use runs as a `CommandStatementQuery`;
//! - long queries ([`poll`]): PollFlightInfo runs a query on a task of its own and answers with
//!   its progress and a signed poll token until it is staged; CancelFlightInfo stops it;
//! - metadata ([`metadata`]): `CommandGetSqlInfo`, `CommandGetCatalogs`, `CommandGetDbSchemas`,
//!   `CommandGetTables`, `CommandGetTableTypes`, `CommandGetPrimaryKeys`,
//!   `CommandGetXdbcTypeInfo` and empty key listings, answered from the catalog cache and filtered
//!   by the caller's table patterns; their ticket is the command itself;
//! - everything that writes (`CommandStatementUpdate`, DoPut of data other than a prepared
//!   statement's parameters, transactions, Substrait)
//!   is UNIMPLEMENTED: this is a read-only service.
//!
//! Imports: the parent's `Service` and errors, `crate::sql`, `crate::plan`, `crate::catalog`,
//! `crate::auth`.

pub(super) mod bind;
pub(super) mod direct;
pub(super) mod handle;
pub(super) mod metadata;
pub(super) mod poll;
pub(super) mod prepared;
pub(super) mod statement;

use arrow_flight::sql::{Any, Command};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use prost::Message;
use tonic::Status;

use super::{Service, ServiceError};
use crate::auth::Principal;

/// Type URLs of Flight SQL messages start with this.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/arrow.flight.protocol.sql.";

/// The Flight SQL message in `bytes` (a descriptor command or a ticket), or `None` when the bytes
/// are not one (a plain Flight JSON command, an `RSF2` ticket). An `Any` starts with its
/// `type_url` field (tag byte 0x0A); JSON starts with `{` and tickets with `R`.
pub(super) fn decode(bytes: &[u8]) -> Option<Result<Command, ServiceError>> {
    if bytes.first() != Some(&0x0A) {
        return None;
    }
    let any = Any::decode(bytes).ok()?;
    if !any.type_url.starts_with(TYPE_URL_PREFIX) {
        return None;
    }
    Some(Command::try_from(any).map_err(|e| ServiceError::FlightSql(e.to_string())))
}

/// GetFlightInfo for a Flight SQL command.
pub(super) async fn get_flight_info(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
    command: Command,
) -> Result<FlightInfo, ServiceError> {
    match command {
        Command::CommandStatementQuery(query) => {
            statement::get_flight_info(service, principal, descriptor, query).await
        }
        Command::CommandPreparedStatementQuery(query) => {
            prepared::get_flight_info(service, principal, descriptor, query).await
        }
        command => match metadata::schema(service, &command) {
            Some(schema) => {
                // The answer is computed at DoGet; the ticket is the command itself.
                let ticket = Ticket::new(command.into_any().encode_to_vec());
                Ok(FlightInfo::new()
                    .try_with_schema(&schema)?
                    .with_descriptor(descriptor)
                    .with_endpoint(service.endpoint(ticket))
                    .with_ordered(true))
            }
            None => Err(unimplemented(&command)),
        },
    }
}

/// GetSchema for a Flight SQL command.
pub(super) async fn get_schema(
    service: &Service,
    principal: &Principal,
    command: Command,
) -> Result<arrow::datatypes::SchemaRef, ServiceError> {
    match command {
        Command::CommandStatementQuery(query) => {
            statement::schema(service, principal, &query.query).await
        }
        Command::CommandPreparedStatementQuery(query) => {
            prepared::schema(service, principal, query).await
        }
        command => metadata::schema(service, &command).ok_or_else(|| unimplemented(&command)),
    }
}

/// DoGet of a Flight SQL ticket: a query answered on the connection ([`direct`]), or a metadata
/// command's answer as one batch.
pub(super) async fn do_get(
    service: &Service,
    principal: &Principal,
    command: Command,
) -> Result<BoxStream<'static, Result<arrow_flight::FlightData, Status>>, ServiceError> {
    if let Command::TicketStatementQuery(ticket) = command {
        return direct::do_get(service, principal, ticket).await;
    }
    let Some(schema) = metadata::schema(service, &command) else {
        return Err(unimplemented(&command));
    };
    let batch = metadata::batch(service, principal, command).await?;
    let stream = arrow_flight::encode::FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(stream::once(async move { Ok(batch) }))
        .map_err(Status::from)
        .boxed();
    Ok(stream)
}

/// The error for a Flight SQL command this server does not serve.
pub(super) fn unimplemented(command: &Command) -> ServiceError {
    ServiceError::Unimplemented(format!(
        "{} is not supported: redshift-flight is a read-only Flight SQL server (queries, prepared \
         statements and catalog metadata)",
        command.type_url().trim_start_matches(TYPE_URL_PREFIX)
    ))
}
