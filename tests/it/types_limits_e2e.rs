//! End-to-end: types at the edges of what UNLOAD and Parquet carry. Timestamps staged as INT96
//! (as some writers produce them) far outside 1677-2262, and SUPER, VARBYTE and GEOMETRY values
//! larger than Redshift's 65,535-byte VARCHAR limit. Every value is compared with PostgreSQL.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::FlightDescriptor;
use object_store::ObjectStoreExt;
use parquet::basic::Type as PhysicalType;
use parquet::file::reader::{FileReader, SerializedFileReader};
use redshift_emulator::FaultSettings;

use crate::common;
use crate::common::canon::{Col, Kind, canon_batches, pg_canon_rows, quote, read_all};
use crate::common::{TestServer, keys_under, own_emulator, pg, unique};

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
            &[
                PhysicalType::INT32,
                PhysicalType::INT96,
                PhysicalType::INT96
            ]
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

/// A client of `emulator` (the Redshift side, as the server sees it).
async fn emulator_client(emulator: &redshift_emulator::RunningEmulator) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(emulator.local_addr().ip().to_string())
        .port(emulator.local_addr().port())
        .user(common::tb("TESTBED_REDSHIFT_USER"))
        .password(common::tb("TESTBED_REDSHIFT_PASSWORD"))
        .dbname(common::tb("TESTBED_REDSHIFT_DATABASE"));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the emulator");
    tokio::spawn(connection);
    client
}

/// SRID=4326;LINESTRING of `points` points as little-endian EWKB, and the ISO WKB the server
/// must send for it.
fn big_linestring(points: u32) -> (Vec<u8>, Vec<u8>) {
    let mut coordinates = Vec::with_capacity(points as usize * 16);
    for i in 0..points {
        coordinates.extend_from_slice(&f64::from(i).to_le_bytes());
        coordinates.extend_from_slice(&(f64::from(i) * 0.5 - 7.25).to_le_bytes());
    }
    let mut ewkb = vec![1];
    ewkb.extend_from_slice(&0x2000_0002u32.to_le_bytes());
    ewkb.extend_from_slice(&4326u32.to_le_bytes());
    ewkb.extend_from_slice(&points.to_le_bytes());
    ewkb.extend_from_slice(&coordinates);
    let mut wkb = vec![1];
    wkb.extend_from_slice(&2u32.to_le_bytes());
    wkb.extend_from_slice(&points.to_le_bytes());
    wkb.extend_from_slice(&coordinates);
    (ewkb, wkb)
}

#[tokio::test]
async fn values_beyond_the_varchar_limit_arrive_exact() {
    const MB: usize = 1 << 20;
    let schema = unique("big");
    let table = format!("{}.t", quote(&schema));
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {table} (id integer primary key, sup super, vb varbyte, geo geometry)",
            s = quote(&schema)
        ))
        .await
        .unwrap();
    // 1 MB of bytes of every value, a 1 MB JSON document, a geometry close to Redshift's 1 MB
    // maximum; then small, empty and NULL values in the same columns.
    let bytes: Vec<u8> = (0..MB).map(|i| (i * 7 + i / 251) as u8).collect();
    let json = serde_json::json!({
        "text": "é\"\\".repeat(MB / 5),
        "numbers": (0..20_000).collect::<Vec<_>>(),
    })
    .to_string();
    assert!(json.len() > MB);
    let (ewkb, wkb) = big_linestring(65_000);
    let insert = format!("INSERT INTO {table} VALUES ($1, $2::text::jsonb, $3::bytea, $4::bytea)");
    client
        .execute(&insert, &[&1i32, &json, &bytes, &ewkb])
        .await
        .unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO {table} VALUES
               (2, '[1, \"x\"]', '\\x00ff', '\\x0101000020e6100000000000000000f03f0000000000000040'),
               (3, '\"\"', '\\x', NULL),
               (4, NULL, NULL, NULL);"
        ))
        .await
        .unwrap();

    let emulator = own_emulator(0, 2, FaultSettings::default()).await;
    // The emulator refuses what Redshift refuses: text forms beyond VARCHAR's 65,535 bytes.
    let redshift = emulator_client(&emulator).await;
    for sql in [
        format!("SELECT JSON_SERIALIZE(sup) FROM {table} WHERE id = 1"),
        format!("SELECT TO_HEX(vb) FROM {table} WHERE id = 1"),
        format!("SELECT ST_AsHexEWKB(geo) FROM {table} WHERE id = 1"),
    ] {
        let error = redshift.simple_query(&sql).await.unwrap_err();
        let code = error.as_db_error().map(|e| e.code().code().to_owned());
        assert_eq!(code.as_deref(), Some("22001"), "{sql}: {error}");
    }

    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .expect("GetFlightInfo");
    let promised = Arc::new(info.clone().try_decode_schema().unwrap());
    let batches = read_all(&server, &info).await;
    for batch in &batches {
        assert_eq!(batch.schema(), promised);
    }
    let cols = [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("sup", Kind::Text, DataType::Utf8),
        Col::new("vb", Kind::Hex, DataType::Binary),
    ];
    let refs: Vec<&Col> = cols.iter().collect();
    let want = pg_canon_rows(&table, &refs).await;
    let got = canon_batches(
        &batches
            .iter()
            .map(|b| b.project(&[0, 1, 2]).unwrap())
            .collect::<Vec<_>>(),
    );
    assert_eq!(got.len(), 4);
    assert_eq!(
        got[0][1].as_ref().map(String::len),
        want[0][1].as_ref().map(String::len)
    );
    assert_eq!(got, want, "SUPER and VARBYTE values, byte for byte");

    // GEOMETRY: ISO WKB of the EWKB stored.
    let mut geometries: Vec<(i32, Option<Vec<u8>>)> = Vec::new();
    for batch in &batches {
        use arrow::array::{Array, AsArray};
        let ids = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>();
        let geo = batch.column(3).as_binary::<i32>();
        for row in 0..batch.num_rows() {
            geometries.push((
                ids.value(row),
                (!geo.is_null(row)).then(|| geo.value(row).to_vec()),
            ));
        }
    }
    geometries.sort();
    let point = hex::decode("0101000000000000000000f03f0000000000000040").unwrap();
    assert_eq!(
        geometries,
        vec![(1, Some(wkb)), (2, Some(point)), (3, None), (4, None)]
    );
    server.stop().await;
    emulator.shutdown().await;
}

