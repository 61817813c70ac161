//! ListFlights: one FlightInfo per served table of a schema (the default schema, or the one named
//! by the criteria expression), with its schema and row estimate and no endpoints.

use arrow_flight::{Criteria, FlightDescriptor, FlightInfo};

use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::plan::PlanError;

pub(super) async fn list_flights(
    service: &Service,
    principal: &Principal,
    criteria: &Criteria,
) -> Result<Vec<FlightInfo>, ServiceError> {
    let schema = if criteria.expression.is_empty() {
        service.catalog.default_schema().to_string()
    } else {
        let name = std::str::from_utf8(&criteria.expression).map_err(|_| {
            PlanError::Descriptor("criteria expression must be a UTF-8 schema name".into())
        })?;
        service.catalog.resolve_schema(name).await?
    };
    let tables = service.catalog.list_tables(&schema).await?;
    tables
        .iter()
        .filter(|table| principal.may_read(&table.table.namespace(), &table.table.table))
        .map(|table| {
            // A consumer database's table: ["database", "schema", "table"].
            let path = match &table.table.database {
                Some(database) => vec![
                    database.clone(),
                    table.table.schema.clone(),
                    table.table.table.clone(),
                ],
                None => vec![table.table.schema.clone(), table.table.table.clone()],
            };
            Ok(FlightInfo::new()
                .try_with_schema(&table.arrow_schema())?
                .with_descriptor(FlightDescriptor::new_path(path))
                .with_total_records(table.row_estimate.unwrap_or(-1))
                .with_total_bytes(-1)
                .with_ordered(false))
        })
        .collect()
}
