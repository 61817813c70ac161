//! Redshift compatibility objects in the backend database.
//!
//! So that a table created directly in PostgreSQL looks like a Redshift table, and the Flight
//! server's catalog SQL runs unchanged, the emulator creates at start-up (idempotently, under an
//! advisory lock so two emulators starting together do not race):
//!
//! * domains in `public`: `super` (jsonb), `varbyte` (bytea), `geometry` (bytea holding EWKB),
//!   `hllsketch` (text);
//! * functions `json_serialize(jsonb) -> text`, `to_hex(bytea) -> text`,
//!   `st_ashexewkb(bytea) -> text` (all three fail with SQLSTATE 22001 when the text would exceed
//!   Redshift's VARCHAR limit of 65,535 bytes, like Redshift's), `st_asewkb(bytea) -> bytea`,
//!   and `pg_last_unload_count() -> bigint` (the rows the
//!   session's last UNLOAD unloaded, which the emulator keeps in the backend session setting
//!   [`LAST_UNLOAD_COUNT_SETTING`](crate::unload::LAST_UNLOAD_COUNT_SETTING); 0 before any);
//! * the view `public.svv_table_info` with Redshift's main columns for ordinary tables in
//!   non-system schemas (`tbl_rows` from the planner statistics, `size` in 1 MB blocks);
//! * the tables `public.sys_query_history` and `public.sys_unload_history` with the columns of
//!   Redshift's monitoring views of the same names, which the emulator fills for every UNLOAD
//!   while it runs (see [`crate::history`]): `unloaded_rows` grows as row groups are written, so
//!   a client can follow a long UNLOAD's progress as on Redshift;
//! * the table `public.stl_connection_log` with the columns of Redshift's STL_CONNECTION_LOG
//!   (VARCHAR where Redshift has blank-padded CHAR) and two of the emulator's own, `reason` and
//!   `db_groups`, which the emulator fills for every login attempt and disconnection (see
//!   [`crate::connlog`]).
//!
//! The catalog of late-binding views, materialized views and external tables is
//! [`crate::compat_catalog`], installed right after.
//!
//! Rows older than seven days are deleted from those tables at start-up (Redshift keeps about as
//! much).

use tokio_postgres::NoTls;

use crate::error::Error;

/// Advisory lock key serialising concurrent start-ups ("rsemul" in ASCII).
const ADVISORY_LOCK_KEY: i64 = 0x7273_656d_756c;

/// The compatibility DDL, idempotent.
pub const COMPAT_SQL: &str = r#"
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = 'public' AND t.typname = 'super') THEN
    CREATE DOMAIN public.super AS jsonb;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = 'public' AND t.typname = 'varbyte') THEN
    CREATE DOMAIN public.varbyte AS bytea;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = 'public' AND t.typname = 'geometry') THEN
    CREATE DOMAIN public.geometry AS bytea;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE n.nspname = 'public' AND t.typname = 'hllsketch') THEN
    CREATE DOMAIN public.hllsketch AS text;
  END IF;
END
$$;

-- Functions returning VARCHAR fail like Redshift's when the result exceeds VARCHAR(65535).
CREATE OR REPLACE FUNCTION public.json_serialize(jsonb) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
  DECLARE t text := $1::text;
  BEGIN
    IF octet_length(t) > 65535 THEN
      RAISE EXCEPTION 'Value too long for character type'
        USING ERRCODE = '22001',
              DETAIL = format('JSON_SERIALIZE result of %s bytes exceeds the VARCHAR limit of 65535', octet_length(t));
    END IF;
    RETURN t;
  END $$;

CREATE OR REPLACE FUNCTION public.to_hex(bytea) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
  BEGIN
    IF octet_length($1) > 32767 THEN
      RAISE EXCEPTION 'Value too long for character type'
        USING ERRCODE = '22001',
              DETAIL = format('TO_HEX of %s bytes exceeds the VARCHAR limit of 65535', octet_length($1));
    END IF;
    RETURN encode($1, 'hex');
  END $$;

CREATE OR REPLACE FUNCTION public.st_ashexewkb(bytea) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
  BEGIN
    IF octet_length($1) > 32767 THEN
      RAISE EXCEPTION 'Value too long for character type'
        USING ERRCODE = '22001',
              DETAIL = format('ST_AsHexEWKB of %s bytes exceeds the VARCHAR limit of 65535', octet_length($1));
    END IF;
    RETURN upper(encode($1, 'hex'));
  END $$;

-- ST_AsEWKB returns VARBYTE: the stored EWKB itself
CREATE OR REPLACE FUNCTION public.st_asewkb(bytea) RETURNS bytea
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT $1 $$;

-- the setting is written by the emulator after each UNLOAD (unload::record_count)
CREATE OR REPLACE FUNCTION public.pg_last_unload_count() RETURNS bigint
  LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT coalesce(nullif(current_setting('redshift_emulator.last_unload_count', true), ''), '0')::bigint
  $$;

