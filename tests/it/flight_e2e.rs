//! End-to-end: a real PostgreSQL behind the Redshift emulator, a real S3 server, the server
//! in-process, and arrow-flight's `FlightClient`. Every result is compared, row by row and column
//! by column, with what PostgreSQL holds.

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, TimeUnit};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use futures::TryStreamExt;
use tonic::Code;

use crate::common;
use crate::common::canon::{Col, Kind, canon_batches, pg_canon_rows, quote, read_all};
use crate::common::{TestServer, pg, pg_rows, unique};

fn all_type_columns() -> Vec<Col> {
    use DataType::*;
    let ts = Timestamp(TimeUnit::Microsecond, None);
    let tstz = Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    vec![
        Col {
            name: "id",
            ddl: "integer primary key",
            kind: Kind::Text,
            arrow: Int32,
        },
        Col {
            name: "Small Int",
            ddl: "smallint",
            kind: Kind::Text,
            arrow: Int16,
        },
        Col {
            name: "select",
            ddl: "integer",
            kind: Kind::Text,
            arrow: Int32,
        },
        Col {
            name: "big",
            ddl: "bigint",
            kind: Kind::Text,
            arrow: Int64,
        },
        Col {
            name: "dec38",
            ddl: "numeric(38,10)",
            kind: Kind::Text,
            arrow: Decimal128(38, 10),
        },
        Col {
            name: "dec38_0",
            ddl: "numeric(38,0)",
            kind: Kind::Text,
            arrow: Decimal128(38, 0),
        },
        Col {
            name: "dec_small",
            ddl: "numeric(5,2)",
            kind: Kind::Text,
            arrow: Decimal128(5, 2),
        },
        Col {
            name: "r",
            ddl: "real",
            kind: Kind::Float32,
            arrow: Float32,
        },
        Col {
            name: "d",
            ddl: "double precision",
            kind: Kind::Float64,
            arrow: Float64,
        },
        Col {
            name: "b",
            ddl: "boolean",
            kind: Kind::Text,
            arrow: Boolean,
        },
        Col {
            name: "ch",
            ddl: "char(5)",
            kind: Kind::Text,
            arrow: Utf8,
        },
        Col {
            name: "vc",
            ddl: "varchar(100)",
            kind: Kind::Text,
            arrow: Utf8,
        },
        Col {
            name: "Dt",
            ddl: "date",
            kind: Kind::Days,
            arrow: Date32,
        },
        Col {
            name: "ts",
            ddl: "timestamp",
            kind: Kind::Epoch,
            arrow: ts,
        },
        Col {
            name: "tstz",
            ddl: "timestamptz",
            kind: Kind::Epoch,
            arrow: tstz,
        },
        Col {
            name: "t",
            ddl: "time",
            kind: Kind::Epoch,
            arrow: Time64(TimeUnit::Microsecond),
        },
        Col {
            name: "ttz",
            ddl: "timetz",
            kind: Kind::Text,
            arrow: Utf8,
        },
        Col {
            name: "vb",
            ddl: "varbyte",
            kind: Kind::Hex,
            arrow: Binary,
        },
        Col {
            name: "sup",
            ddl: "super",
            kind: Kind::Text,
            arrow: Utf8,
        },
        Col {
            name: "geo",
            ddl: "geometry",
            kind: Kind::Geometry,
            arrow: Binary,
        },
        Col {
            name: "a\"b",
            ddl: "integer",
            kind: Kind::Text,
            arrow: Int32,
        },
        Col {
            name: "x'); drop table t; --",
            ddl: "text",
            kind: Kind::Text,
            arrow: Utf8,
        },
    ]
}

