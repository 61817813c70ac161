//! Redshift's catalog for the relations PostgreSQL keeps differently: late-binding views,
//! materialized views and Spectrum external tables, created at start-up beside
//! [`crate::compat::COMPAT_SQL`] (idempotently, under the same advisory lock).
//!
//! * **Late-binding views.** `CREATE VIEW ... WITH NO SCHEMA BINDING` (rewritten by
//!   [`crate::catalog_sql`]) calls `redshift_emulator.create_late_binding_view`: the SELECT is
//!   checked once (as Redshift checks it at creation), its columns and types are recorded in
//!   `redshift_emulator.late_binding_views`, and the view is created over a PL/pgSQL function that
//!   runs the SELECT by `EXECUTE`, so nothing binds the view to its tables: dropping or changing
//!   them succeeds, and reading the view then fails (42P01, 42703, or 42804 for a changed type),
//!   as a late-binding view on Redshift does. `pg_get_late_binding_view_cols()` returns Redshift's
//!   records (schema, view, column, type, number) from that registry, and the view's columns
//!   are hidden from `pg_attribute` (see below), where Redshift does not keep them.
//! * **Materialized views.** `svv_mv_info` and `stv_mv_info` with Redshift's columns over
//!   `pg_matviews` (`state` 1, never stale: PostgreSQL refreshes only on request).
//! * **Spectrum external tables.** `CREATE EXTERNAL SCHEMA` (rewritten by
//!   [`crate::catalog_sql`]) calls `redshift_emulator.create_external_schema`: a PostgreSQL schema
//!   registered in `redshift_emulator.external_schemas`, whose tables stand for the external
//!   tables of the named Glue database. `svv_external_schemas`, `svv_external_tables` and
//!   `svv_external_columns` describe them with Hive's type names (`int`, `string`,
//!   `decimal(p,s)`, `timestamp`, `array<...>` for PostgreSQL arrays, `struct<...>` for composite
//!   types), and their columns are hidden from `pg_attribute` too.
//! * **Consumer (datashare) databases.** `CREATE DATABASE ... FROM DATASHARE` (rewritten by
//!   [`crate::catalog_sql`]) calls `redshift_emulator.create_datashare_database`, which records
//!   the database in `redshift_emulator.datashare_databases`. Its schema `s` is the PostgreSQL
//!   schema named `db.s` (one name with a dot; the producer's tables are created there), which
//!   three-part names `db.s.t` are rewritten to. PostgreSQL cannot query across databases, so a
//!   second PostgreSQL database could not be read by the same SELECT; a schema per consumer
//!   schema keeps the SQL and the catalog answers Redshift's while the data stays in one place.
//!   `svv_redshift_schemas`, `svv_redshift_tables` and `svv_redshift_columns` describe the
//!   connected database (`database_name` = the current database) and each consumer database.
//! * **`redshift_emulator.pg_attribute`** and **`redshift_emulator.pg_namespace`**: the catalog
//!   without what Redshift keeps elsewhere (the columns of late-binding views, external tables
//!   and consumer databases; the consumer databases' schemas); client statements that name
//!   `pg_attribute` or `pg_namespace` read these instead ([`crate::catalog_sql`]).
//! * `json_serialize` of arrays and composite values (how a nested external column is read as
//!   JSON text).
//!
//! Imports nothing from the crate.

/// The catalog DDL, idempotent.
pub const CATALOG_SQL: &str = r#"
CREATE SCHEMA IF NOT EXISTS redshift_emulator;

CREATE TABLE IF NOT EXISTS redshift_emulator.late_binding_views (
  view_schema text NOT NULL,
  view_name text NOT NULL,
  definition text NOT NULL,
  function_name text NOT NULL,
  column_names text[] NOT NULL,
  column_types text[] NOT NULL,
  PRIMARY KEY (view_schema, view_name)
);

CREATE TABLE IF NOT EXISTS redshift_emulator.datashare_databases (
  database_name text PRIMARY KEY,
  share_name text NOT NULL,
  producer_namespace text
);

-- The consumer database a PostgreSQL schema belongs to (its name is `database.schema`), or NULL.
CREATE OR REPLACE FUNCTION redshift_emulator.datashare_of(nspname text) RETURNS text
  LANGUAGE sql STABLE AS $$
    SELECT d.database_name FROM redshift_emulator.datashare_databases d
    WHERE starts_with(nspname, d.database_name || '.') LIMIT 1
  $$;

CREATE OR REPLACE FUNCTION redshift_emulator.create_datashare_database(
    p_name text, p_share text, p_namespace text) RETURNS void
  LANGUAGE plpgsql AS $fn$
  BEGIN
    INSERT INTO redshift_emulator.datashare_databases VALUES (p_name, p_share, p_namespace)
      ON CONFLICT (database_name) DO UPDATE
        SET share_name = EXCLUDED.share_name, producer_namespace = EXCLUDED.producer_namespace;
  END $fn$;

