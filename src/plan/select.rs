//! The SQL a plan sends: the UNLOAD's SELECT (each column as UNLOAD can write it to Parquet),
//! typed literals for replication-key bounds, and the UNLOAD statement itself. Everything is an
//! [`Sql`] from the quoting module `crate::sql`; this file adds what needs Redshift types.
//! Imports: `crate::sql`, the catalog's model, the plan's chunking rules and `crate::config::IamRole`.

use super::chunks::{CHUNK_BYTES, chunk_count, continuation_alias};
use crate::catalog::{ColumnInfo, RedshiftType, TableRef};
use crate::config::IamRole;
use crate::sql::{QuoteError, Sql, sql};

/// A typed literal for a replication-key bound: `CAST('2024-01-01 00:00:00' AS TIMESTAMP)`.
/// The caller has validated `value` against `rtype` (see `plan::cursor::validate_bound`); this
/// function still quotes it as a literal, so even an unvalidated value could not escape.
pub fn typed_literal(rtype: &RedshiftType, value: &str) -> Result<Sql, QuoteError> {
    use RedshiftType as T;
    let text = Sql::literal(value)?;
    let cast = |to: Sql| sql!("CAST(", &text, " AS ", to, ")");
    Ok(match rtype {
        T::SmallInt | T::Integer | T::BigInt => cast(Sql::from("BIGINT")),
        T::Decimal { precision, scale } => cast(sql!(
            "DECIMAL(",
            Sql::int(*precision),
            ",",
            Sql::int(*scale),
            ")"
        )),
        T::Date => cast(Sql::from("DATE")),
        T::Timestamp => cast(Sql::from("TIMESTAMP")),
        T::TimestampTz => cast(Sql::from("TIMESTAMPTZ")),
        _ => text,
    })
}

/// How a column appears in the UNLOAD SELECT list: as is, or converted to text for the types
/// UNLOAD cannot write as Parquet. The result is aliased to the column's own name. VARBYTE and
/// GEOMETRY values longer than VARCHAR's limit need several hex chunks: [`select_list`] builds
/// those and falls back to this otherwise.
pub fn column_expr(rtype: &RedshiftType, column: &str) -> Result<Sql, QuoteError> {
    let col = Sql::ident(column)?;
    Ok(match rtype {
        RedshiftType::Time
        | RedshiftType::TimeTz
        | RedshiftType::HllSketch
        | RedshiftType::Other(_) => sql!("CAST(", &col, " AS VARCHAR) AS ", &col),
        RedshiftType::Varbyte => sql!("TO_HEX(", &col, ") AS ", &col),
        // A Spectrum nested column (array, struct, map) cannot be written to Parquet by
        // UNLOAD: its JSON text is.
        RedshiftType::Nested(_) => sql!("JSON_SERIALIZE(", &col, ") AS ", &col),
        // UNLOAD writes SUPER to Parquet itself (as JSON text, up to SUPER's own limit);
        // JSON_SERIALIZE would fail above VARCHAR's 65,535 bytes.
        RedshiftType::Super => col,
        RedshiftType::Geometry => sql!("ST_ASHEXEWKB(", &col, ") AS ", &col),
        _ => col,
    })
}

/// The SELECT-list entries of one column at `position`: the type's own expression, or, for
/// VARBYTE and GEOMETRY, its hex chunks (see `plan::chunks`).
pub fn select_list(
    rtype: &RedshiftType,
    column: &str,
    catalog_type: &str,
    position: usize,
) -> Result<Sql, QuoteError> {
    let col = Sql::ident(column)?;
    let bytes = match rtype {
        RedshiftType::Varbyte => col.clone(),
        RedshiftType::Geometry => sql!("ST_ASEWKB(", &col, ")"),
        _ => return column_expr(rtype, column),
    };
    let chunks = chunk_count(rtype, catalog_type);
    let mut list = Vec::with_capacity(chunks);
    for k in 0..chunks {
        let start = k as u64 * CHUNK_BYTES + 1;
        let alias = if k == 0 {
            col.clone()
        } else {
            Sql::ident(&continuation_alias(position, k))?
        };
        list.push(sql!(
            "TO_HEX(SUBSTRING(",
            &bytes,
            ", ",
            Sql::int(start),
            ", ",
            Sql::int(CHUNK_BYTES),
            ")) AS ",
            alias
        ));
    }
    Ok(Sql::join(list, ", "))
}

