//! Flight SQL prepared statements, kept by the client, not the server: the handle
//! ([`super::handle`]) is a signed token carrying the query text and, once DoPut bound them, the
//! parameter values, so any replica serves it and closing it frees nothing here.
//!
//! - `CreatePreparedStatement`: the query is validated (placeholders `?` or `$n` allowed),
//!   authorised and described on Redshift, its result columns and its parameters; the answer
//!   holds the handle, the dataset schema and the parameter schema (one nullable field per
//!   placeholder, of the type Redshift infers for it, see [`super::bind::parameter_field`]);
//! - DoPut of `CommandPreparedStatementQuery`: one row of values, one column per parameter,
//!   becomes a new handle embedding them (`DoPutPreparedStatementResult`);
//! - GetFlightInfo / GetSchema of `CommandPreparedStatementQuery`: the query is validated and
//!   authorised again for the current caller, its placeholders replaced by the bound values as
//!   literals built only by `crate::sql` and cast to the parameters' described types
//!   ([`super::bind`]; UNLOAD takes no bind parameters), and it runs as a
//!   `CommandStatementQuery` would;
//! - `ClosePreparedStatement`: verifies the handle and succeeds.

use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{Array, ArrayRef, AsArray, make_array};
use arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Schema,
    SchemaRef, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::Command;
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, Any, CommandPreparedStatementQuery,
    DoPutPreparedStatementResult, ProstMessageExt,
};
use arrow_flight::{FlightData, FlightDescriptor, FlightInfo, IpcMessage, PutResult, SchemaAsIpc};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use super::super::{Service, ServiceError};
use super::bind::{Target, parameter_field, typed_sql, value_sql};
use super::handle::{BoundValue, HandleCodec, HandlePayload, Kind};
use super::statement::{Origin, Parameters, plan, run, validate_text};
use crate::auth::Principal;
use crate::redshift::RedshiftError;
use crate::sql::Sql;
use crate::sql::query::ValidatedQuery;

/// Action type of CreatePreparedStatement (Flight SQL).
pub(in crate::flight) const CREATE_PREPARED_STATEMENT: &str = "CreatePreparedStatement";
/// Action type of ClosePreparedStatement (Flight SQL).
pub(in crate::flight) const CLOSE_PREPARED_STATEMENT: &str = "ClosePreparedStatement";

fn codec(service: &Service) -> HandleCodec {
    HandleCodec::new(Arc::clone(service.tickets.keys()))
}

fn bad(message: String) -> ServiceError {
    ServiceError::FlightSql(message)
}

/// Unpacks an action body: an `Any`-wrapped `M` (clients also send `M` bare).
fn unpack<M: ProstMessageExt + Default>(body: &[u8]) -> Result<M, ServiceError> {
    if let Ok(any) = Any::decode(body)
        && let Ok(Some(message)) = any.unpack::<M>()
    {
        return Ok(message);
    }
    M::decode(body).map_err(|e| bad(format!("the action body does not decode: {e}")))
}

/// `CreatePreparedStatement`: an `Any`-wrapped `ActionCreatePreparedStatementResult`.
pub(in crate::flight) async fn create(
    service: &Service,
    principal: &Principal,
    body: &[u8],
) -> Result<Vec<u8>, ServiceError> {
    let request: ActionCreatePreparedStatementRequest = unpack(body)?;
    if request.transaction_id.is_some() {
        return Err(ServiceError::Unimplemented(
            "transactions are not supported: redshift-flight is read-only".into(),
        ));
    }
    let validated = validate_text(service, &request.query, true).await?;
    let count = validated.parameter_count();
    let plan = plan(service, principal, &request.query, Parameters::Unbound).await?;
    // Described once the caller is authorised (`plan` did).
    let types = parameter_types(service, &validated)
        .await
        .map_err(|source| ServiceError::QueryFailed { source })?;
    let options = IpcWriteOptions::default();
    let IpcMessage(dataset_schema) = SchemaAsIpc::new(&plan.schema, &options).try_into()?;
    let parameters = Schema::new(
        (1..=count)
            .map(|n| parameter_field(n, types.get(n - 1).map(String::as_str)))
            .collect::<Vec<_>>(),
    );
    let IpcMessage(parameter_schema) = SchemaAsIpc::new(&parameters, &options).try_into()?;
    let handle = codec(service).encode(&HandlePayload::new(
        request.query,
        Vec::new(),
        SystemTime::now(),
    ));
    tracing::info!(parameters = count, "statement prepared");
    let result = ActionCreatePreparedStatementResult {
        prepared_statement_handle: handle.into(),
        dataset_schema,
        parameter_schema,
    };
    Ok(result.as_any().encode_to_vec())
}