CREATE OR REPLACE VIEW public.svv_table_info AS
SELECT current_database()::text AS database,
       n.nspname::text AS schema,
       c.oid AS table_id,
       c.relname::text AS "table",
       'Y'::char(1) AS encoded,
       'AUTO(EVEN)'::text AS diststyle,
       NULL::text AS sortkey1,
       0::integer AS max_varchar,
       NULL::char(32) AS sortkey1_enc,
       0::integer AS sortkey_num,
       ceil(pg_total_relation_size(c.oid) / 1048576.0)::bigint AS size,
       0::numeric(10,4) AS pct_used,
       0::bigint AS empty,
       0::numeric(5,2) AS unsorted,
       0::numeric(5,2) AS stats_off,
       (CASE WHEN c.reltuples >= 0 THEN c.reltuples::numeric
             ELSE coalesce(s.n_live_tup, 0)::numeric END)::numeric(38,0) AS tbl_rows,
       NULL::numeric(19,3) AS skew_sortkey1,
       NULL::numeric(19,3) AS skew_rows,
       (CASE WHEN c.reltuples >= 0 THEN c.reltuples::numeric
             ELSE coalesce(s.n_live_tup, 0)::numeric END)::numeric(38,0) AS estimated_visible_rows,
       NULL::text AS risk_event,
       NULL::text AS vacuum_sort_benefit,
       NULL::timestamp AS create_time
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\_toast%'
  AND n.nspname NOT LIKE 'pg\_temp\_%';

-- Redshift's monitoring views, as tables the emulator writes (crate::history).
CREATE SEQUENCE IF NOT EXISTS public.redshift_emulator_query_id;
CREATE TABLE IF NOT EXISTS public.sys_query_history (
  user_id integer,
  query_id bigint PRIMARY KEY,
  query_label text,
  transaction_id bigint,
  session_id integer,
  database_name text,
  query_type text,
  status text,
  result_cache_hit boolean,
  start_time timestamp,
  end_time timestamp,
  elapsed_time bigint,
  queue_time bigint,
  execution_time bigint,
  error_message text,
  returned_rows bigint,
  returned_bytes bigint,
  query_text text
);
CREATE TABLE IF NOT EXISTS public.sys_unload_history (
  user_id integer,
  query_id bigint PRIMARY KEY,
  transaction_id bigint,
  session_id integer,
  database_name text,
  status text,
  start_time timestamp,
  end_time timestamp,
  duration bigint,
  file_format text,
  compression_type text,
  unloaded_location text,
  unloaded_rows bigint,
  unloaded_files_count bigint,
  unloaded_files_size bigint,
  error_message text
);
-- Redshift's STL_CONNECTION_LOG, as a table the emulator writes (crate::connlog). Redshift's
-- columns are blank-padded CHAR(n); these are VARCHAR. reason and db_groups are the emulator's.
CREATE TABLE IF NOT EXISTS public.stl_connection_log (
  event varchar(50),
  recordtime timestamp,
  remotehost varchar(45),
  remoteport varchar(32),
  pid integer,
  dbname varchar(50),
  username varchar(128),
  authmethod varchar(32),
  duration integer,
  sslversion varchar(50),
  sslcipher varchar(128),
  mtu integer,
  sslcompression varchar(64),
  sslexpansion varchar(64),
  iamauthguid varchar(36),
  application_name varchar(250),
  os_version varchar(64),
  driver_version varchar(64),
  plugin_name varchar(32),
  protocol_version integer,
  sessionid varchar(36),
  compression varchar(128),
  reason text,
  db_groups text
);
DELETE FROM public.stl_connection_log WHERE recordtime < timezone('UTC', now()) - interval '7 days';
DELETE FROM public.sys_unload_history WHERE start_time < timezone('UTC', now()) - interval '7 days';
DELETE FROM public.sys_query_history WHERE start_time < timezone('UTC', now()) - interval '7 days';
"#;

/// Connects to the backend and creates the compatibility objects.
pub async fn install(pg_url: &str) -> Result<(), Error> {
    let (client, connection) = tokio_postgres::connect(pg_url, NoTls).await?;
    let conn = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "compatibility bootstrap connection ended");
        }
    });
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&ADVISORY_LOCK_KEY])
            .await?;
        let mut ddl = client.batch_execute(COMPAT_SQL).await;
        if ddl.is_ok() {
            ddl = client
                .batch_execute(crate::compat_catalog::CATALOG_SQL)
                .await;
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&ADVISORY_LOCK_KEY])
            .await?;
        ddl?;
        // Three-part names of the consumer databases recorded so far resolve from now on.
        let rows = client
            .query(
                "SELECT database_name FROM redshift_emulator.datashare_databases",
                &[],
            )
            .await?;
        crate::catalog_sql::remember_datashares(rows.iter().map(|r| r.get::<_, String>(0)));
        Ok(())
    }
    .await
    .map_err(Error::Compat);
    drop(client);
    let _ = conn.await;
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_count_function_reads_the_setting_the_emulator_writes() {
        assert!(super::COMPAT_SQL.contains(&format!(
            "current_setting('{}', true)",
            crate::unload::LAST_UNLOAD_COUNT_SETTING
        )));
    }
}