const ALL_TYPE_ROWS: &[&str] = &[
    // maxima
    "(1, 32767, 2147483647, 9223372036854775807, 9999999999999999999999999999.9999999999, \
      99999999999999999999999999999999999999, 999.99, 3.4028235e38, 1.7976931348623157e308, true, 'abc', \
      'héllo wörld 你好 🎉', '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', \
      '23:59:59.999999', '23:59:59.999999+14', '\\xdeadbeef', '{\"a\": [1, 2, {\"b\": null}], \"c\": \"x\"}', \
      '\\x0101000020e6100000000000000000f03f0000000000000040', 7, 'O''Brien')",
    // minima, empty values
    "(2, -32768, -2147483648, -9223372036854775808, -9999999999999999999999999999.9999999999, \
      -99999999999999999999999999999999999999, -999.99, -3.4028235e38, -1.7976931348623157e308, false, '', \
      '', '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '00:00:00', '00:00:00-12', '\\x', \
      '[]', '\\x01020000000200000000000000000000000000000000000000000000000000f03f000000000000f03f', \
      -1, '')",
    // special floats, tiny decimals, a non-UTC input zone
    "(3, 0, 0, 0, 0.0000000001, 0, -0.01, 'NaN', 'Infinity', true, ' x ', ' spaced ', '2024-02-29', \
      '2024-02-29 12:34:56.000001', '2024-06-30 23:59:59.5+05:30', '12:00:00.5', '12:00:00+05:30', '\\x00', \
      '\"just a string\"', NULL, 0, 'line\nbreak\ttab')",
    "(4, 1, 1, 1, -0.0000000001, 1, 0.00, '-Infinity', '-0', false, 'abcde', 'back\\slash \"quote\"', \
      '1970-01-01', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999999-00', '00:00:00.000001', '01:02:03.4-01', \
      '\\x00ff10', '{}', NULL, NULL, NULL)",
    "(5, NULL, NULL, NULL, NULL, NULL, NULL, '-0', 5e-324, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
      NULL, NULL, NULL, NULL)",
    "(6, NULL, NULL, NULL, NULL, NULL, NULL, 1.17549435e-38, 2.2250738585072014e-308, NULL, NULL, NULL, NULL, \
      NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    "(7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
      'null', NULL, NULL, NULL)",
];

/// Creates a schema and table with hostile names holding every type; returns (schema, table).
async fn create_all_types_table() -> (String, String) {
    let schema = format!("E2E Schema {}", unique("s"));
    let table = format!("All \"Types\" {}", unique("t"));
    let cols = all_type_columns();
    let ddl = cols
        .iter()
        .map(|c| format!("{} {}", quote(c.name), c.ddl))
        .collect::<Vec<_>>()
        .join(", ");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.{t} ({ddl}); INSERT INTO {s}.{t} VALUES {rows};",
            s = quote(&schema),
            t = quote(&table),
            rows = ALL_TYPE_ROWS.join(", ")
        ))
        .await
        .expect("create the all-types table");
    (schema, table)
}