CREATE TABLE IF NOT EXISTS redshift_emulator.external_schemas (
  schemaname text PRIMARY KEY,
  databasename text NOT NULL,
  esoptions text
);

-- Whether relation `rel` is a late-binding view the registry knows (the view over its function).
CREATE OR REPLACE FUNCTION redshift_emulator.is_late_binding_view(rel oid) RETURNS boolean
  LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
      SELECT 1 FROM redshift_emulator.late_binding_views l
      JOIN pg_catalog.pg_class c ON c.oid = rel AND c.relname = l.view_name AND c.relkind = 'v'
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace AND n.nspname = l.view_schema
      WHERE strpos(pg_catalog.pg_get_viewdef(c.oid), l.function_name) > 0)
  $$;

CREATE OR REPLACE FUNCTION redshift_emulator.create_late_binding_view(
    p_schema text, p_name text, p_body text, p_replace boolean) RETURNS void
  LANGUAGE plpgsql AS $fn$
  DECLARE
    s text := coalesce(p_schema, current_schema());
    fn text := 'lbv_' || md5(coalesce(p_schema, current_schema()) || '.' || p_name);
    existing oid;
    names text[];
    types text[];
    returns text;
    casts text;
  BEGIN
    SELECT c.oid INTO existing FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = s AND c.relname = p_name;
    IF existing IS NOT NULL AND NOT p_replace THEN
      RAISE EXCEPTION 'relation "%" already exists', p_name USING ERRCODE = '42P07';
    END IF;
    -- Redshift checks the SELECT once, when the view is created.
    EXECUTE format('CREATE TEMP VIEW rsemul_lbv_probe AS %s', p_body);
    SELECT array_agg(a.attname::text ORDER BY a.attnum),
           array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
      INTO names, types
      FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = 'pg_temp.rsemul_lbv_probe'::regclass AND a.attnum > 0 AND NOT a.attisdropped;
    DROP VIEW pg_temp.rsemul_lbv_probe;
    SELECT string_agg(format('%I %s', n, t), ', ' ORDER BY i),
           string_agg(format('%I::%s AS %I', n, t, n), ', ' ORDER BY i)
      INTO returns, casts
      FROM unnest(names, types) WITH ORDINALITY AS c(n, t, i);
    IF existing IS NOT NULL THEN
      EXECUTE format('DROP VIEW %I.%I', s, p_name);
    END IF;
    EXECUTE format('DROP FUNCTION IF EXISTS redshift_emulator.%I()', fn);
    EXECUTE format('CREATE FUNCTION redshift_emulator.%I() RETURNS TABLE (%s) LANGUAGE plpgsql AS %L',
                   fn, returns, format('BEGIN RETURN QUERY EXECUTE %L; END', p_body));
    -- The casts keep each column's type modifier (a function's result columns have none).
    EXECUTE format('CREATE VIEW %I.%I AS SELECT %s FROM redshift_emulator.%I() AS f',
                   s, p_name, casts, fn);
    INSERT INTO redshift_emulator.late_binding_views
      VALUES (s, p_name, p_body, fn, names, types)
      ON CONFLICT (view_schema, view_name) DO UPDATE
        SET definition = EXCLUDED.definition, function_name = EXCLUDED.function_name,
            column_names = EXCLUDED.column_names, column_types = EXCLUDED.column_types;
  END $fn$;

-- Redshift's function: one record per column of every late-binding view.
CREATE OR REPLACE FUNCTION public.pg_get_late_binding_view_cols() RETURNS SETOF record
  LANGUAGE sql STABLE AS $$
    SELECT l.view_schema::name, l.view_name::name, c.n::name, c.t::varchar, c.i::int
    FROM redshift_emulator.late_binding_views l
    JOIN pg_catalog.pg_namespace n ON n.nspname = l.view_schema
    JOIN pg_catalog.pg_class r ON r.relnamespace = n.oid AND r.relname = l.view_name
    CROSS JOIN LATERAL unnest(l.column_names, l.column_types) WITH ORDINALITY AS c(n, t, i)
    WHERE redshift_emulator.is_late_binding_view(r.oid)
    ORDER BY 1, 2, 5
  $$;

CREATE OR REPLACE FUNCTION redshift_emulator.create_external_schema(
    p_schema text, p_database text, p_options text) RETURNS void
  LANGUAGE plpgsql AS $fn$
  BEGIN
    EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', p_schema);
    INSERT INTO redshift_emulator.external_schemas VALUES (p_schema, p_database, p_options)
      ON CONFLICT (schemaname) DO UPDATE
        SET databasename = EXCLUDED.databasename, esoptions = EXCLUDED.esoptions;
  END $fn$;

