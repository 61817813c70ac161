//! Redshift column types, parsed from `format_type(atttypid, atttypmod)`, and the one mapping from
//! each of them to the Arrow type clients receive.
//!
//! This is the type table of the architecture brief in code. Types that UNLOAD cannot write as
//! Parquet are cast to text in the SELECT (`crate::plan::select::column_expr`) and decoded back on
//! the server (see `crate::normalize`). A leaf: imports nothing from the crate.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// Field metadata key holding the Redshift type of a column as the catalog reports it.
pub const META_REDSHIFT_TYPE: &str = "redshift_flight.type";
/// Canonical Arrow extension type name key.
pub const META_EXTENSION_NAME: &str = "ARROW:extension:name";
/// Canonical Arrow extension metadata key.
pub const META_EXTENSION_METADATA: &str = "ARROW:extension:metadata";

/// Largest precision a Redshift DECIMAL (and Arrow Decimal128) can hold.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// A Redshift column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedshiftType {
    /// SMALLINT / INT2.
    SmallInt,
    /// INTEGER / INT4.
    Integer,
    /// BIGINT / INT8.
    BigInt,
    /// DECIMAL(p, s) / NUMERIC(p, s).
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: i8,
    },
    /// REAL / FLOAT4.
    Real,
    /// DOUBLE PRECISION / FLOAT8.
    Double,
    /// BOOLEAN.
    Boolean,
    /// CHAR(n): fixed length, blank padded.
    Char,
    /// VARCHAR(n) / TEXT.
    Varchar,
    /// DATE.
    Date,
    /// TIMESTAMP (without time zone).
    Timestamp,
    /// TIMESTAMPTZ: stored as UTC.
    TimestampTz,
    /// TIME (without time zone).
    Time,
    /// TIMETZ.
    TimeTz,
    /// VARBYTE / VARBINARY.
    Varbyte,
    /// SUPER (semi-structured, served as JSON text).
    Super,
    /// GEOMETRY (served as WKB).
    Geometry,
    /// HLLSKETCH (served as its JSON text form).
    HllSketch,
    /// A nested type of a Spectrum external table (`array<...>`, `struct<...>`, `map<...>`),
    /// which UNLOAD cannot write: selected as `JSON_SERIALIZE` text, served as JSON (the text is
    /// the external type, kept for the field metadata).
    Nested(String),
    /// Anything else (GEOGRAPHY, INTERVAL, a NUMERIC without precision...): served as text,
    /// so nothing is lost; the catalog's name is kept for the field metadata.
    Other(String),
}

impl RedshiftType {
    /// Parses the output of `format_type(atttypid, atttypmod)` (as Redshift and PostgreSQL print it).
    pub fn from_format_type(text: &str) -> Self {
        let lower = text.trim().to_ascii_lowercase();
        let (base, args) = match lower.find('(') {
            Some(open) if lower.ends_with(')') => (
                lower[..open].trim(),
                Some(&lower[open + 1..lower.len() - 1]),
            ),
            _ => (lower.as_str(), None),
        };
        match base {
            "smallint" | "int2" => Self::SmallInt,
            "integer" | "int" | "int4" => Self::Integer,
            "bigint" | "int8" => Self::BigInt,
            "numeric" | "decimal" => match args.and_then(parse_precision_scale) {
                Some((precision, scale)) => Self::Decimal { precision, scale },
                None => Self::Other(text.to_string()),
            },
            "real" | "float4" => Self::Real,
            "double precision" | "float8" | "float" => Self::Double,
            "boolean" | "bool" => Self::Boolean,
            "character" | "char" | "bpchar" | "nchar" => Self::Char,
            "character varying" | "varchar" | "nvarchar" | "text" | "name" => Self::Varchar,
            "date" => Self::Date,
            "timestamp without time zone" | "timestamp" => Self::Timestamp,
            "timestamp with time zone" | "timestamptz" => Self::TimestampTz,
            "time without time zone" | "time" => Self::Time,
            "time with time zone" | "timetz" => Self::TimeTz,
            "varbyte" | "varbinary" | "binary varying" | "bytea" => Self::Varbyte,
            "super" => Self::Super,
            "geometry" => Self::Geometry,
            "hllsketch" => Self::HllSketch,
            _ if is_nested(&lower) => Self::Nested(text.trim().to_string()),
            _ => Self::Other(text.to_string()),
        }
    }

    /// The Arrow type clients receive for this column.
    pub fn arrow_type(&self) -> DataType {
        match self {
            Self::SmallInt => DataType::Int16,
            Self::Integer => DataType::Int32,
            Self::BigInt => DataType::Int64,
            Self::Decimal { precision, scale } => DataType::Decimal128(*precision, *scale),
            Self::Real => DataType::Float32,
            Self::Double => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Char
            | Self::Varchar
            | Self::TimeTz
            | Self::Super
            | Self::HllSketch
            | Self::Nested(_)
            | Self::Other(_) => DataType::Utf8,
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Varbyte | Self::Geometry => DataType::Binary,
        }
    }

