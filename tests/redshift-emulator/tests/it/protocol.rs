//! The emulator as a PostgreSQL server: authentication, forwarding, the extended protocol,
//! version() and the compatibility objects. Needs the test bed (see `common`).

use tokio_postgres::NoTls;
use tokio_postgres::SimpleQueryMessage;

use crate::common::{Emulator, db_error, unique};

#[tokio::test]
async fn wrong_password_is_28p01() {
    let emu = Emulator::start().await;
    let mut config = emu.conn_config();
    config.password("not-the-password");
    let err = config.connect(NoTls).await.err().expect("login must fail");
    assert_eq!(db_error(&err).0, "28P01", "{err:?}");

    let mut config = emu.conn_config();
    config.user("someone_else");
    let err = config.connect(NoTls).await.err().expect("login must fail");
    assert_eq!(db_error(&err).0, "28P01", "{err:?}");
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let emu = Emulator::start().await;
    let mut config = emu.conn_config();
    config.dbname("not_dev");
    let err = config.connect(NoTls).await.err().expect("login must fail");
    let (code, message) = db_error(&err);
    assert_eq!(code, "3D000");
    assert_eq!(message, "database \"not_dev\" does not exist");
}

#[tokio::test]
async fn version_reports_redshift() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let row = client.query_one("SELECT version()", &[]).await.unwrap();
    let v: String = row.get("version");
    assert_eq!(v, redshift_emulator::REDSHIFT_VERSION);
    assert!(v.contains("Redshift"));
    let rows = client.simple_query("select version();").await.unwrap();
    let SimpleQueryMessage::Row(row) = &rows[1] else {
        panic!("{rows:?}")
    };
    assert!(row.get(0).unwrap().contains("Redshift 1.0"));
}

#[tokio::test]
async fn forwarded_errors_keep_sqlstate_and_message() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = unique("no_such_table");
    let err = client
        .query(&format!("select * from {table}"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "42P01".to_owned(),
            format!("relation \"{table}\" does not exist")
        )
    );
    let err = client.simple_query("select 1/0").await.unwrap_err();
    assert_eq!(db_error(&err).0, "22012");
    let err = client.simple_query("selec 1").await.unwrap_err();
    assert_eq!(db_error(&err).0, "42601");
    // the session is still usable
    let row = client.query_one("select 2::int", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
}

#[tokio::test]
async fn extended_protocol_with_parameters_and_types() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let row = client.query_one("select $1::int", &[&1i32]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);
    let row = client
        .query_one(
            "select $1::text || 'x' as s, $2::int8 * 2 as n, $3::float8 as f, null::date as d",
            &[&"ab", &21i64, &0.5f64],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>("s"), "abx");
    assert_eq!(row.get::<_, i64>("n"), 42);
    assert_eq!(row.get::<_, f64>("f"), 0.5);
    assert_eq!(row.get::<_, Option<chrono::NaiveDate>>("d"), None);

    // prepared statements are reused; errors in the extended protocol keep the session usable
    let stmt = client.prepare("select $1::int + 1").await.unwrap();
    for i in 0..3i32 {
        let row = client.query_one(&stmt, &[&i]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), i + 1);
    }
    let err = client
        .query("select 1/$1::int", &[&0i32])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "22012");
    let n = client
        .execute("select generate_series(1, 5)", &[])
        .await
        .unwrap();
    assert_eq!(n, 5);
}

#[tokio::test]
async fn simple_protocol_multiple_statements_and_transactions() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let table = unique("tx");
    let msgs = client
        .simple_query(&format!(
            "create temp table {table}(a int); insert into {table} values (1),(2); select count(*) from {table}"
        ))
        .await
        .unwrap();
    let rows: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(rows, vec!["2".to_owned()]);

    // one backend connection per session: a transaction and temp tables behave
    client.batch_execute("begin").await.unwrap();
    client
        .execute(&format!("insert into {table} values (3)"), &[])
        .await
        .unwrap();
    client.batch_execute("rollback").await.unwrap();
    let row = client
        .query_one(&format!("select count(*)::int from {table}"), &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);

    // another session does not see the temp table
    let other = emu.client().await;
    let err = other
        .query(&format!("select * from {table}"), &[])
        .await
        .unwrap_err();
    assert_eq!(db_error(&err).0, "42P01");
}

#[tokio::test]
async fn compatibility_objects_exist() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let schema = unique("Compat Schema");
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    client
        .batch_execute(&format!(
            "create schema {s}; create table {s}.t (a super, b varbyte, g geometry, h hllsketch, i int);
             insert into {s}.t values ('{{\"k\": [1, 2]}}', decode('0102ff', 'hex'), decode('0101000000', 'hex'), 'x', 1);
             analyze {s}.t;",
            s = q(&schema)
        ))
        .await
        .unwrap();
    let row = client
        .query_one(
            &format!(
                "select json_serialize(a), to_hex(b), st_ashexewkb(g) from {}.t",
                q(&schema)
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "{\"k\": [1, 2]}");
    assert_eq!(row.get::<_, String>(1), "0102ff");
    assert_eq!(row.get::<_, String>(2), "0101000000");

    let row = client
        .query_one(
            "select \"database\", \"schema\", \"table\", table_id::int8, tbl_rows::int8, size \
             from svv_table_info where \"schema\" = $1",
            &[&schema],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, String>("database").is_empty());
    assert_eq!(row.get::<_, String>("table"), "t");
    assert_eq!(row.get::<_, i64>("tbl_rows"), 1);
    assert!(row.get::<_, i64>("size") >= 0);
    assert!(row.get::<_, i64>("table_id") > 0);
    client
        .batch_execute(&format!("drop schema {} cascade", q(&schema)))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_emulators_start_concurrently() {
    let (a, b) = tokio::join!(Emulator::start(), Emulator::start());
    let (ca, cb) = tokio::join!(a.client(), b.client());
    assert_eq!(
        ca.query_one("select 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    assert_eq!(
        cb.query_one("select 1::int", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    a.running.shutdown().await;
    b.running.shutdown().await;
}
