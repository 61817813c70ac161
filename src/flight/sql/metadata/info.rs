//! The server's constant self-description for Flight SQL clients: `CommandGetSqlInfo` (name,
//! version, read-only, the SQL grammar of a PostgreSQL-like dialect: what ADBC's `get_info` and
//! JDBC's `DatabaseMetaData` ask) and `CommandGetXdbcTypeInfo` (the Redshift types). Both are
//! built once and filtered per request.
//!
//! Imports: the Flight layer's error only.

use std::sync::OnceLock;

use arrow::error::ArrowError;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering as NullOrdering,
    SqlOuterJoinsSupportLevel as OuterJoins, SqlSupportedCaseSensitivity,
    SqlSupportedElementActions, SqlSupportedGroupBy as GroupBy, SqlSupportedResultSetConcurrency,
    SqlSupportedResultSetType, SqlSupportedSubqueries as Subqueries, SqlSupportedTransaction,
    SqlSupportedUnions as Unions, SqlTransactionIsolationLevel, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};

use crate::flight::ServiceError;

/// Built once. The data is constant and a test builds it; should building ever fail, requests
/// get an error, not a panic.
pub(super) fn sql_info() -> Result<&'static SqlInfoData, ServiceError> {
    static INFO: OnceLock<Result<SqlInfoData, String>> = OnceLock::new();
    INFO.get_or_init(|| build_sql_info().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ServiceError::Arrow(ArrowError::ComputeError(format!("SqlInfo: {e}"))))
}

/// A bitmask with the bit of each ordinal set (how Flight SQL lists supported features).
pub(super) fn bits(ordinals: &[i32]) -> i32 {
    ordinals.iter().fold(0, |mask, ordinal| mask | 1 << ordinal)
}

/// Redshift's reserved words (its documentation's list), for `SQL_KEYWORDS`.
const KEYWORDS: &str = "\
    AES128 AES256 ALL ALLOWOVERWRITE ANALYSE ANALYZE AND ANY ARRAY AS ASC AUTHORIZATION AZ64 \
    BACKUP BETWEEN BINARY BLANKSASNULL BOTH BYTEDICT BZIP2 CASE CAST CHECK COLLATE COLUMN \
    CONSTRAINT CREATE CREDENTIALS CROSS CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER \
    CURRENT_USER_ID DEFAULT DEFERRABLE DEFLATE DEFRAG DELTA DELTA32K DESC DISABLE DISTINCT DO \
    ELSE EMPTYASNULL ENABLE ENCODE ENCRYPT ENCRYPTION END EXCEPT EXPLICIT FALSE FOR FOREIGN \
    FREEZE FROM FULL GLOBALDICT256 GLOBALDICT64K GRANT GROUP GZIP HAVING IDENTITY IGNORE ILIKE \
    IN INITIALLY INNER INTERSECT INTERVAL INTO IS ISNULL JOIN LANGUAGE LEADING LEFT LIKE LIMIT \
    LOCALTIME LOCALTIMESTAMP LUN LUNS LZO LZOP MINUS MOSTLY16 MOSTLY32 MOSTLY8 NATURAL NEW NOT \
    NOTNULL NULL NULLS OFF OFFLINE OFFSET OID OLD ON ONLY OPEN OR ORDER OUTER OVERLAPS PARALLEL \
    PARTITION PERCENT PERMISSIONS PIVOT PLACING PRIMARY RAW READRATIO RECOVER REFERENCES \
    REJECTLOG RESORT RESPECT RESTORE RIGHT SELECT SESSION_USER SIMILAR SNAPSHOT SOME SYSDATE \
    SYSTEM TABLE TAG TDES TEXT255 TEXT32K THEN TIMESTAMP TO TOP TRAILING TRUE TRUNCATECOLUMNS \
    UNION UNIQUE UNNEST UNPIVOT USER USING VERBOSE WALLET WHEN WHERE WITH WITHOUT";

/// Redshift's functions by JDBC's categories, for `SQL_*_FUNCTIONS`.
const NUMERIC_FUNCTIONS: &str = "\
    ABS ACOS ASIN ATAN ATAN2 CBRT CEILING COS COT DEGREES EXP FLOOR LN LOG MOD PI POWER RADIANS \
    RANDOM ROUND SIGN SIN SQRT TAN TRUNC";
