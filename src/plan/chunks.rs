//! VARBYTE and GEOMETRY values larger than Redshift's VARCHAR limit.
//!
//! UNLOAD to Parquet refuses VARBYTE and GEOMETRY columns (Redshift documents them as text/CSV
//! only), so they travel as hex text; but `TO_HEX` and `ST_AsHexEWKB` return VARCHAR, which fails
//! above 65,535 bytes, while a VARBYTE holds up to 16 MB and a GEOMETRY up to 1 MB. So the SELECT
//! splits each such value into hex chunks of at most [`CHUNK_BYTES`] bytes (65,534 hex digits), one
//! column per chunk: `TO_HEX(SUBSTRING(v, 1, 32767)) AS "v", TO_HEX(SUBSTRING(v, 32768, 32767)) AS
//! "rsf_chunk_3_1", ...`. The number of chunks follows from the column's declared maximum
//! (VARBYTE(n); GEOMETRY's fixed maximum), so no value can be longer than its chunks. A chunk past
//! the end of a value is empty; a NULL value has NULL chunks. The server concatenates the chunks
//! of a row back into one value while streaming (see `crate::normalize`), recognising continuation
//! columns by their alias ([`continuation_alias`]). The SELECT list itself is built in
//! `plan::select`.

use crate::catalog::RedshiftType;

/// Bytes of a value per hex chunk: its hex form (twice as long) stays within VARCHAR(65535).
pub const CHUNK_BYTES: u64 = 32_767;
/// Redshift's default VARBYTE length (`VARBYTE` without `(n)`).
pub const VARBYTE_DEFAULT_BYTES: u64 = 64_000;
/// Redshift's largest VARBYTE, assumed when the catalog does not say (a PostgreSQL `bytea`).
pub const VARBYTE_MAX_BYTES: u64 = 16_777_216;
/// Redshift's largest GEOMETRY value (EWKB bytes).
pub const GEOMETRY_MAX_BYTES: u64 = 1_048_447;

/// The longest value a column of this catalog type can hold, for the types sent in chunks.
fn max_bytes(rtype: &RedshiftType, catalog_type: &str) -> Option<u64> {
    match rtype {
        RedshiftType::Geometry => Some(GEOMETRY_MAX_BYTES),
        RedshiftType::Varbyte => {
            let lower = catalog_type.trim().to_ascii_lowercase();
            let declared = lower
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .and_then(|n| n.trim().parse::<u64>().ok());
            Some(match declared {
                Some(n) => n.clamp(1, VARBYTE_MAX_BYTES),
                // Redshift always prints the length; a bare name is the emulator's `bytea` domain
                // (no length), which can hold anything.
                None if lower.starts_with("varbyte")
                    || lower.starts_with("varbinary")
                    || lower.starts_with("binary varying")
                    || lower.starts_with("bytea") =>
                {
                    VARBYTE_MAX_BYTES
                }
                None => VARBYTE_DEFAULT_BYTES,
            })
        }
        _ => None,
    }
}

/// How many hex chunks a column of this type is sent in (1 for every other type).
pub fn chunk_count(rtype: &RedshiftType, catalog_type: &str) -> usize {
    max_bytes(rtype, catalog_type).map_or(1, |max| max.div_ceil(CHUNK_BYTES).max(1) as usize)
}

/// The alias of chunk `k` (>= 1) of the column at `position` of the SELECT list (chunk 0 keeps
/// the column's own name).
pub fn continuation_alias(position: usize, k: usize) -> String {
    format!("rsf_chunk_{position}_{k}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_counts_follow_the_declared_maximum() {
        let vb = RedshiftType::Varbyte;
        assert_eq!(chunk_count(&vb, "varbyte(64000)"), 2);
        assert_eq!(chunk_count(&vb, "varbyte(32767)"), 1);
        assert_eq!(chunk_count(&vb, "varbyte(32768)"), 2);
        assert_eq!(chunk_count(&vb, "binary varying(1048576)"), 33);
        assert_eq!(chunk_count(&vb, "varbyte"), 513);
        assert_eq!(chunk_count(&RedshiftType::Geometry, "geometry"), 32);
        assert_eq!(chunk_count(&RedshiftType::Integer, "integer"), 1);
        // every byte of the largest value lands in a chunk
        assert!(chunk_count(&vb, "varbyte") as u64 * CHUNK_BYTES >= VARBYTE_MAX_BYTES);
        const { assert!(32 * CHUNK_BYTES >= GEOMETRY_MAX_BYTES) };
    }
}
