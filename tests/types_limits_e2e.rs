//! End-to-end: types at the edges of what UNLOAD and Parquet carry. Timestamps staged as INT96
//! (as some writers produce them) far outside 1677-2262, and SUPER, VARBYTE and GEOMETRY values
//! larger than Redshift's 65,535-byte VARCHAR limit. Every value is compared with PostgreSQL.

mod common;

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::FlightDescriptor;
use common::canon::{Col, Kind, canon_batches, pg_canon_rows, quote, read_all};
use common::{TestServer, keys_under, own_emulator, pg, unique};
use object_store::ObjectStoreExt;
use parquet::basic::Type as PhysicalType;
use parquet::file::reader::{FileReader, SerializedFileReader};
use redshift_emulator::FaultSettings;

/// The Parquet physical types of the staged data files under `prefix`.
async fn staged_physical_types(prefix: &str) -> Vec<Vec<PhysicalType>> {
    let store = common::bucket();
    let mut out = Vec::new();
    for key in keys_under(prefix).await {
        if !key.ends_with(".parquet") {
            continue;
        }
        let bytes = store
            .get(&object_store::path::Path::from(key.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = SerializedFileReader::new(bytes).unwrap();
        let descr = reader.metadata().file_metadata().schema_descr_ptr();
        out.push(descr.columns().iter().map(|c| c.physical_type()).collect());
    }
    out
}

#[tokio::test]
async fn int96_timestamps_outside_the_nanosecond_range_arrive_exact() {
    let schema = unique("int96");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.t (id integer primary key, ts timestamp, tstz timestamptz);
             INSERT INTO {s}.t VALUES
               (1, '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00'),
               (2, '0001-01-01 00:00:00', '0001-01-01 00:00:00+00'),
               (3, '1677-09-21 00:12:43.145224', '1677-09-21 00:12:43.145223+00'),
               (4, '2262-04-11 23:47:16.854776', '2262-04-11 23:47:16.854776+00'),
               (5, '1969-12-31 23:59:59.999999', '1970-01-01 00:00:00.000001+01'),
               (6, '2024-02-29 12:34:56.000001', '4000-06-30 23:59:59.5+05:30'),
               (7, NULL, NULL);",
            s = quote(&schema)
        ))
        .await
        .unwrap();
    let prefix = unique("rsf-int96");
    let emulator = own_emulator(
        0,
        2,
        FaultSettings {
            int96_timestamps: true,
            ..Default::default()
        },
    )
    .await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("s3_prefix", &prefix), ("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .expect("GetFlightInfo");

    // The staged files really hold INT96 timestamps.
    let types = staged_physical_types(&prefix).await;
    assert!(!types.is_empty());
    for file in &types {
        assert_eq!(
            file,
            &[PhysicalType::INT32, PhysicalType::INT96, PhysicalType::INT96]
        );
    }

    let promised = Arc::new(info.clone().try_decode_schema().unwrap());
    let batches = read_all(&server, &info).await;
    for batch in &batches {
        assert_eq!(batch.schema(), promised);
    }
    let cols = [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new(
            "ts",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
        Col::new(
            "tstz",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
    ];
    let refs: Vec<&Col> = cols.iter().collect();
    let want = pg_canon_rows(&format!("{}.t", quote(&schema)), &refs).await;
    assert_eq!(want.len(), 7);
    assert_eq!(canon_batches(&batches), want);
    server.stop().await;
    emulator.shutdown().await;
}