    /// Field metadata that tells clients more than the Arrow type can.
    fn extension_metadata(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Super | Self::Nested(_) => Some(("arrow.json", "")),
            Self::Geometry => Some(("geoarrow.wkb", "{}")),
            _ => None,
        }
    }

    /// The Arrow field for a column of this type.
    pub fn arrow_field(&self, name: &str, nullable: bool, catalog_type: &str) -> Field {
        let mut metadata =
            HashMap::from([(META_REDSHIFT_TYPE.to_string(), catalog_type.to_string())]);
        if let Some((ext, ext_meta)) = self.extension_metadata() {
            metadata.insert(META_EXTENSION_NAME.to_string(), ext.to_string());
            metadata.insert(META_EXTENSION_METADATA.to_string(), ext_meta.to_string());
        }
        Field::new(name, self.arrow_type(), nullable).with_metadata(metadata)
    }
}

/// What `format_type(oid, typmod)` prints for a result column that the extended protocol
/// described by its type OID, type modifier and type name: how a query's columns get the same
/// catalog types (and so the same Arrow types) as a table's. Redshift's own types have their own
/// OIDs; PostgreSQL (the emulator) describes SUPER as `jsonb` and VARBYTE as `bytea`.
pub fn catalog_type_of(oid: u32, type_modifier: i32, type_name: &str) -> String {
    let length = (type_modifier >= 4).then(|| type_modifier - 4);
    match oid {
        16 => "boolean".into(),
        20 => "bigint".into(),
        21 => "smallint".into(),
        23 => "integer".into(),
        700 => "real".into(),
        701 => "double precision".into(),
        1700 => match length {
            Some(packed) => format!("numeric({},{})", (packed >> 16) & 0xffff, packed & 0xffff),
            None => "numeric".into(),
        },
        1042 => match length {
            Some(n) => format!("character({n})"),
            None => "character".into(),
        },
        1043 => match length {
            Some(n) => format!("character varying({n})"),
            None => "character varying".into(),
        },
        25 | 19 => "character varying".into(),
        1082 => "date".into(),
        1083 => "time without time zone".into(),
        1266 => "time with time zone".into(),
        1114 => "timestamp without time zone".into(),
        1184 => "timestamp with time zone".into(),
        17 | 6551 => match length {
            Some(n) if oid == 6551 => format!("varbyte({n})"),
            _ => "varbyte".into(),
        },
        114 | 3802 | 4000 => "super".into(),
        3000 => "geometry".into(),
        _ => type_name.to_string(),
    }
}

/// Whether a lower-case type name is a nested external (Hive) type.
fn is_nested(lower: &str) -> bool {
    ["array<", "struct<", "map<"]
        .iter()
        .any(|prefix| lower.starts_with(prefix))
        && lower.ends_with('>')
}

/// The catalog type (as `format_type` would print it) of a Spectrum external column, from its
/// `svv_external_columns.external_type` (Hive's names: `string`, `int`, `tinyint`, `double`,
/// `float`, `decimal(p,s)`, `varchar(n)`, `char(n)`, `timestamp`, `array<...>`,
/// `struct<...>`, `map<...>`...). Types are spelled as Redshift's own so that one parser
/// ([`RedshiftType::from_format_type`]) reads both, and Hive's `float`, which is single
/// precision, becomes `real` (Redshift's `float` is double precision). A nested type keeps its
/// text; a type this table does not know keeps its text too (served as text).
pub fn external_catalog_type(external_type: &str) -> String {
    let text = external_type.trim();
    let lower = text.to_ascii_lowercase();
    let (base, args) = match lower.find('(') {
        Some(open) if lower.ends_with(')') && !is_nested(&lower) => (
            lower[..open].trim(),
            Some(&lower[open + 1..lower.len() - 1]),
        ),
        _ => (lower.as_str(), None),
    };
    match (base, args) {
        ("tinyint" | "smallint", None) => "smallint".into(),
        ("int" | "integer", None) => "integer".into(),
        ("bigint", None) => "bigint".into(),
        ("float" | "real", None) => "real".into(),
        ("double" | "double precision", None) => "double precision".into(),
        ("boolean", None) => "boolean".into(),
        ("string", None) | ("varchar", None) => "character varying".into(),
        ("varchar", Some(n)) => format!("character varying({})", n.trim()),
        ("char", Some(n)) => format!("character({})", n.trim()),
        ("decimal" | "numeric", Some(args)) => {
            let args: Vec<&str> = args.split(',').map(str::trim).collect();
            format!("numeric({})", args.join(","))
        }
        // Hive's DECIMAL without arguments is DECIMAL(10,0).
        ("decimal" | "numeric", None) => "numeric(10,0)".into(),
        ("date", None) => "date".into(),
        ("timestamp", None) => "timestamp without time zone".into(),
        _ => text.to_string(),
    }
}

