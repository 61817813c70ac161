//! Normalisation: turns what UNLOAD actually wrote into the schema the client was promised, one
//! record batch at a time (correctness rule 4).
//!
//! Columns are matched by position (the SELECT lists them in the promised order). Same types pass
//! through untouched; compatible ones are cast (e.g. an INT96 or nanosecond timestamp to
//! microseconds, dictionary strings to plain); TIMESTAMPTZ is re-labelled UTC; the text forms of
//! TIME, VARBYTE and GEOMETRY are decoded back to Time64, Binary and WKB.
//!
//! Some conversions cannot wait until a batch has been read: parquet reads an INT96 timestamp as
//! nanoseconds by default, which wraps around outside 1677-09-21 .. 2262-04-11 (Redshift allows
//! years 1 to 294276), so [`reader_schema`] is the hint given to the Parquet reader, making it
//! read those columns straight into the promised unit.
//!
//! Imports: `crate::catalog` (the type table) and `crate::plan::chunks` (how long values were
//! split); nothing that does I/O.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, RecordBatch, StringArray, Time64MicrosecondBuilder,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType};
use arrow::util::display::FormatOptions;
use parquet::basic::Type as PhysicalType;
use parquet::schema::types::SchemaDescriptor;

use crate::catalog::RedshiftType;
use crate::plan::chunks::continuation_alias;

/// A staged value that cannot be turned into the promised type.
#[derive(Debug, thiserror::Error)]
#[error("column {column:?}: {message}")]
pub struct NormalizeError {
    /// The column.
    pub column: String,
    /// What was wrong.
    pub message: String,
}