const STRING_FUNCTIONS: &str = "\
    ASCII BTRIM CHAR_LENGTH CHARACTER_LENGTH CHARINDEX CHR CONCAT INITCAP LEFT LEN LENGTH LOWER \
    LPAD LTRIM MD5 OCTET_LENGTH POSITION REGEXP_COUNT REGEXP_INSTR REGEXP_REPLACE REGEXP_SUBSTR \
    REPEAT REPLACE REPLICATE REVERSE RIGHT RPAD RTRIM SPLIT_PART STRPOS SUBSTRING TRANSLATE TRIM \
    UPPER";
const DATETIME_FUNCTIONS: &str = "\
    ADD_MONTHS CONVERT_TIMEZONE CURRENT_DATE DATE_PART DATE_TRUNC DATEADD DATEDIFF EXTRACT \
    GETDATE LAST_DAY MONTHS_BETWEEN NEXT_DAY SYSDATE TO_CHAR TO_DATE TO_TIMESTAMP TRUNC";

/// Everything `CommandGetSqlInfo` can answer.
fn build_sql_info() -> Result<SqlInfoData, FlightError> {
    use SqlInfo::*;
    let mut info = SqlInfoDataBuilder::new();
    // The server. Flight SQL has no separate vendor name: ADBC's vendor_name and JDBC's
    // getDatabaseProductName both read the server name.
    info.append(FlightSqlServerName, "redshift-flight");
    info.append(FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    info.append(FlightSqlServerArrowVersion, arrow::ARROW_VERSION);
    info.append(FlightSqlServerReadOnly, true);
    info.append(FlightSqlServerSql, true);
    info.append(FlightSqlServerSubstrait, false);
    info.append(
        FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    info.append(FlightSqlServerCancel, true);
    info.append(FlightSqlServerBulkIngestion, false);
    info.append(FlightSqlServerIngestTransactionsSupported, false);
    // Read-only: no DDL, no transactions, forward-only read-only result sets.
    info.append(SqlDdlCatalog, false);
    info.append(SqlDdlSchema, false);
    info.append(SqlDdlTable, false);
    info.append(SqlTransactionsSupported, false);
    let none = SqlTransactionIsolationLevel::SqlTransactionNone as i32;
    info.append(SqlDefaultTransactionIsolation, none);
    info.append(SqlSupportedTransactionsIsolationLevels, 0);
    info.append(SqlDataDefinitionCausesTransactionCommit, false);
    info.append(SqlDataDefinitionsInTransactionsIgnored, false);
    let forward_only = bits(&[SqlSupportedResultSetType::SqlResultSetTypeForwardOnly as i32]);
    info.append(SqlSupportedResultSetTypes, forward_only);
    let read_only =
        bits(&[SqlSupportedResultSetConcurrency::SqlResultSetConcurrencyReadOnly as i32]);
    info.append(SqlSupportedConcurrenciesForResultSetForwardOnly, read_only);
    for unsupported in [
        SqlBatchUpdatesSupported,
        SqlSavepointsSupported,
        SqlNamedParametersSupported,
        SqlLocatorsUpdateCopy,
        SqlStoredFunctionsUsingCallSyntaxSupported,
        SqlSelectForUpdateSupported,
        SqlStoredProceduresSupported,
    ] {
        info.append(unsupported, false);
    }
    info.append(SqlSupportedPositionedCommands, 0);
    // Names: Redshift folds unquoted identifiers, and by default (enable_case_sensitive_identifier
    // off) quoted ones too, to lower case.
    let lower = SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32;
    info.append(SqlIdentifierCase, lower);
    info.append(SqlQuotedIdentifierCase, lower);
    info.append(SqlIdentifierQuoteChar, "\"");
    info.append(SqlSearchStringEscape, "\\");
    info.append(SqlExtraNameCharacters, "$");
    info.append(SqlAllTablesAreSelectable, true);
    info.append(SqlNullOrdering, NullOrdering::SqlNullsSortedHigh as i32);
    info.append(SqlSchemaTerm, "schema");
    info.append(SqlCatalogTerm, "database");
    info.append(SqlProcedureTerm, "procedure");
    info.append(SqlCatalogAtStart, true);
    let schema_actions = bits(&[
        SqlSupportedElementActions::SqlElementInProcedureCalls as i32,
        SqlSupportedElementActions::SqlElementInPrivilegeDefinitions as i32,
    ]);
    info.append(SqlSchemasSupportedActions, schema_actions);
    info.append(SqlCatalogsSupportedActions, 0);
    for length in [
        SqlMaxColumnNameLength,
        SqlDbSchemaNameLength,
        SqlMaxTableNameLength,
        SqlMaxCatalogNameLength,
        SqlMaxCursorNameLength,
    ] {
        info.append(length, 127_i64);
    }
    info.append(SqlMaxUsernameLength, 128_i64);
    info.append(SqlMaxColumnsInTable, 1600_i64);
    info.append(SqlMaxCharLiteralLength, 65_535_i64);
    info.append(SqlMaxStatementLength, 16_777_216_i64);
    // The grammar of a PostgreSQL-like dialect.
    let words = |text: &str| text.split(' ').map(str::to_string).collect::<Vec<_>>();
    info.append(SqlKeywords, words(KEYWORDS));
    info.append(SqlNumericFunctions, words(NUMERIC_FUNCTIONS));
    info.append(SqlStringFunctions, words(STRING_FUNCTIONS));
    info.append(SqlSystemFunctions, words("COALESCE DECODE NULLIF NVL NVL2"));
    info.append(SqlDatetimeFunctions, words(DATETIME_FUNCTIONS));
    for supported in [
        SqlSupportsColumnAliasing,
        SqlNullPlusNullIsNull,
        SqlSupportsTableCorrelationNames,
        SqlSupportsExpressionsInOrderBy,
        SqlSupportsOrderByUnrelated,
        SqlSupportsLikeEscapeClause,
        SqlSupportsNonNullableColumns,
        SqlCorrelatedSubqueriesSupported,
    ] {
        info.append(supported, true);
    }
    info.append(SqlSupportsDifferentTableCorrelationNames, false);
    info.append(SqlSupportsIntegrityEnhancementFacility, false);
    let group_by = bits(&[
        GroupBy::SqlGroupByUnrelated as i32,
        GroupBy::SqlGroupByBeyondSelect as i32,
    ]);
    info.append(SqlSupportedGroupBy, group_by);
    let grammar = bits(&[
        SupportedSqlGrammar::SqlMinimumGrammar as i32,
        SupportedSqlGrammar::SqlCoreGrammar as i32,
    ]);
    info.append(SqlSupportedGrammar, grammar);
    // ANSI92 entry (0) and intermediate (1): arrow-flight does not re-export
    // SupportedAnsi92SqlGrammarLevel.
    let ansi92 = bits(&[0, 1]);
    info.append(SqlAnsi92SupportedLevel, ansi92);
    let full_joins = OuterJoins::SqlFullOuterJoins as i32;
    info.append(SqlOuterJoinsSupportLevel, full_joins);
    let subqueries = bits(&[
        Subqueries::SqlSubqueriesInComparisons as i32,
        Subqueries::SqlSubqueriesInExists as i32,
        Subqueries::SqlSubqueriesInIns as i32,
        Subqueries::SqlSubqueriesInQuantifieds as i32,
    ]);
    info.append(SqlSupportedSubqueries, subqueries);
    let unions = bits(&[Unions::SqlUnion as i32, Unions::SqlUnionAll as i32]);
    info.append(SqlSupportedUnions, unions);
    info.build()
}

/// Built once, like [`sql_info`].
pub(super) fn xdbc_info() -> Result<&'static XdbcTypeInfoData, ServiceError> {
    static INFO: OnceLock<Result<XdbcTypeInfoData, String>> = OnceLock::new();
    INFO.get_or_init(|| build_xdbc_info().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ServiceError::Arrow(ArrowError::ComputeError(format!("XdbcTypeInfo: {e}"))))
}

/// A type row with the defaults most types share; `local` is the name `format_type` prints.
fn xdbc_type(name: &str, local: &str, data_type: XdbcDataType, size: i32) -> XdbcTypeInfo {
    XdbcTypeInfo {
        type_name: name.to_string(),
        data_type,
        column_size: Some(size),
        nullable: Nullable::NullabilityNullable,
        searchable: Searchable::Basic,
        auto_increment: Some(false),
        local_type_name: Some(local.to_string()),
        sql_data_type: data_type,
        ..Default::default()
    }
}

/// A numeric type: `size` digits (or bits when `radix` is 2).
fn xdbc_number(
    name: &str,
    local: &str,
    data_type: XdbcDataType,
    size: i32,
    radix: i32,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        unsigned_attribute: Some(false),
        num_prec_radix: Some(radix),
        ..xdbc_type(name, local, data_type, size)
    }
}