/// `ClosePreparedStatement`: nothing to free, once the handle verified.
pub(in crate::flight) fn close(service: &Service, body: &[u8]) -> Result<(), ServiceError> {
    let request: ActionClosePreparedStatementRequest = unpack(body)?;
    codec(service).decode(&request.prepared_statement_handle, SystemTime::now())?;
    Ok(())
}

/// The catalog types Redshift infers for the parameters of a validated query (`$1` first; none
/// for a query without parameters, or from a warehouse that cannot describe them).
async fn parameter_types(
    service: &Service,
    validated: &ValidatedQuery,
) -> Result<Vec<String>, RedshiftError> {
    if validated.parameter_count() == 0 {
        return Ok(Vec::new());
    }
    // `plan` numbers the placeholders too, and reports the query that cannot be.
    let Ok(numbered) = validated.sql_numbered() else {
        return Ok(Vec::new());
    };
    service
        .stager
        .warehouse()
        .describe_parameters(&numbered)
        .await
}

/// The verified handle's query, with its bound values as SQL cast to the parameters' types.
async fn open(
    service: &Service,
    command: &CommandPreparedStatementQuery,
) -> Result<(HandlePayload, Vec<Sql>), ServiceError> {
    let payload = codec(service).decode(&command.prepared_statement_handle, SystemTime::now())?;
    let values = bound_values(service, &payload).await?;
    Ok((payload, values))
}

/// A verified payload's bound values as SQL cast to the parameters' types (none when unbound).
pub(super) async fn bound_values(
    service: &Service,
    payload: &HandlePayload,
) -> Result<Vec<Sql>, ServiceError> {
    if payload.parameters.is_empty() {
        return Ok(Vec::new());
    }
    let validated = validate_text(service, &payload.query, true).await?;
    // The caller is authorised by `plan`, after this: a query Redshift refuses to describe is
    // bound untyped here, so that it is refused there, by authorisation or by Redshift.
    let types = match parameter_types(service, &validated).await {
        Ok(types) => types,
        Err(RedshiftError::Sql { .. }) => Vec::new(),
        Err(source) => return Err(ServiceError::QueryFailed { source }),
    };
    let values = payload
        .parameters
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let target = Target::of(types.get(i).map(String::as_str));
            typed_sql(value, target, i + 1)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(values)
}

/// GetFlightInfo of a prepared statement: run as a `CommandStatementQuery`, values bound.
pub(super) async fn get_flight_info(
    service: &Service,
    principal: &Principal,
    descriptor: FlightDescriptor,
    command: CommandPreparedStatementQuery,
) -> Result<FlightInfo, ServiceError> {
    let (plan, origin) = planned(service, principal, &command).await?;
    run(service, descriptor, plan, &origin).await
}

/// A prepared statement's query planned for `principal` with its bound values (GetFlightInfo
/// and PollFlightInfo), with its origin.
pub(super) async fn planned(
    service: &Service,
    principal: &Principal,
    command: &CommandPreparedStatementQuery,
) -> Result<(crate::plan::Plan, Origin), ServiceError> {
    let (payload, values) = open(service, command).await?;
    let plan = plan(
        service,
        principal,
        &payload.query,
        Parameters::Bound(&values),
    )
    .await?;
    let origin = Origin {
        query: payload.query,
        parameters: payload.parameters,
    };
    Ok((plan, origin))
}

/// GetSchema of a prepared statement.
pub(super) async fn schema(
    service: &Service,
    principal: &Principal,
    command: CommandPreparedStatementQuery,
) -> Result<SchemaRef, ServiceError> {
    let (payload, values) = open(service, &command).await?;
    let query = payload.query;
    let parameters = if values.is_empty() {
        Parameters::Unbound
    } else {
        Parameters::Bound(&values)
    };
    Ok(plan(service, principal, &query, parameters).await?.schema)
}