fn parse_precision_scale(args: &str) -> Option<(u8, i8)> {
    let mut parts = args.split(',').map(str::trim);
    let precision: u8 = parts.next()?.parse().ok()?;
    let scale: i8 = match parts.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some()
        || precision == 0
        || precision > MAX_DECIMAL_PRECISION
        || scale < 0
        || scale as u8 > precision
    {
        return None;
    }
    Some((precision, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_result_columns_get_catalog_types() {
        assert_eq!(
            catalog_type_of(1700, (10 << 16 | 2) + 4, "numeric"),
            "numeric(10,2)"
        );
        assert_eq!(catalog_type_of(1700, -1, "numeric"), "numeric");
        assert_eq!(
            catalog_type_of(1043, 24, "varchar"),
            "character varying(20)"
        );
        assert_eq!(
            catalog_type_of(1184, -1, "timestamptz"),
            "timestamp with time zone"
        );
        assert_eq!(catalog_type_of(3802, -1, "jsonb"), "super");
        assert_eq!(catalog_type_of(6551, 68, "varbyte"), "varbyte(64)");
        assert_eq!(catalog_type_of(1186, -1, "interval"), "interval");
        assert_eq!(
            RedshiftType::from_format_type(&catalog_type_of(1700, (38 << 16 | 4) + 4, "numeric")),
            RedshiftType::Decimal {
                precision: 38,
                scale: 4
            }
        );
    }

    #[test]
    fn parses_format_type_output() {
        use RedshiftType::*;
        let cases = [
            ("smallint", SmallInt),
            ("integer", Integer),
            ("bigint", BigInt),
            (
                "numeric(38,10)",
                Decimal {
                    precision: 38,
                    scale: 10,
                },
            ),
            (
                "numeric(18,0)",
                Decimal {
                    precision: 18,
                    scale: 0,
                },
            ),
            ("real", Real),
            ("double precision", Double),
            ("boolean", Boolean),
            ("character(10)", Char),
            ("character varying(256)", Varchar),
            ("character varying", Varchar),
            ("date", Date),
            ("timestamp without time zone", Timestamp),
            ("timestamp with time zone", TimestampTz),
            ("time without time zone", Time),
            ("time with time zone", TimeTz),
            ("varbyte(64000)", Varbyte),
            ("super", Super),
            ("geometry", Geometry),
            ("hllsketch", HllSketch),
        ];
        for (text, expected) in cases {
            assert_eq!(RedshiftType::from_format_type(text), expected, "{text}");
        }
        assert_eq!(
            RedshiftType::from_format_type("numeric"),
            Other("numeric".into())
        );
        assert_eq!(
            RedshiftType::from_format_type("numeric(40,2)"),
            Other("numeric(40,2)".into())
        );
        assert_eq!(
            RedshiftType::from_format_type("interval"),
            Other("interval".into())
        );
    }

    #[test]
    fn external_types_map_to_the_type_table() {
        use RedshiftType::*;
        let cases = [
            ("string", "character varying", Varchar),
            ("varchar(20)", "character varying(20)", Varchar),
            ("char(3)", "character(3)", Char),
            ("int", "integer", Integer),
            ("tinyint", "smallint", SmallInt),
            ("bigint", "bigint", BigInt),
            ("float", "real", Real),
            ("double", "double precision", Double),
            ("boolean", "boolean", Boolean),
            ("date", "date", Date),
            ("timestamp", "timestamp without time zone", Timestamp),
            (
                "decimal(12, 3)",
                "numeric(12,3)",
                Decimal {
                    precision: 12,
                    scale: 3,
                },
            ),
            (
                "decimal",
                "numeric(10,0)",
                Decimal {
                    precision: 10,
                    scale: 0,
                },
            ),
            ("array<int>", "array<int>", Nested("array<int>".into())),
            (
                "struct<a:int,b:decimal(5,2)>",
                "struct<a:int,b:decimal(5,2)>",
                Nested("struct<a:int,b:decimal(5,2)>".into()),
            ),
            (
                "map<string,array<int>>",
                "map<string,array<int>>",
                Nested("map<string,array<int>>".into()),
            ),
            ("binary", "binary", Other("binary".into())),
        ];
        for (external, catalog, expected) in cases {
            assert_eq!(external_catalog_type(external), catalog, "{external}");
            assert_eq!(
                RedshiftType::from_format_type(catalog),
                expected,
                "{external}"
            );
        }
        let field = Nested("array<int>".into()).arrow_field("tags", true, "array<int>");
        assert_eq!(field.data_type(), &DataType::Utf8);
        assert_eq!(
            field
                .metadata()
                .get(META_EXTENSION_NAME)
                .map(String::as_str),
            Some("arrow.json")
        );
    }

    #[test]
    fn arrow_types_follow_the_type_table() {
        assert_eq!(
            RedshiftType::TimestampTz.arrow_type(),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert_eq!(
            RedshiftType::Time.arrow_type(),
            DataType::Time64(TimeUnit::Microsecond)
        );
        assert_eq!(RedshiftType::Geometry.arrow_type(), DataType::Binary);
        assert_eq!(RedshiftType::Super.arrow_type(), DataType::Utf8);
    }
}
