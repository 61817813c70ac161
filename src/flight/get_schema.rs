//! GetSchema: the Arrow schema a GetFlightInfo for the same descriptor would promise, straight from
//! the catalog (no UNLOAD).

use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::{FlightDescriptor, SchemaAsIpc, SchemaResult};

use super::{Service, ServiceError};
use crate::auth::Principal;
use crate::plan::{FlightRequest, Plan, PlanSettings};

pub(super) async fn get_schema(
    service: &Service,
    principal: &Principal,
    descriptor: &FlightDescriptor,
) -> Result<SchemaResult, ServiceError> {
    let options = IpcWriteOptions::default();
    if let Some(command) = super::sql::decode(&descriptor.cmd) {
        let schema = super::sql::get_schema(service, principal, command?).await?;
        return Ok(SchemaResult::try_from(SchemaAsIpc::new(&schema, &options))?);
    }
    let mut request = FlightRequest::try_from_descriptor(descriptor)?;
    let table = service
        .resolve(principal, request.schema.as_deref(), &request.table)
        .await?;
    // The schema does not depend on the mode; plan as a full read so that a cursor is not needed.
    request.mode = crate::plan::Mode::Full;
    request.cursor = None;
    request.replication_key = None;
    request.lookback = None;
    let plan = Plan::try_new(table, &request, PlanSettings::default())?;
    Ok(SchemaResult::try_from(SchemaAsIpc::new(
        &plan.schema,
        &options,
    ))?)
}