/// Converts one batch read from a staged file to the promised `schema`; `types[i]` is the Redshift
/// type of column `i`.
pub fn normalize_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
    types: &[RedshiftType],
) -> Result<RecordBatch, NormalizeError> {
    if types.len() != schema.fields().len() {
        return Err(NormalizeError {
            column: String::new(),
            message: format!(
                "{} column types for a promised schema of {} columns",
                types.len(),
                schema.fields().len()
            ),
        });
    }
    let groups = staged_groups(&batch.schema(), types)?;
    let columns = schema
        .fields()
        .iter()
        .zip(types)
        .zip(groups)
        .map(|((field, rtype), group)| {
            let staged = &batch.columns()[group];
            let column = match rtype {
                RedshiftType::Geometry
                    if field
                        .metadata()
                        .get(crate::catalog::META_GEOMETRY_ENCODING)
                        .is_some_and(|e| e == "ewkb") =>
                {
                    normalize_chunked(staged, &RedshiftType::Varbyte)
                }
                RedshiftType::Varbyte | RedshiftType::Geometry => normalize_chunked(staged, rtype),
                _ => normalize_column(&staged[0], field.data_type(), rtype),
            };
            column.map_err(|message| NormalizeError {
                column: field.name().clone(),
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| NormalizeError {
        column: String::new(),
        message: e.to_string(),
    })
}

/// Which staged columns make up each promised column (whose Redshift types are `types`): one
/// each, except that a VARBYTE or GEOMETRY column is followed by its further hex chunks, named
/// [`continuation_alias`] (see `crate::plan::chunks`).
pub fn staged_groups(
    staged: &Schema,
    types: &[RedshiftType],
) -> Result<Vec<Range<usize>>, NormalizeError> {
    let fields = staged.fields();
    let mut groups = Vec::with_capacity(types.len());
    let mut next = 0;
    for (i, rtype) in types.iter().enumerate() {
        let start = next;
        if start >= fields.len() {
            break;
        }
        next += 1;
        if matches!(rtype, RedshiftType::Varbyte | RedshiftType::Geometry) {
            let mut k = 1;
            while next < fields.len() && fields[next].name() == &continuation_alias(i, k) {
                next += 1;
                k += 1;
            }
        }
        groups.push(start..next);
    }
    if groups.len() != types.len() || next != fields.len() {
        return Err(NormalizeError {
            column: String::new(),
            message: format!(
                "staged file has {} columns, which do not make up the {} promised columns",
                fields.len(),
                types.len()
            ),
        });
    }
    Ok(groups)
}

/// Joins the hex chunks of a VARBYTE or GEOMETRY value (a NULL first chunk is a NULL value) and
/// decodes them.
fn normalize_chunked(chunks: &[ArrayRef], rtype: &RedshiftType) -> Result<ArrayRef, String> {
    let texts = chunks.iter().map(as_text).collect::<Result<Vec<_>, _>>()?;
    let rows = texts.first().map_or(0, StringArray::len);
    let mut builder = BinaryBuilder::with_capacity(rows, 0);
    let mut hex_text = String::new();
    for row in 0..rows {
        if texts[0].is_null(row) {
            builder.append_null();
            continue;
        }
        hex_text.clear();
        for text in &texts {
            if !text.is_null(row) {
                hex_text.push_str(text.value(row));
            }
        }
        let bytes = hex::decode(&hex_text).map_err(|e| {
            format!(
                "cannot decode a hex value of {} characters: {e}",
                hex_text.len()
            )
        })?;
        match rtype {
            RedshiftType::Geometry => builder.append_value(ewkb_to_wkb(&bytes)?),
            _ => builder.append_value(bytes),
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// The Arrow schema to ask the Parquet reader for (`ArrowReaderOptions::with_schema`): the file's
/// own schema `file` (whose Parquet schema is `parquet`), except that
/// * an INT96 column promised as a timestamp is read in the promised unit and zone (the default,
///   nanoseconds, overflows for years before 1677 or after 2262);
/// * with `dictionary`, a string column promised as a dictionary is read as one (the reader then
///   keeps the file's dictionary pages instead of expanding them).
///
/// Columns are matched like [`normalize_batch`] does ([`staged_groups`]). Other columns keep the
/// file's type: normalisation converts them batch by batch.
pub fn reader_schema(
    file: &SchemaRef,
    parquet: &SchemaDescriptor,
    promised: &SchemaRef,
    types: &[RedshiftType],
    dictionary: bool,
) -> SchemaRef {
    // Staged files are flat: one leaf per top-level field.
    let flat = parquet.num_columns() == file.fields().len();
    // The promised field each staged column starts (continuation chunks start none).
    let mut wanted = vec![None; file.fields().len()];
    if let Ok(groups) = staged_groups(file, types) {
        for (group, want) in groups.iter().zip(promised.fields()) {
            wanted[group.start] = Some(want);
        }
    }
    let fields: Vec<_> = file
        .fields()
        .iter()
        .zip(wanted)
        .enumerate()
        .map(|(i, (field, want))| {
            let Some(want) = want else {
                return Arc::clone(field);
            };
            let int96 = flat && parquet.column(i).physical_type() == PhysicalType::INT96;
            match (field.data_type(), want.data_type()) {
                (
                    DataType::Timestamp(TimeUnit::Nanosecond, None),
                    DataType::Timestamp(unit, tz),
                ) if int96 && *unit != TimeUnit::Nanosecond => Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(DataType::Timestamp(*unit, tz.clone())),
                ),
                (DataType::Utf8, DataType::Dictionary(..)) if dictionary => Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_data_type(want.data_type().clone()),
                ),
                _ => Arc::clone(field),
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, file.metadata().clone()))
}

fn cast_strict(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    let options = CastOptions {
        safe: false,
        format_options: FormatOptions::default(),
    };
    cast_with_options(array, to, &options)
        .map_err(|e| format!("cannot convert {} to {to}: {e}", array.data_type()))
}

fn as_text(array: &ArrayRef) -> Result<StringArray, String> {
    Ok(cast_strict(array, &DataType::Utf8)?
        .as_string::<i32>()
        .clone())
}

fn normalize_column(
    array: &ArrayRef,
    target: &DataType,
    rtype: &RedshiftType,
) -> Result<ArrayRef, String> {
    match rtype {
        RedshiftType::Time => decode_text(
            array,
            |text| parse_time_micros(text).map(Some),
            |values| {
                let mut builder = Time64MicrosecondBuilder::with_capacity(values.len());
                for v in values {
                    builder.append_option(v);
                }
                Arc::new(builder.finish()) as ArrayRef
            },
        ),
        RedshiftType::Varbyte => {
            decode_binary(array, |text| hex::decode(text).map_err(|e| e.to_string()))
        }
        RedshiftType::Geometry => decode_binary(array, |text| {
            let ewkb = hex::decode(text).map_err(|e| e.to_string())?;
            ewkb_to_wkb(&ewkb)
        }),
        RedshiftType::TimestampTz => {
            let micros = match array.data_type() {
                DataType::Timestamp(TimeUnit::Microsecond, None) => Arc::clone(array),
                _ => cast_strict(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?,
            };
            Ok(Arc::new(
                micros
                    .as_primitive::<TimestampMicrosecondType>()
                    .clone()
                    .with_timezone("UTC"),
            ))
        }
        _ if array.data_type() == target => Ok(Arc::clone(array)),
        _ => cast_strict(array, target),
    }
}

fn decode_text<T>(
    array: &ArrayRef,
    parse: impl Fn(&str) -> Result<Option<T>, String>,
    build: impl FnOnce(Vec<Option<T>>) -> ArrayRef,
) -> Result<ArrayRef, String> {
    let text = as_text(array)?;
    let values = text
        .iter()
        .map(|v| match v {
            None => Ok(None),
            Some(s) => parse(s).map_err(|e| format!("cannot decode {s:?}: {e}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(build(values))
}

fn decode_binary(
    array: &ArrayRef,
    decode: impl Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<ArrayRef, String> {
    let text = as_text(array)?;
    let mut builder = BinaryBuilder::with_capacity(text.len(), text.value_data().len() / 2);
    for value in text.iter() {
        match value {
            None => builder.append_null(),
            Some(s) => {
                builder.append_value(decode(s).map_err(|e| format!("cannot decode {s:?}: {e}"))?)
            }
        }
    }
    Ok(Arc::new(builder.finish()))
}

/// Parses Redshift's text form of TIME, `HH:MM:SS[.ffffff]`, into microseconds after midnight.
pub fn parse_time_micros(text: &str) -> Result<i64, String> {
    let bad = || format!("not a time of day (HH:MM:SS[.ffffff]): {text:?}");
    let (hms, fraction) = match text.split_once('.') {
        Some((hms, f)) => (hms, f),
        None => (text, ""),
    };
    let mut parts = hms.split(':');
    let mut next = |max: i64| -> Result<i64, String> {
        let part = parts.next().ok_or_else(bad)?;
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = part.parse().map_err(|_| bad())?;
        if n > max { Err(bad()) } else { Ok(n) }
    };
    let (h, m, s) = (next(24)?, next(59)?, next(59)?);
    if parts.next().is_some() || fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let micros: i64 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<6}").parse().map_err(|_| bad())?
    };
    let total = ((h * 60 + m) * 60 + s) * 1_000_000 + micros;
    if total >= 86_400_000_000 {
        // Redshift allows 24:00:00; Arrow's Time64 ends at 23:59:59.999999. Refuse rather than
        // send an invalid value or silently move it.
        return Err(format!(
            "{text:?} is outside Arrow's time of day range (00:00:00 to 23:59:59.999999); \
             leave the column out or cast it in a view"
        ));
    }
    Ok(total)
}

const EWKB_Z: u32 = 0x8000_0000;
const EWKB_M: u32 = 0x4000_0000;
const EWKB_SRID: u32 = 0x2000_0000;
const MAX_GEOMETRY_DEPTH: usize = 32;

struct WkbCursor<'a> {
    input: &'a [u8],
    pos: usize,
}

impl WkbCursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.input.len())
            .ok_or("geometry is truncated")?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u32(&mut self, little_endian: bool) -> Result<u32, String> {
        let bytes: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| "geometry is truncated")?;
        Ok(if little_endian {
            u32::from_le_bytes(bytes)
        } else {
            u32::from_be_bytes(bytes)
        })
    }
}

/// Converts PostGIS/Redshift EWKB (SRID and Z/M flags in the type word) to ISO WKB (no SRID,
/// dimensions as +1000/+2000/+3000), recursively for multi-geometries and collections.
pub fn ewkb_to_wkb(ewkb: &[u8]) -> Result<Vec<u8>, String> {
    let mut cursor = WkbCursor {
        input: ewkb,
        pos: 0,
    };
    let mut out = Vec::with_capacity(ewkb.len());
    convert_geometry(&mut cursor, &mut out, 0)?;
    if cursor.pos != ewkb.len() {
        return Err(format!(
            "{} trailing bytes after the geometry",
            ewkb.len() - cursor.pos
        ));
    }
    Ok(out)
}

fn convert_geometry(
    cursor: &mut WkbCursor<'_>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_GEOMETRY_DEPTH {
        return Err("geometry nests too deeply".into());
    }
    let order = cursor.take(1)?[0];
    let little_endian = match order {
        0 => false,
        1 => true,
        other => return Err(format!("invalid byte order {other}")),
    };
    let word = cursor.u32(little_endian)?;
    let (mut z, mut m) = (word & EWKB_Z != 0, word & EWKB_M != 0);
    let mut base = word & 0x0FFF_FFFF;
    if base >= 1000 {
        let iso_dims = base / 1000;
        base %= 1000;
        z |= iso_dims == 1 || iso_dims == 3;
        m |= iso_dims == 2 || iso_dims == 3;
    }
    if word & EWKB_SRID != 0 {
        cursor.take(4)?;
    }
    let iso = base + if z { 1000 } else { 0 } + if m { 2000 } else { 0 };
    let put_u32 = |out: &mut Vec<u8>, v: u32| {
        out.extend_from_slice(&if little_endian {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        })
    };
    out.push(order);
    put_u32(out, iso);
    let point_bytes = 8 * (2 + usize::from(z) + usize::from(m));
    let copy_points =
        |cursor: &mut WkbCursor<'_>, out: &mut Vec<u8>, n: usize| -> Result<(), String> {
            let len = n.checked_mul(point_bytes).ok_or("geometry is too large")?;
            out.extend_from_slice(cursor.take(len)?);
            Ok(())
        };
    match base {
        1 => copy_points(cursor, out, 1),
        2 => {
            let n = cursor.u32(little_endian)?;
            put_u32(out, n);
            copy_points(cursor, out, n as usize)
        }
        3 => {
            let rings = cursor.u32(little_endian)?;
            put_u32(out, rings);
            for _ in 0..rings {
                let n = cursor.u32(little_endian)?;
                put_u32(out, n);
                copy_points(cursor, out, n as usize)?;
            }
            Ok(())
        }
        4..=7 => {
            let parts = cursor.u32(little_endian)?;
            put_u32(out, parts);
            for _ in 0..parts {
                convert_geometry(cursor, out, depth + 1)?;
            }
            Ok(())
        }
        other => Err(format!("unsupported geometry type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, TimestampMicrosecondArray, TimestampNanosecondArray};
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn times_parse_exactly() {
        assert_eq!(parse_time_micros("00:00:00").unwrap(), 0);
        assert_eq!(
            parse_time_micros("23:59:59.999999").unwrap(),
            86_399_999_999
        );
        assert_eq!(parse_time_micros("12:34:56.5").unwrap(), 45_296_500_000);
        for bad in [
            "24:00:00",
            "",
            "1:2",
            "12:60:00",
            "12:00:00.1234567",
            "aa:bb:cc",
            "24:00:01",
            "12:00:00+01",
        ] {
            assert!(parse_time_micros(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ewkb_point_with_srid_becomes_iso_wkb() {
        // SRID=4326;POINT(1 2) as PostGIS writes it (little endian).
        let ewkb = hex::decode("0101000020E6100000000000000000F03F0000000000000040").unwrap();
        let wkb = ewkb_to_wkb(&ewkb).unwrap();
        assert_eq!(
            hex::encode_upper(&wkb),
            "0101000000000000000000F03F0000000000000040"
        );
        // POINT Z without SRID.
        let ewkb =
            hex::decode("0101000080000000000000F03F00000000000000400000000000000840").unwrap();
        let wkb = ewkb_to_wkb(&ewkb).unwrap();
        assert_eq!(&wkb[1..5], &1001u32.to_le_bytes());
        // MULTIPOINT of two points with SRID.
        let mut multi = hex::decode("0104000020E610000002000000").unwrap();
        multi.extend(hex::decode("0101000000000000000000F03F0000000000000040").unwrap());
        multi.extend(hex::decode("0101000000000000000000F03F0000000000000040").unwrap());
        let wkb = ewkb_to_wkb(&multi).unwrap();
        assert_eq!(wkb.len(), multi.len() - 4);
        assert!(ewkb_to_wkb(&multi[..multi.len() - 1]).is_err());
        assert!(ewkb_to_wkb(&[1, 9, 0, 0, 0]).is_err());
    }

    #[test]
    fn normalises_to_the_promised_schema() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("small", DataType::Int16, true),
            Field::new("tz", RedshiftType::TimestampTz.arrow_type(), true),
            Field::new("t", DataType::Time64(TimeUnit::Microsecond), true),
            Field::new("v", DataType::Binary, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
        ]));
        let staged = RecordBatch::try_from_iter(vec![
            (
                "small",
                Arc::new(Int32Array::from(vec![Some(-32768), None])) as ArrayRef,
            ),
            (
                "tz",
                Arc::new(TimestampMicrosecondArray::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "t",
                Arc::new(StringArray::from(vec![Some("01:02:03.000004"), None])) as ArrayRef,
            ),
            (
                "v",
                Arc::new(StringArray::from(vec![Some("00ff"), None])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(vec![Some(5_000), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let types = [
            RedshiftType::SmallInt,
            RedshiftType::TimestampTz,
            RedshiftType::Time,
            RedshiftType::Varbyte,
            RedshiftType::Timestamp,
        ];
        let out = normalize_batch(&staged, &schema, &types).unwrap();
        assert_eq!(out.schema(), schema);
        let tz = out.column(1).as_primitive::<TimestampMicrosecondType>();
        assert_eq!(
            tz,
            &TimestampMicrosecondArray::from(vec![Some(1), None]).with_timezone("UTC")
        );
        let rest = out.project(&[0, 2, 3, 4]).unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&[rest])
            .unwrap()
            .to_string();
        assert_eq!(
            text,
            "+--------+-----------------+------+----------------------------+\n\
             | small  | t               | v    | ts                         |\n\
             +--------+-----------------+------+----------------------------+\n\
             | -32768 | 01:02:03.000004 | 00ff | 1970-01-01T00:00:00.000005 |\n\
             |        |                 |      |                            |\n\
             +--------+-----------------+------+----------------------------+"
        );
        let bad = RecordBatch::try_from_iter(vec![(
            "v",
            Arc::new(StringArray::from(vec!["zz"])) as ArrayRef,
        )])
        .unwrap();
        let schema1 = Arc::new(Schema::new(vec![Field::new("v", DataType::Binary, true)]));
        assert!(normalize_batch(&bad, &schema1, &[RedshiftType::Varbyte]).is_err());
        assert!(normalize_batch(&staged, &schema1, &[RedshiftType::Varbyte]).is_err());
    }
}