/// A date/time type written as `prefix'...'`: its ODBC concise type, SQL_DATETIME and a subcode.
fn xdbc_datetime(
    name: &str,
    local: &str,
    data_type: XdbcDataType,
    size: i32,
    subcode: XdbcDatetimeSubcode,
    prefix: &str,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        literal_prefix: Some(format!("{prefix} '")),
        literal_suffix: Some("'".into()),
        minimum_scale: Some(0),
        // Digits of a second: none for a date, microseconds otherwise.
        maximum_scale: Some(if subcode == XdbcDatetimeSubcode::XdbcSubcodeYear {
            0
        } else {
            6
        }),
        sql_data_type: XdbcDataType::XdbcDatetime,
        datetime_subcode: Some(subcode),
        ..xdbc_type(name, local, data_type, size)
    }
}

/// A string type quoted with `'`, sized in bytes as Redshift sizes it.
fn xdbc_text(
    name: &str,
    local: &str,
    data_type: XdbcDataType,
    size: i32,
    params: bool,
) -> XdbcTypeInfo {
    XdbcTypeInfo {
        literal_prefix: Some("'".into()),
        literal_suffix: Some("'".into()),
        create_params: params.then(|| vec!["length".to_string()]),
        case_sensitive: true,
        searchable: Searchable::Full,
        ..xdbc_type(name, local, data_type, size)
    }
}