/// `"geometry": "ewkb"` keeps each GEOMETRY value's SRID: the bytes are Redshift's EWKB exactly,
/// marked `redshift_flight.geometry_encoding = ewkb` (not `geoarrow.wkb`); without it the same
/// column is ISO WKB (SRID dropped). Compared value by value with PostgreSQL.
#[tokio::test]
async fn geometry_as_ewkb_keeps_the_srid() {
    use arrow::array::{Array, BinaryArray, Int32Array};
    let schema = unique("ewkb");
    let client = pg().await;
    // SRID=4326;POINT(1 2), SRID=3857;POINT(1 2), POINT(1 2) without SRID, NULL.
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.t (id integer primary key, g geometry);
             INSERT INTO {s}.t VALUES
               (1, decode('0101000020e6100000000000000000f03f0000000000000040', 'hex')),
               (2, decode('0101000020110f0000000000000000f03f0000000000000040', 'hex')),
               (3, decode('0101000000000000000000f03f0000000000000040', 'hex')),
               (4, NULL);",
            s = quote(&schema)
        ))
        .await
        .unwrap();
    let want: Vec<(i32, Option<String>)> = client
        .query(
            &format!(
                "SELECT id, encode(g, 'hex') FROM {}.t ORDER BY id",
                quote(&schema)
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let server = TestServer::start(&[]).await;
    let read = |geometry: &'static str| {
        let server = &server;
        let schema = schema.clone();
        async move {
            let mut flight = server.client().await;
            let command = serde_json::json!({"table": format!("{schema}.t"), "geometry": geometry});
            let info = flight
                .get_flight_info(FlightDescriptor::new_cmd(command.to_string()))
                .await
                .unwrap();
            let batches = read_all(server, &info).await;
            let field = batches[0].schema().field_with_name("g").unwrap().clone();
            let mut rows: Vec<(i32, Option<String>)> = Vec::new();
            for batch in &batches {
                let ids = batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .unwrap();
                let g = batch
                    .column(1)
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .unwrap();
                for i in 0..batch.num_rows() {
                    rows.push((
                        ids.value(i),
                        (!g.is_null(i)).then(|| hex::encode(g.value(i))),
                    ));
                }
            }
            rows.sort();
            (field, rows)
        }
    };
    let (field, rows) = read("ewkb").await;
    assert_eq!(rows, want, "EWKB exactly as stored, SRIDs included");
    assert_eq!(
        field
            .metadata()
            .get("redshift_flight.geometry_encoding")
            .map(String::as_str),
        Some("ewkb")
    );
    assert!(!field.metadata().contains_key("ARROW:extension:name"));

    let (field, rows) = read("wkb").await;
    let iso = "0101000000000000000000f03f0000000000000040".to_string();
    assert_eq!(
        rows,
        vec![
            (1, Some(iso.clone())),
            (2, Some(iso.clone())),
            (3, Some(iso)),
            (4, None)
        ]
    );
    assert_eq!(
        field
            .metadata()
            .get("ARROW:extension:name")
            .map(String::as_str),
        Some("geoarrow.wkb")
    );
    server.stop().await;
}