-- Hive's name of a PostgreSQL type, as svv_external_columns.external_type spells it.
CREATE OR REPLACE FUNCTION redshift_emulator.hive_type(t oid, typmod integer) RETURNS text
  LANGUAGE plpgsql STABLE AS $fn$
  DECLARE
    ty record;
    fields text;
  BEGIN
    SELECT * INTO ty FROM pg_catalog.pg_type WHERE oid = t;
    IF ty.typtype = 'd' THEN
      RETURN redshift_emulator.hive_type(ty.typbasetype, ty.typtypmod);
    END IF;
    IF ty.typcategory = 'A' THEN
      RETURN 'array<' || redshift_emulator.hive_type(ty.typelem, typmod) || '>';
    END IF;
    IF ty.typtype = 'c' THEN
      SELECT string_agg(a.attname || ':' || redshift_emulator.hive_type(a.atttypid, a.atttypmod),
                        ',' ORDER BY a.attnum)
        INTO fields
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = ty.typrelid AND a.attnum > 0 AND NOT a.attisdropped;
      RETURN 'struct<' || fields || '>';
    END IF;
    RETURN CASE t
      WHEN 'int2'::regtype::oid THEN 'smallint'
      WHEN 'int4'::regtype::oid THEN 'int'
      WHEN 'int8'::regtype::oid THEN 'bigint'
      WHEN 'float4'::regtype::oid THEN 'float'
      WHEN 'float8'::regtype::oid THEN 'double'
      WHEN 'bool'::regtype::oid THEN 'boolean'
      WHEN 'text'::regtype::oid THEN 'string'
      WHEN 'date'::regtype::oid THEN 'date'
      WHEN 'timestamp'::regtype::oid THEN 'timestamp'
      WHEN 'varchar'::regtype::oid THEN
        CASE WHEN typmod > 4 THEN format('varchar(%s)', typmod - 4) ELSE 'string' END
      WHEN 'bpchar'::regtype::oid THEN format('char(%s)', greatest(typmod - 4, 1))
      WHEN 'numeric'::regtype::oid THEN
        CASE WHEN typmod > 4
             THEN format('decimal(%s,%s)', ((typmod - 4) >> 16) & 65535, (typmod - 4) & 65535)
             ELSE 'decimal(38,18)' END
      ELSE pg_catalog.format_type(t, typmod)
    END;
  END $fn$;

CREATE OR REPLACE VIEW public.svv_external_schemas AS
SELECT n.oid AS esoid,
       1::smallint AS eskind,
       e.schemaname::name AS schemaname,
       n.nspowner::integer AS esowner,
       e.databasename AS databasename,
       coalesce(e.esoptions, '{}') AS esoptions
FROM redshift_emulator.external_schemas e
JOIN pg_catalog.pg_namespace n ON n.nspname = e.schemaname;

CREATE OR REPLACE VIEW public.svv_external_tables AS
SELECT current_database()::text AS redshift_database_name,
       e.schemaname::text AS schemaname,
       c.relname::text AS tablename,
       'EXTERNAL_TABLE'::text AS tabletype,
       format('s3://redshift-emulator-spectrum/%s/%s/', e.databasename, c.relname) AS location,
       'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat'::text AS input_format,
       'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat'::text AS output_format,
       'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe'::text AS serialization_lib,
       '{"serialization.format":"1"}'::text AS serde_parameters,
       0 AS compressed,
       '{}'::text AS parameters
FROM redshift_emulator.external_schemas e
JOIN pg_catalog.pg_namespace n ON n.nspname = e.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'm');