#[tokio::test]
async fn every_type_round_trips_exactly() {
    let (schema, table) = create_all_types_table().await;
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let descriptor = FlightDescriptor::new_path(vec![schema.clone(), table.clone()]);
    let info = client
        .get_flight_info(descriptor.clone())
        .await
        .expect("GetFlightInfo");

    let cols = all_type_columns();
    let promised = info.clone().try_decode_schema().unwrap();
    let got_types: Vec<(String, DataType)> = promised
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    let want_types: Vec<(String, DataType)> = cols
        .iter()
        .map(|c| (c.name.to_string(), c.arrow.clone()))
        .collect();
    assert_eq!(got_types, want_types);
    assert!(!promised.field(0).is_nullable(), "id is NOT NULL");
    assert!(promised.field(1).is_nullable());
    assert_eq!(
        promised.metadata()["redshift_flight.primary_key"],
        "[\"id\"]"
    );
    assert_eq!(
        promised.field_with_name("sup").unwrap().metadata()["ARROW:extension:name"],
        "arrow.json"
    );
    assert_eq!(info.total_records, ALL_TYPE_ROWS.len() as i64);
    assert!(!info.ordered);
    assert!(!info.endpoint.is_empty());
    for endpoint in &info.endpoint {
        assert!(endpoint.expiration_time.is_some());
    }
    let app: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    assert_eq!(app["mode"], "full");
    assert!(app.get("next_cursor").is_some() && app.get("replication_key").is_some());

    let schema_result = client.get_schema(descriptor).await.expect("GetSchema");
    assert_eq!(
        schema_result, promised,
        "GetSchema promises what GetFlightInfo promises"
    );

    let batches = read_all(&server, &info).await;
    for batch in &batches {
        assert_eq!(
            batch.schema(),
            std::sync::Arc::new(promised.clone()),
            "DoGet sends the promised schema"
        );
    }
    let got = canon_batches(&batches);
    let col_refs: Vec<&Col> = cols.iter().collect();
    let want = pg_canon_rows(&format!("{}.{}", quote(&schema), quote(&table)), &col_refs).await;
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        for ((gv, wv), col) in g.iter().zip(w).zip(&cols) {
            assert_eq!(gv, wv, "column {:?} of row id={:?}", col.name, g[0]);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn projection_through_the_json_command() {
    let (schema, table) = create_all_types_table().await;
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    let cmd = serde_json::json!({
        "table": format!("{}.{}", quote(&schema), quote(&table)),
        "columns": ["id", "x'); drop table t; --", "T", "vb"],
        "mode": "full",
    });
    let info = client
        .get_flight_info(FlightDescriptor::new_cmd(cmd.to_string()))
        .await
        .expect("GetFlightInfo with a command");
    let promised = info.clone().try_decode_schema().unwrap();
    let names: Vec<&str> = promised
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["id", "x'); drop table t; --", "t", "vb"]);
    let batches = read_all(&server, &info).await;
    let cols = all_type_columns();
    let by_name = |n: &str| cols.iter().find(|c| c.name == n).unwrap();
    let picked = [
        by_name("id"),
        by_name("x'); drop table t; --"),
        by_name("t"),
        by_name("vb"),
    ];
    let want = pg_canon_rows(&format!("{}.{}", quote(&schema), quote(&table)), &picked).await;
    assert_eq!(canon_batches(&batches), want);
    server.stop().await;
}

#[tokio::test]
async fn zero_rows_have_no_endpoints_and_an_exact_schema() {
    let schema = unique("e2e_empty");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.empty (id bigint not null, t time, amount numeric(12,3));"
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![
            schema.clone(),
            "empty".into(),
        ]))
        .await
        .expect("GetFlightInfo");
    assert_eq!(info.total_records, 0);
    assert!(info.endpoint.is_empty());
    let promised = info.try_decode_schema().unwrap();
    let types: Vec<DataType> = promised
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    assert_eq!(
        types,
        vec![
            DataType::Int64,
            DataType::Time64(TimeUnit::Microsecond),
            DataType::Decimal128(12, 3)
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn large_table_spreads_over_endpoints_and_reads_back_whole() {
    let schema = unique("e2e_large");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.events (id bigint primary key, name varchar(64), amount numeric(18,4), at timestamp); \
             INSERT INTO {schema}.events SELECT g, 'event ' || g, g * 1.0001, \
               TIMESTAMP '2020-01-01' + g * INTERVAL '1 second' FROM generate_series(1, 200000) g;"
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_cmd(format!(
            "{{\"table\": \"{schema}.events\"}}"
        )))
        .await
        .expect("GetFlightInfo");
    assert_eq!(info.total_records, 200_000);
    assert!(
        info.endpoint.len() > 1,
        "PARALLEL ON spreads rows over several files"
    );
    let batches = read_all(&server, &info).await;
    let cols = [
        Col::new("id", Kind::Text, DataType::Int64),
        Col::new("name", Kind::Text, DataType::Utf8),
        Col::new("amount", Kind::Text, DataType::Decimal128(18, 4)),
        Col::new(
            "at",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
    ];
    let want = pg_canon_rows(
        &format!("{schema}.events"),
        &cols.iter().collect::<Vec<_>>(),
    )
    .await;
    let got = canon_batches(&batches);
    assert_eq!(got.len(), 200_000);
    assert!(got == want, "every row and column equals PostgreSQL's");
    server.stop().await;
}

#[tokio::test]
async fn list_flights_shows_tables_with_schemas() {
    let schema = unique("e2e_list");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.b (id int primary key, v varchar(3)); \
             CREATE TABLE {schema}.a (x timestamptz); CREATE VIEW {schema}.c AS SELECT id FROM {schema}.b;"
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let infos: Vec<FlightInfo> = flight
        .list_flights(schema.clone().into_bytes())
        .await
        .expect("ListFlights")
        .try_collect()
        .await
        .unwrap();
    let paths: Vec<Vec<String>> = infos
        .iter()
        .map(|i| i.flight_descriptor.clone().unwrap().path)
        .collect();
    assert_eq!(
        paths,
        vec![
            vec![schema.clone(), "a".to_string()],
            vec![schema.clone(), "b".to_string()],
            vec![schema.clone(), "c".to_string()]
        ]
    );
    let b = infos[1].clone().try_decode_schema().unwrap();
    assert_eq!(b.metadata()["redshift_flight.primary_key"], "[\"id\"]");
    assert_eq!(b.field(1).data_type(), &DataType::Utf8);
    assert!(infos.iter().all(|i| i.endpoint.is_empty()));
    server.stop().await;
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let schema = unique("e2e_bad");
    let client = pg().await;
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); INSERT INTO {schema}.t VALUES (1), (2);"))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let code = common::status::<FlightInfo>;

    let (c, m) = code(
        flight
            .get_flight_info(FlightDescriptor::new_path(vec![
                schema.clone(),
                "nope".into(),
            ]))
            .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("nope"));
    let (c, _) = code(
        flight
            .get_flight_info(FlightDescriptor::new_path(vec![
                "no_such_schema".into(),
                "t".into(),
            ]))
            .await,
    );
    assert_eq!(c, Code::NotFound);
    let (c, m) = code(
        flight
            .get_flight_info(FlightDescriptor::new_cmd("{not json"))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    let (c, _) = code(
        flight
            .get_flight_info(FlightDescriptor::new_cmd(vec![0xff, 0xfe]))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument);
    let (c, m) = code(
        flight
            .get_flight_info(FlightDescriptor::new_cmd(format!(
                "{{\"table\":\"{schema}.t\",\"columns\":[\"id\",\"zz\"]}}"
            )))
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("zz"));
    let (c, m) = code(
        flight
            .get_flight_info(FlightDescriptor::new_cmd(format!(
                "{{\"table\":\"{schema}.t\\\"; drop table x; --\"}}"
            )))
            .await,
    );
    assert!(
        matches!(c, Code::NotFound | Code::InvalidArgument),
        "{c:?} {m}"
    );

    // Tickets: garbage, forged (another key), tampered.
    let do_get_code = |r: Result<
        arrow_flight::decode::FlightRecordBatchStream,
        arrow_flight::error::FlightError,
    >| match r {
        Err(arrow_flight::error::FlightError::Tonic(status)) => status.code(),
        Ok(_) => panic!("a bad ticket was accepted"),
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        do_get_code(flight.do_get(Ticket::new("garbage")).await),
        Code::InvalidArgument
    );
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    let good = info.endpoint[0].ticket.clone().unwrap();
    let mut tampered = good.ticket.to_vec();
    let last = tampered.len() - 40;
    tampered[last] ^= 0x01;
    assert!(matches!(
        do_get_code(flight.do_get(Ticket::new(tampered)).await),
        Code::PermissionDenied | Code::InvalidArgument
    ));
    let other_server =
        TestServer::start(&[("ticket_secret", "another-secret-0123456789abcdef-xyz")]).await;
    let mut other = other_server.client().await;
    assert_eq!(
        do_get_code(other.do_get(good.clone()).await),
        Code::PermissionDenied
    );

    // The table is intact and the good ticket still works.
    let first: Vec<RecordBatch> = flight
        .do_get(good)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(first.iter().map(|b| b.num_rows()).sum::<usize>() >= 1);
    let all = read_all(&server, &info).await;
    assert_eq!(all.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let count = pg_rows(&client, &format!("SELECT count(*) FROM {schema}.t")).await;
    assert_eq!(count[0][0].as_deref(), Some("2"));
    other_server.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_cleaned_up_run_says_call_get_flight_info_again() {
    use object_store::ObjectStoreExt;
    let schema = unique("e2e_gone");
    let client = pg().await;
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int); INSERT INTO {schema}.t VALUES (1);"))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    assert_eq!(info.endpoint.len(), 1);
    let app: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    let run_id = app["run_id"].as_str().unwrap();
    let config = redshift_flight::config::Config::try_from_raw(common::raw_config(&[])).unwrap();
    let store =
        redshift_flight::store::build_s3(&config.s3, config.s3.region.as_deref().unwrap(), None)
            .unwrap();
    let manifest =
        object_store::path::Path::from(format!("redshift-flight-tests/{run_id}/data/manifest"));
    let manifest_json = store.get(&manifest).await.unwrap().bytes().await.unwrap();
    let entries = redshift_flight::stage::manifest::parse(
        &manifest_json,
        &config.s3.bucket,
        &format!("redshift-flight-tests/{run_id}/data/"),
    )
    .unwrap();
    for entry in entries {
        store
            .delete(&object_store::path::Path::from(entry.key))
            .await
            .unwrap();
    }
    let status = match flight
        .do_get(info.endpoint[0].ticket.clone().unwrap())
        .await
    {
        Err(arrow_flight::error::FlightError::Tonic(status)) => *status,
        Ok(stream) => match stream.try_collect::<Vec<_>>().await {
            Err(arrow_flight::error::FlightError::Tonic(status)) => *status,
            other => panic!("expected an error, got {other:?}"),
        },
        Err(other) => panic!("unexpected {other:?}"),
    };
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    assert!(
        status.message().contains("call GetFlightInfo again"),
        "{}",
        status.message()
    );
    common::cancel(&mut flight, &info).await;
    server.stop().await;
}

#[tokio::test]
async fn start_up_names_what_is_unreachable() {
    let error = common::start_error(&[("redshift_port", "1")]).await;
    assert!(error.contains("cannot reach Redshift at"), "{error}");
    let error = common::start_error(&[("s3_endpoint", "http://127.0.0.1:1")]).await;
    assert!(error.contains("cannot list s3://"), "{error}");
    let error = common::start_error(&[("s3_bucket", "no-such-bucket-rsf")]).await;
    assert!(error.contains("no-such-bucket-rsf"), "{error}");
    let error = common::start_error(&[("redshift_password", "wrong")]).await;
    assert!(error.contains("rejected the login"), "{error}");
    assert!(
        !error.contains("wrong"),
        "the password never appears: {error}"
    );
}

#[tokio::test]
async fn files_of_many_row_groups_stream_whole_and_a_disconnect_is_harmless() {
    use object_store::ObjectStoreExt;
    use parquet::arrow::async_reader::AsyncFileReader;

    let schema = unique("e2e_rowgroups");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int primary key, v varchar(20), d date); \
             INSERT INTO {schema}.t SELECT g, 'v' || g, DATE '2000-01-01' + g FROM generate_series(1, 30000) g;"
        ))
        .await
        .unwrap();
    let emulator = common::own_emulator(500, 2, redshift_emulator::FaultSettings::default()).await;
    let port = emulator.local_addr().port().to_string();
    let server = TestServer::start(&[("redshift_port", &port)]).await;
    let mut flight = server.client().await;
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![schema.clone(), "t".into()]))
        .await
        .unwrap();
    assert_eq!(info.total_records, 30_000);
    assert_eq!(info.endpoint.len(), 2);

    // The staged files really hold many row groups.
    let app: serde_json::Value = serde_json::from_slice(&info.app_metadata).unwrap();
    let run_prefix = format!(
        "redshift-flight-tests/{}/data/",
        app["run_id"].as_str().unwrap()
    );
    let config = redshift_flight::config::Config::try_from_raw(common::raw_config(&[])).unwrap();
    let store =
        redshift_flight::store::build_s3(&config.s3, config.s3.region.as_deref().unwrap(), None)
            .unwrap();
    let manifest = store
        .get(&object_store::path::Path::from(format!(
            "{run_prefix}manifest"
        )))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let entries =
        redshift_flight::stage::manifest::parse(&manifest, &config.s3.bucket, &run_prefix).unwrap();
    for entry in &entries {
        let mut reader = redshift_flight::store::ObjectReader::new(
            std::sync::Arc::clone(&store),
            object_store::path::Path::from(entry.key.as_str()),
            entry.size,
        );
        let metadata = reader.get_metadata(None).await.unwrap();
        assert!(
            metadata.num_row_groups() >= 20,
            "{} row groups",
            metadata.num_row_groups()
        );
    }

    // A client that reads one batch and hangs up leaves the server serving.
    for _ in 0..5 {
        let mut stream = flight
            .do_get(info.endpoint[0].ticket.clone().unwrap())
            .await
            .unwrap();
        let first = stream.try_next().await.unwrap().unwrap();
        assert!(first.num_rows() > 0);
        drop(stream);
    }

    let batches = read_all(&server, &info).await;
    let cols = [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("v", Kind::Text, DataType::Utf8),
        Col::new("d", Kind::Days, DataType::Date32),
    ];
    let want = pg_canon_rows(&format!("{schema}.t"), &cols.iter().collect::<Vec<_>>()).await;
    assert!(
        canon_batches(&batches) == want,
        "every row and column equals PostgreSQL's"
    );
    server.stop().await;
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_table_spec_limits_and_shapes_what_is_served() {
    let schema = unique("e2e_spec");
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema}; \
             CREATE TABLE {schema}.orders (id int, secret varchar(10), amount numeric(10,2), updated_at timestamp); \
             CREATE TABLE {schema}.hidden (id int); \
             INSERT INTO {schema}.orders VALUES (1, 'pw', 1.50, '2024-01-01 00:00:00'), (2, NULL, NULL, NULL);"
        ))
        .await
        .unwrap();
    let spec = std::env::temp_dir().join(format!("{schema}.toml"));
    std::fs::write(
        &spec,
        format!(
            "[[tables]]\nschema = \"{schema}\"\nname = \"orders\"\nprimary_keys = [\"id\"]\nstrategy = \"full\"\n\
             exclude_columns = [\"secret\"]\n"
        ),
    )
    .unwrap();
    let spec_path = spec.to_string_lossy().into_owned();
    let server = TestServer::start(&[
        ("auto_schema_detection", "false"),
        ("table_spec_file", &spec_path),
    ])
    .await;
    let mut flight = server.client().await;
    let listed: Vec<FlightInfo> = flight
        .list_flights(schema.clone().into_bytes())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "only the spec's table is listed");
    let hidden = flight
        .get_flight_info(FlightDescriptor::new_path(vec![
            schema.clone(),
            "hidden".into(),
        ]))
        .await;
    assert!(
        matches!(hidden, Err(arrow_flight::error::FlightError::Tonic(s)) if s.code() == Code::NotFound)
    );
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![
            schema.clone(),
            "orders".into(),
        ]))
        .await
        .unwrap();
    let promised = info.clone().try_decode_schema().unwrap();
    let names: Vec<&str> = promised
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(names, ["id", "amount", "updated_at"]);
    assert_eq!(
        promised.metadata()["redshift_flight.primary_key"],
        "[\"id\"]"
    );
    let cols = [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("amount", Kind::Text, DataType::Decimal128(10, 2)),
        Col::new(
            "updated_at",
            Kind::Epoch,
            DataType::Timestamp(TimeUnit::Microsecond, None),
        ),
    ];
    let want = pg_canon_rows(
        &format!("{schema}.orders"),
        &cols.iter().collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(canon_batches(&read_all(&server, &info).await), want);
    server.stop().await;
    let _ = std::fs::remove_file(spec);
}