/// `SELECT <columns> FROM <table> [WHERE <filter> [AND <condition>]]`, each column as
/// [`select_list`] writes it. `filter` is a row filter rendered by the validator (already in
/// parentheses), `condition` the cursor window.
pub fn select_sql(
    table: &TableRef,
    columns: &[ColumnInfo],
    filter: Option<&Sql>,
    condition: Option<&Sql>,
) -> Result<Sql, QuoteError> {
    let list = columns
        .iter()
        .enumerate()
        .map(|(i, c)| select_list(&c.redshift_type, &c.name, &c.catalog_type, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut select = sql!(
        "SELECT ",
        Sql::join(list, ", "),
        " FROM ",
        table.sql_name()?
    );
    match (filter, condition) {
        (None, None) => {}
        (Some(filter), None) => {
            select.push(" WHERE ").push(filter);
        }
        (None, Some(condition)) => {
            select.push(" WHERE ").push(condition);
        }
        (Some(filter), Some(condition)) => {
            select
                .push(" WHERE ")
                .push(filter)
                .push(" AND ")
                .push(condition);
        }
    }
    Ok(select)
}

/// `SELECT <columns> FROM (<query>) AS "rsf_query"`: a client's query wrapped so each column is
/// converted as [`select_list`] does for a table's, and the query's own LIMIT stays inside.
pub fn query_select(columns: &[ColumnInfo], query: &Sql) -> Result<Sql, QuoteError> {
    let list = columns
        .iter()
        .enumerate()
        .map(|(i, c)| select_list(&c.redshift_type, &c.name, &c.catalog_type, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sql!(
        "SELECT ",
        Sql::join(list, ", "),
        " FROM (",
        query,
        ") AS \"rsf_query\""
    ))
}

/// The options of every UNLOAD, from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnloadOptions {
    /// `IAM_ROLE` (`iam_role`).
    pub iam_role: IamRole,
    /// `MAXFILESIZE` in MB (`unload_max_file_size_mb`).
    pub max_file_size_mb: u32,
    /// `KMS_KEY_ID '...' ENCRYPTED` (`unload_kms_key_id`).
    pub kms_key_id: Option<String>,
    /// `REGION '...'` (`unload_region`).
    pub region: Option<String>,
}

/// The UNLOAD that stages `select` under `destination` (an `s3://bucket/prefix/` URL) as Parquet
/// files with a verbose manifest, with `options`.
pub fn unload_sql(
    select: &Sql,
    destination: &str,
    options: &UnloadOptions,
) -> Result<Sql, QuoteError> {
    let role = match &options.iam_role {
        IamRole::Default => Sql::from("default"),
        IamRole::Arn(arn) => Sql::literal(arn)?,
    };
    let mut unload = sql!(
        "UNLOAD (",
        select.quoted()?,
        ") TO ",
        Sql::literal(destination)?,
        " IAM_ROLE ",
        role,
        " FORMAT AS PARQUET MANIFEST VERBOSE PARALLEL ON MAXFILESIZE ",
        Sql::int(options.max_file_size_mb),
        " MB"
    );
    if let Some(key) = &options.kms_key_id {
        unload = sql!(unload, " KMS_KEY_ID ", Sql::literal(key)?, " ENCRYPTED");
    }
    if let Some(region) = &options.region {
        unload = sql!(unload, " REGION ", Sql::literal(region)?);
    }
    Ok(unload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn typed_literals_cast_quoted_text() {
        use RedshiftType as T;
        assert_eq!(
            typed_literal(&T::Timestamp, "2024-01-01 00:00:00.5")
                .unwrap()
                .as_str(),
            "CAST('2024-01-01 00:00:00.5' AS TIMESTAMP)"
        );
        assert_eq!(
            typed_literal(
                &T::Decimal {
                    precision: 38,
                    scale: 2
                },
                "-1.50"
            )
            .unwrap()
            .as_str(),
            "CAST('-1.50' AS DECIMAL(38,2))"
        );
        assert_eq!(
            typed_literal(&T::Varchar, "it's").unwrap().as_str(),
            "'it''s'"
        );
        assert_eq!(
            typed_literal(&T::BigInt, "1' OR '1").unwrap().as_str(),
            "CAST('1'' OR ''1' AS BIGINT)"
        );
    }

    #[test]
    fn column_expressions_cast_what_parquet_cannot_hold() {
        let expr = |rtype: RedshiftType, name: &str| column_expr(&rtype, name).unwrap().to_string();
        assert_eq!(expr(RedshiftType::Integer, "a\"b"), r#""a""b""#);
        assert_eq!(
            expr(RedshiftType::Time, "t"),
            r#"CAST("t" AS VARCHAR) AS "t""#
        );
        assert_eq!(expr(RedshiftType::Varbyte, "v"), r#"TO_HEX("v") AS "v""#);
        assert_eq!(expr(RedshiftType::Super, "s"), r#""s""#);
        assert_eq!(
            expr(RedshiftType::Geometry, "g"),
            r#"ST_ASHEXEWKB("g") AS "g""#
        );
    }

    #[test]
    fn select_lists_split_values_into_hex_chunks() {
        assert_eq!(
            select_list(&RedshiftType::Varbyte, "v\"b", "varbyte(40000)", 3)
                .unwrap()
                .as_str(),
            r#"TO_HEX(SUBSTRING("v""b", 1, 32767)) AS "v""b", TO_HEX(SUBSTRING("v""b", 32768, 32767)) AS "rsf_chunk_3_1""#
        );
        let geometry = select_list(&RedshiftType::Geometry, "g", "geometry", 0)
            .unwrap()
            .to_string();
        assert!(geometry.starts_with(r#"TO_HEX(SUBSTRING(ST_ASEWKB("g"), 1, 32767)) AS "g", "#));
        assert!(geometry.ends_with(r#"AS "rsf_chunk_0_31""#));
        assert_eq!(
            select_list(&RedshiftType::Integer, "i", "integer", 1)
                .unwrap()
                .as_str(),
            r#""i""#
        );
    }
    #[test]
    fn filters_compose_with_the_cursor_window_but_not_max() {
        use crate::catalog::{TableInfo, TableKind};
        use crate::plan::{FlightRequest, GeometryEncoding, Mode, Plan, PlanError, PlanSettings};
        let table = std::sync::Arc::new(TableInfo {
            table: TableRef::new("s", "t"),
            kind: TableKind::Table,
            columns: vec![
                ColumnInfo::new("id", "integer", false),
                ColumnInfo::new("kind", "character varying(10)", true),
            ],
            primary_key: vec!["id".into()],
            row_estimate: None,
            replication_key: Some("id".into()),
            strategy: None,
        });
        let request = |mode, filter: &str| FlightRequest {
            schema: None,
            table: "t".into(),
            columns: Some(vec!["id".into()]),
            mode,
            cursor: None,
            replication_key: None,
            lookback: None,
            dictionary: false,
            geometry: GeometryEncoding::Wkb,
            filter: Some(filter.into()),
        };
        let settings = PlanSettings::default();
        // The filter may name columns outside the projection.
        let full = Plan::try_new(
            Arc::clone(&table),
            &request(Mode::Full, "kind = 'a'"),
            settings,
        )
        .unwrap();
        assert_eq!(
            full.select.as_str(),
            r#"SELECT "id" FROM "s"."t" WHERE (kind = 'a')"#
        );
        let mut incremental = Plan::try_new(
            Arc::clone(&table),
            &request(Mode::Incremental, "kind = 'a' OR id < 0"),
            settings,
        )
        .unwrap();
        assert_eq!(
            incremental.max_sql().unwrap().unwrap().as_str(),
            r#"SELECT MAX("id") FROM "s"."t""#
        );
        incremental.close_window(Some("7".into())).unwrap();
        assert_eq!(
            incremental.select.as_str(),
            r#"SELECT "id" FROM "s"."t" WHERE (kind = 'a' OR id < 0) AND "id" <= CAST('7' AS BIGINT)"#
        );
        for bad in ["nope = 1", "id = 1; DROP TABLE t", "pg_sleep(1) IS NULL"] {
            assert!(matches!(
                Plan::try_new(Arc::clone(&table), &request(Mode::Full, bad), settings),
                Err(PlanError::Filter(_))
            ));
        }
    }
}
