//! Flight SQL queries (`CommandStatementQuery`): the client's SQL is validated by
//! `crate::sql::query` (one read-only query, allowlisted functions), every relation it reads must
//! be served and readable by the caller, Redshift describes its result columns (so the schema is
//! known before data moves), and the query, wrapped so each column is converted as a table's
//! would be, is staged by UNLOAD like a table read. The endpoints carry ordinary signed tickets
//! without a schema; DoGet checks the caller against the relations the run's columns object
//! lists.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow_flight::sql::CommandStatementQuery;
use arrow_flight::{FlightDescriptor, FlightInfo};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::super::error::query_fault_is_clients;
use super::super::get_flight_info::staged_flight_info;
use super::super::{Service, ServiceError};
pub(super) use super::direct::Origin;
use crate::auth::Principal;
use crate::catalog::TableRef;
use crate::plan::Plan;
use crate::sql::Sql;
use crate::sql::query::{Relation, ValidatedQuery, validate};
use crate::stage::{StageError, new_reader_id};

/// FlightInfo.app_metadata of a query, as JSON.
#[derive(Debug, Serialize)]
struct AppMetadata<'a> {
    query: &'a str,
    run_id: &'a str,
    expires_at: String,
    files: usize,
}

pub(super) async fn get_flight_info(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
    command: CommandStatementQuery,
) -> Result<FlightInfo, ServiceError> {
    let (plan, origin) = planned(service, principal, command).await?;
    run(service, descriptor, plan, &origin).await
}

/// A statement planned for `principal` (GetFlightInfo and PollFlightInfo), with its origin.
pub(super) async fn planned(
    service: &Service,
    principal: &Principal,
    command: CommandStatementQuery,
) -> Result<(Plan, Origin), ServiceError> {
    if command.transaction_id.is_some() {
        return Err(ServiceError::Unimplemented(
            "transactions are not supported: redshift-flight is read-only".into(),
        ));
    }
    let plan = plan(service, principal, &command.query, Parameters::Refused).await?;
    let origin = Origin {
        query: command.query,
        parameters: Vec::new(),
    };
    Ok((plan, origin))
}

/// Answers a planned query (a statement's or a prepared statement's, planned from `origin`):
/// on the connection when Redshift estimates it small (see `super::direct`), else staged by
/// UNLOAD; describes its endpoints.
pub(super) async fn run(
    service: &Service,
    descriptor: FlightDescriptor,
    plan: Plan,
    origin: &Origin,
) -> Result<FlightInfo, ServiceError> {
    let span = tracing::Span::current();
    span.record("table", tracing::field::display(&plan.table.table));
    if let Some(info) = super::direct::flight_info(service, &descriptor, &plan, origin).await? {
        return Ok(info);
    }
    // An error in the client's own SQL that only running it reveals (division by zero, a bad
    // cast) is the client's: it gets Redshift's message.
    let run = service
        .stager
        .stage(&plan)
        .await
        .map_err(|error| match error {
            StageError::Unload { source, .. } if query_fault_is_clients(&source) => {
                ServiceError::QueryFailed { source }
            }
            other => ServiceError::Stage(other),
        })?;
    span.record("run_id", run.run_id.as_str());
    // Staging wrote the run's columns object; DoGet on this replica needs no GET for it.
    service
        .columns
        .insert(&run.run_id, Arc::clone(&run.columns));
    tracing::info!(
        rows = run.total_rows(),
        bytes = run.total_bytes(),
        files = run.files.len(),
        relations = plan.relations.len(),
        "query staged"
    );
    let metadata = AppMetadata {
        query: &plan.table.table.table,
        run_id: &run.run_id,
        expires_at: chrono::DateTime::<chrono::Utc>::from(run.expires_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        files: run.files.len(),
    };
    let reader = new_reader_id();
    staged_flight_info(
        service,
        descriptor,
        &plan,
        Some(&run),
        &reader,
        serde_json::to_vec(&metadata).unwrap_or_default(),
    )
    .await
}

/// The schema a query's FlightInfo would promise (nothing is staged).
pub(super) async fn schema(
    service: &Service,
    principal: &Principal,
    query: &str,
) -> Result<SchemaRef, ServiceError> {
    Ok(plan(service, principal, query, Parameters::Refused)
        .await?
        .schema)
}

/// What a query's placeholders (`?`, `$n`) are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Parameters<'a> {
    /// Refused: a plain statement takes none.
    Refused,
    /// Accepted and left unbound: the query is described as `$1, $2, ...` (preparing).
    Unbound,
    /// Replaced by these values (quoting-module SQL), one per parameter.
    Bound(&'a [Sql]),
}

/// Validates `text` (on the blocking pool: parsing is CPU-bound and may recurse deeply).
pub(super) async fn validate_text(
    service: &Service,
    text: &str,
    parameters: bool,
) -> Result<ValidatedQuery, ServiceError> {
    let policy = service.query_policy.clone().with_parameters(parameters);
    let owned = text.to_string();
    Ok(
        tokio::task::spawn_blocking(move || validate(&owned, &policy))
            .await
            .map_err(|e| ServiceError::FlightSql(format!("validating the query failed: {e}")))??,
    )
}

/// Validates, authorises and describes `text` (with its parameters as `parameters` says), and
/// plans its read. The caller is authorised here, at every use: a prepared handle is no permission.
pub(super) async fn plan(
    service: &Service,
    principal: &Principal,
    text: &str,
    parameters: Parameters<'_>,
) -> Result<Plan, ServiceError> {
    let accept = !matches!(parameters, Parameters::Refused);
    let validated = validate_text(service, text, accept).await?;
    let relations = authorize(service, principal, validated.relations()).await?;
    let query = match parameters {
        Parameters::Refused => validated.sql(),
        Parameters::Unbound => validated.sql_numbered()?,
        Parameters::Bound(values) => validated.bind(values)?,
    };
    let columns = service
        .stager
        .warehouse()
        .describe_query(&query)
        .await
        .map_err(|source| ServiceError::QueryFailed { source })?;
    let digest = Sha256::digest(query.as_str().as_bytes());
    let label = TableRef::new("", format!("query {}", hex::encode(&digest[..6])));
    Ok(Plan::try_for_query(label, columns, &query, relations)?)
}

/// Checks the caller may read every relation of the query, and that each non-system relation is
/// served (a table spec limits queries as it limits table reads). Returns them as resolved.
async fn authorize(
    service: &Service,
    principal: &Principal,
    relations: &[Relation],
) -> Result<Vec<TableRef>, ServiceError> {
    let mut resolved = Vec::with_capacity(relations.len());
    for relation in relations {
        if relation.is_system() {
            let schema = relation.schema.as_deref().unwrap_or("pg_catalog");
            principal.check(schema, &relation.name)?;
            resolved.push(TableRef::new(schema, relation.name.clone()));
        } else {
            let table = service
                .resolve(principal, relation.schema.as_deref(), &relation.name)
                .await?;
            // Redshift resolves the name exactly (after folding unquoted names), so only an exact
            // match is the relation it will read; a case-insensitive one is not.
            let schema_matches = relation
                .schema
                .as_deref()
                .is_none_or(|schema| schema == table.table.schema);
            if !schema_matches || table.table.table != relation.name {
                let schema = relation
                    .schema
                    .as_deref()
                    .unwrap_or(service.catalog.default_schema());
                return Err(ServiceError::TableNotFound(format!(
                    "{schema}.{} (names are matched exactly: quote names with capitals)",
                    relation.name
                )));
            }
            resolved.push(table.table.clone());
        }
    }
    resolved.sort();
    resolved.dedup();
    Ok(resolved)
}