/// The Redshift types, each with the XDBC type of what clients receive: TIMETZ and SUPER are
/// served as text, VARBYTE and GEOMETRY as binary (see `crate::catalog::types`).
fn build_xdbc_info() -> Result<XdbcTypeInfoData, FlightError> {
    use XdbcDataType::*;
    use XdbcDatetimeSubcode as Sub;
    let decimal = |name: &str, data_type| XdbcTypeInfo {
        create_params: Some(vec!["precision".into(), "scale".into()]),
        minimum_scale: Some(0),
        maximum_scale: Some(37),
        ..xdbc_number(name, "numeric", data_type, 38, 10)
    };
    let types = [
        xdbc_number("smallint", "smallint", XdbcSmallint, 5, 10),
        xdbc_number("integer", "integer", XdbcInteger, 10, 10),
        xdbc_number("bigint", "bigint", XdbcBigint, 19, 10),
        decimal("decimal", XdbcDecimal),
        decimal("numeric", XdbcNumeric),
        xdbc_number("real", "real", XdbcReal, 24, 2),
        xdbc_number("double precision", "double precision", XdbcDouble, 53, 2),
        xdbc_type("boolean", "boolean", XdbcBit, 1),
        xdbc_text("char", "character", XdbcChar, 4096, true),
        xdbc_text("varchar", "character varying", XdbcVarchar, 65_535, true),
        // Subcode 1 is XDBC_SUBCODE_DATE too (an alias prost keeps only the first name of).
        xdbc_datetime("date", "date", XdbcDate, 10, Sub::XdbcSubcodeYear, "DATE"),
        xdbc_datetime(
            "time",
            "time without time zone",
            XdbcTime,
            15,
            Sub::XdbcSubcodeTime,
            "TIME",
        ),
        xdbc_datetime(
            "timestamp",
            "timestamp without time zone",
            XdbcTimestamp,
            26,
            Sub::XdbcSubcodeTimestamp,
            "TIMESTAMP",
        ),
        xdbc_datetime(
            "timestamptz",
            "timestamp with time zone",
            XdbcTimestamp,
            32,
            Sub::XdbcSubcodeTimestampWithTimezone,
            "TIMESTAMPTZ",
        ),
        xdbc_text("timetz", "time with time zone", XdbcVarchar, 21, false),
        XdbcTypeInfo {
            create_params: Some(vec!["length".into()]),
            ..xdbc_type("varbyte", "varbyte", XdbcVarbinary, 1_024_000)
        },
        XdbcTypeInfo {
            searchable: Searchable::None,
            ..xdbc_text("super", "super", XdbcLongvarchar, 16_777_216, false)
        },
        XdbcTypeInfo {
            searchable: Searchable::None,
            ..xdbc_type("geometry", "geometry", XdbcLongvarbinary, 1_048_447)
        },
    ];
    let mut builder = XdbcTypeInfoDataBuilder::new();
    for info in types {
        builder.append(info);
    }
    builder.build()
}