#[tokio::test]
async fn backslashes_and_quotes_in_names_and_criteria_cannot_escape() {
    let schema = format!("back\\slash {}", unique("s"));
    let table = "it\\'s \"t\"".to_string();
    let client = pg().await;
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id int, {c} varchar(20)); \
             INSERT INTO {s}.{t} VALUES (1, 'a\\b'), (2, 'it''s'); \
             CREATE TABLE {s}.victim (id int); INSERT INTO {s}.victim VALUES (1);",
            s = quote(&schema),
            t = quote(&table),
            c = quote("c\\'x"),
        ))
        .await
        .unwrap();
    let server = TestServer::start(&[]).await;
    let mut flight = server.client().await;
    for criteria in [
        format!("x\\'; DROP TABLE {}.victim; --", quote(&schema)),
        format!("x\\''; DROP TABLE {}.victim; --", quote(&schema)),
    ] {
        let listed: Vec<FlightInfo> = flight
            .list_flights(criteria.into_bytes())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(listed.is_empty());
    }
    let info = flight
        .get_flight_info(FlightDescriptor::new_path(vec![
            schema.clone(),
            table.clone(),
        ]))
        .await
        .expect("names with backslashes and quotes are served");
    let batches = read_all(&server, &info).await;
    let cols = [
        Col::new("id", Kind::Text, DataType::Int32),
        Col::new("c\\'x", Kind::Text, DataType::Utf8),
    ];
    let want = pg_canon_rows(
        &format!("{}.{}", quote(&schema), quote(&table)),
        &cols.iter().collect::<Vec<_>>(),
    )
    .await;
    assert_eq!(canon_batches(&batches), want);
    let victim = pg_rows(
        &client,
        &format!("SELECT count(*) FROM {}.victim", quote(&schema)),
    )
    .await;
    assert_eq!(
        victim[0][0].as_deref(),
        Some("1"),
        "the victim table is intact"
    );
    server.stop().await;
}