/// DoPut: a prepared statement's parameter values (the first message's descriptor holds a
/// `CommandPreparedStatementQuery`); anything else is UNIMPLEMENTED (a read-only service).
pub(in crate::flight) async fn do_put(
    service: &Service,
    mut stream: tonic::Streaming<FlightData>,
) -> Result<Vec<PutResult>, ServiceError> {
    let read = |e: tonic::Status| bad(format!("reading the DoPut stream failed: {}", e.message()));
    let first = stream.message().await.map_err(read)?;
    let command = first
        .as_ref()
        .and_then(|data| data.flight_descriptor.as_ref())
        .and_then(|descriptor| super::decode(&descriptor.cmd));
    let Some(Ok(Command::CommandPreparedStatementQuery(command))) = command else {
        return Err(ServiceError::Unimplemented(
            "DoPut is not supported: redshift-flight is read-only (Flight SQL updates and \
             ingestion are refused; only a prepared statement's parameters may be bound)"
                .into(),
        ));
    };
    let messages = futures::stream::iter(first.map(Ok))
        .chain(stream)
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(messages)
        .try_collect()
        .await
        .map_err(|e| bad(format!("the bound parameters do not decode: {e}")))?;
    let metadata = bind(service, command, batches).await?;
    Ok(vec![PutResult {
        app_metadata: metadata.into(),
    }])
}

/// DoPut of parameter values: `batches` hold one row, one column per parameter. Returns the
/// `DoPutPreparedStatementResult` with the new handle (the PutResult's app_metadata).
async fn bind(
    service: &Service,
    command: CommandPreparedStatementQuery,
    batches: Vec<RecordBatch>,
) -> Result<Vec<u8>, ServiceError> {
    let codec = codec(service);
    let payload = codec.decode(&command.prepared_statement_handle, SystemTime::now())?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows != 1 {
        return Err(bad(format!(
            "DoPut bound {rows} rows of parameters; bind exactly one row (this server runs a \
             prepared query once per binding: call execute once per set of values)"
        )));
    }
    let Some(batch) = batches.iter().find(|b| b.num_rows() == 1) else {
        unreachable!("one of the batches holds the row");
    };
    let expected = validate_text(service, &payload.query, true)
        .await?
        .parameter_count();
    if batch.num_columns() != expected {
        return Err(bad(format!(
            "the statement takes {expected} parameters but DoPut bound {} columns",
            batch.num_columns()
        )));
    }
    let values = batch
        .columns()
        .iter()
        .zip(batch.schema().fields())
        .map(|(array, field)| bound_value(array, field.name()))
        .collect::<Result<Vec<_>, _>>()?;
    // Refuse now what cannot become SQL (a NUL in a string), not at GetFlightInfo.
    for value in &values {
        value_sql(value)?;
    }
    let handle = codec.encode(&HandlePayload::new(
        payload.query,
        values,
        SystemTime::now(),
    ));
    let result = DoPutPreparedStatementResult {
        prepared_statement_handle: Some(handle.into()),
    };
    Ok(result.encode_to_vec())
}