CREATE OR REPLACE VIEW public.svv_external_columns AS
SELECT current_database()::text AS redshift_database_name,
       t.schemaname,
       t.tablename,
       a.attname::text AS columnname,
       redshift_emulator.hive_type(a.atttypid, a.atttypmod) AS external_type,
       (row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::integer AS columnnum,
       0 AS part_key,
       CASE WHEN a.attnotnull THEN 'false' ELSE 'true' END AS is_nullable
FROM public.svv_external_tables t
JOIN pg_catalog.pg_namespace n ON n.nspname = t.schemaname
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.tablename
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped;

CREATE OR REPLACE VIEW public.svv_mv_info AS
SELECT current_database()::char(128) AS database_name,
       m.schemaname::char(128) AS schema_name,
       m.matviewowner::char(128) AS user_name,
       m.matviewname::char(128) AS name,
       'f'::char(1) AS is_stale,
       1 AS state,
       'f'::char(1) AS autorefresh,
       'f'::char(1) AS autorewrite
FROM pg_catalog.pg_matviews m;

CREATE OR REPLACE VIEW public.stv_mv_info AS
SELECT current_database()::char(128) AS db_name,
       m.schemaname::char(128) AS schema,
       m.matviewname::char(128) AS name,
       0::bigint AS updated_upto_xid,
       'f'::char(1) AS is_stale,
       m.matviewowner::char(128) AS owner_user_name,
       1 AS state,
       'f'::char(1) AS autorefresh,
       'f'::char(1) AS autorewrite
FROM pg_catalog.pg_matviews m;

CREATE OR REPLACE VIEW redshift_emulator.pg_namespace AS
SELECT n.* FROM pg_catalog.pg_namespace n
WHERE NOT EXISTS (SELECT 1 FROM redshift_emulator.datashare_databases)
   OR redshift_emulator.datashare_of(n.nspname) IS NULL;

-- pg_attribute as Redshift has it: no columns of late-binding views, external tables or consumer
-- databases. (attmissingval, of pseudo-type anyarray, cannot be a view's column: it is left out.)
DO $$
BEGIN
  EXECUTE (
    SELECT format(
      'CREATE OR REPLACE VIEW redshift_emulator.pg_attribute AS SELECT %s FROM pg_catalog.pg_attribute a '
      'WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
      'WHERE c.oid = a.attrelid AND (n.nspname IN (SELECT schemaname FROM redshift_emulator.external_schemas) '
      'OR (EXISTS (SELECT 1 FROM redshift_emulator.datashare_databases) AND redshift_emulator.datashare_of(n.nspname) IS NOT NULL))) '
      'AND NOT (EXISTS (SELECT 1 FROM redshift_emulator.late_binding_views) '
      'AND redshift_emulator.is_late_binding_view(a.attrelid))',
      string_agg(format('a.%I', attname), ', ' ORDER BY attnum))
    FROM pg_catalog.pg_attribute
    WHERE attrelid = 'pg_catalog.pg_attribute'::regclass AND attnum > 0
      AND atttypid <> 'anyarray'::regtype);
END
$$;

-- Redshift's views of every database's schemas, relations and columns: the connected database
-- (its user schemas) and each consumer database (the schemas named `database.schema`).
CREATE OR REPLACE VIEW redshift_emulator.redshift_schemas AS
SELECT coalesce(d, current_database())::varchar(128) AS database_name,
       (CASE WHEN d IS NULL THEN n.nspname ELSE substr(n.nspname, length(d) + 2) END)::varchar(128) AS schema_name,
       n.oid AS nspoid,
       n.nspowner::integer AS schema_owner
FROM pg_catalog.pg_namespace n
CROSS JOIN LATERAL (SELECT redshift_emulator.datashare_of(n.nspname) AS d) x
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'redshift_emulator')
  AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp\_%';

CREATE OR REPLACE VIEW public.svv_redshift_schemas AS
SELECT database_name, schema_name, schema_owner,
       (CASE WHEN database_name = current_database() THEN 'local' ELSE 'shared' END)::varchar(128) AS schema_type,
       NULL::varchar(128) AS schema_acl, NULL::varchar(256) AS schema_option
FROM redshift_emulator.redshift_schemas;

CREATE OR REPLACE VIEW public.svv_redshift_tables AS
SELECT s.database_name, s.schema_name, c.relname::varchar(128) AS table_name,
       (CASE WHEN c.relkind IN ('v', 'm') THEN 'VIEW' ELSE 'TABLE' END)::varchar(128) AS table_type,
       NULL::varchar(128) AS table_acl, NULL::varchar(256) AS remarks
FROM redshift_emulator.redshift_schemas s
JOIN pg_catalog.pg_class c ON c.relnamespace = s.nspoid AND c.relkind IN ('r', 'p', 'v', 'm');

CREATE OR REPLACE VIEW public.svv_redshift_columns AS
SELECT s.database_name, s.schema_name, c.relname::varchar(128) AS table_name,
       a.attname::varchar(128) AS column_name,
       (row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum))::integer AS ordinal_position,
       pg_catalog.format_type(a.atttypid, a.atttypmod)::varchar(32) AS data_type,
       NULL::varchar(4000) AS column_default,
       (CASE WHEN a.attnotnull THEN 'NO' ELSE 'YES' END)::varchar(3) AS is_nullable,
       'none'::varchar(128) AS encoding, false AS distkey, 0 AS sortkey,
       NULL::varchar(128) AS column_acl, NULL::varchar(256) AS remarks
FROM redshift_emulator.redshift_schemas s
JOIN pg_catalog.pg_class c ON c.relnamespace = s.nspoid AND c.relkind IN ('r', 'p', 'v', 'm')
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped;

-- How a nested external column (a PostgreSQL array or composite value) is read as JSON text.
CREATE OR REPLACE FUNCTION public.json_serialize(anyarray) RETURNS text
  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT to_jsonb($1)::text $$;
CREATE OR REPLACE FUNCTION public.json_serialize(record) RETURNS text
  LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$ BEGIN RETURN to_jsonb($1)::text; END $$;
"#;