/// Row 0 of `array` as a typed value.
fn bound_value(array: &ArrayRef, name: &str) -> Result<BoundValue, ServiceError> {
    let value = |kind: Kind, text: String| BoundValue {
        kind: kind as i32,
        text,
        precision: 0,
        scale: 0,
    };
    if array.is_null(0) {
        return Ok(value(Kind::Null, String::new()));
    }
    let format = |array: &dyn Array| -> Result<String, ServiceError> {
        let formatter = ArrayFormatter::try_new(array, &FormatOptions::default())?;
        Ok(formatter.value(0).to_string())
    };
    let float = |v: f64| -> Result<BoundValue, ServiceError> {
        if v.is_finite() {
            Ok(value(Kind::Float, v.to_string()))
        } else {
            Err(bad(format!(
                "parameter {name}: {v} cannot be bound (Redshift has no NaN or infinity)"
            )))
        }
    };
    let int = |text: String| value(Kind::Int, text);
    Ok(match array.data_type() {
        DataType::Null => value(Kind::Null, String::new()),
        DataType::Boolean => value(Kind::Bool, array.as_boolean().value(0).to_string()),
        DataType::Int8 => int(array.as_primitive::<Int8Type>().value(0).to_string()),
        DataType::Int16 => int(array.as_primitive::<Int16Type>().value(0).to_string()),
        DataType::Int32 => int(array.as_primitive::<Int32Type>().value(0).to_string()),
        DataType::Int64 => int(array.as_primitive::<Int64Type>().value(0).to_string()),
        DataType::UInt8 => int(array.as_primitive::<UInt8Type>().value(0).to_string()),
        DataType::UInt16 => int(array.as_primitive::<UInt16Type>().value(0).to_string()),
        DataType::UInt32 => int(array.as_primitive::<UInt32Type>().value(0).to_string()),
        DataType::UInt64 => int(array.as_primitive::<UInt64Type>().value(0).to_string()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(0)))?,
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(0))?,
        DataType::Decimal128(precision, scale) | DataType::Decimal256(precision, scale) => {
            BoundValue {
                kind: Kind::Decimal as i32,
                text: format(array.as_ref())?,
                precision: u32::from(*precision),
                scale: i32::from(*scale),
            }
        }
        DataType::Utf8 => value(Kind::Text, array.as_string::<i32>().value(0).to_string()),
        DataType::LargeUtf8 => value(Kind::Text, array.as_string::<i64>().value(0).to_string()),
        DataType::Utf8View => value(Kind::Text, array.as_string_view().value(0).to_string()),
        DataType::Date32 | DataType::Date64 => value(Kind::Date, format(array.as_ref())?),
        DataType::Timestamp(_, None) => value(Kind::Timestamp, format(array.as_ref())?),
        // The instant in UTC (what the values are), whatever the zone is called: formatting in
        // a named zone would need a time zone database.
        DataType::Timestamp(unit, Some(_)) => {
            let utc = array.slice(0, 1).to_data().into_builder();
            let utc = make_array(utc.data_type(DataType::Timestamp(*unit, None)).build()?);
            value(Kind::TimestampTz, format(utc.as_ref())? + "+00:00")
        }
        // A time of day is its ISO text (`10:00:00.000001`): Redshift reads it as a TIME
        // parameter, or as the type of where it is used.
        DataType::Time32(_) | DataType::Time64(_) => value(Kind::Text, format(array.as_ref())?),
        other => {
            return Err(bad(format!(
                "parameter {name}: Arrow type {other} cannot be bound (bind integers, floats, \
                 decimals, booleans, strings, dates, times or timestamps)"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
        NullArray, StringArray, Time64MicrosecondArray, TimestampMicrosecondArray,
        TimestampMillisecondArray,
    };

    fn render(array: ArrayRef) -> Result<String, ServiceError> {
        Ok(value_sql(&bound_value(&array, "p")?)?.to_string())
    }

    #[test]
    fn values_become_typed_literals() {
        let decimal = Decimal128Array::from(vec![-1050]).with_precision_and_scale(10, 2);
        let cases: Vec<(ArrayRef, &str)> = vec![
            (Arc::new(Int64Array::from(vec![-5])), "-5"),
            (Arc::new(BooleanArray::from(vec![true])), "TRUE"),
            (Arc::new(NullArray::new(1)), "NULL"),
            (Arc::new(Int64Array::from(vec![None])), "NULL"),
            (
                Arc::new(StringArray::from(vec!["x'; DROP TABLE t; --\\"])),
                r"'x''; DROP TABLE t; --\\'",
            ),
            (
                Arc::new(Float64Array::from(vec![-0.25])),
                "CAST(-0.25 AS DOUBLE PRECISION)",
            ),
            (Arc::new(decimal.unwrap()), "CAST(-10.50 AS DECIMAL(10, 2))"),
            (
                Arc::new(Date32Array::from(vec![19723])),
                "CAST('2024-01-01' AS DATE)",
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![1_704_103_200_000_001])),
                "CAST('2024-01-01T10:00:00.000001' AS TIMESTAMP)",
            ),
            (
                Arc::new(TimestampMillisecondArray::from(vec![None, Some(1)]).slice(1, 1)),
                "CAST('1970-01-01T00:00:00.001' AS TIMESTAMP)",
            ),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![0]).with_timezone("Europe/Paris")),
                "CAST('1970-01-01T00:00:00+00:00' AS TIMESTAMPTZ)",
            ),
            (
                Arc::new(Time64MicrosecondArray::from(vec![36_000_000_001])),
                "'10:00:00.000001'",
            ),
        ];
        for (array, expected) in cases {
            assert_eq!(render(array).unwrap(), expected);
        }
        assert!(render(Arc::new(Float64Array::from(vec![f64::NAN]))).is_err());
        assert!(render(Arc::new(StringArray::from(vec!["a\0b"]))).is_err());
        assert!(render(Arc::new(BinaryArray::from(vec![b"x".as_slice()]))).is_err());
    }
}
