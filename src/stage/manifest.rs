//! The manifest UNLOAD writes with `MANIFEST VERBOSE`: the list of data files with their sizes and
//! row counts. Files come from the manifest, never from listing the prefix (correctness rule 2).

use serde::Deserialize;

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not the JSON Redshift writes.
    #[error("manifest is not valid JSON of the expected shape: {0}")]
    Json(#[from] serde_json::Error),
    /// An entry without the VERBOSE metadata.
    #[error(
        "manifest entry {url} has no meta.content_length / meta.record_count (UNLOAD must use MANIFEST VERBOSE)"
    )]
    MissingMeta {
        /// The entry.
        url: String,
    },
    /// An entry outside the run's prefix: never read or delete it.
    #[error("manifest entry {url} is not under {expected}")]
    Foreign {
        /// The entry.
        url: String,
        /// The run's `s3://bucket/prefix/`.
        expected: String,
    },
}

#[derive(Debug, Deserialize)]
struct RawManifest {
    entries: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
struct RawEntry {
    url: String,
    #[serde(default)]
    meta: Option<RawMeta>,
}

#[derive(Debug, Deserialize)]
struct RawMeta {
    content_length: Option<u64>,
    record_count: Option<u64>,
}

/// One staged data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Object key inside the bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows.
    pub rows: u64,
}

/// Parses a VERBOSE manifest, checking every entry lies under `s3://{bucket}/{run_prefix}`.
pub fn parse(
    json: &[u8],
    bucket: &str,
    run_prefix: &str,
) -> Result<Vec<ManifestEntry>, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(json)?;
    let expected = format!("s3://{bucket}/{run_prefix}");
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    raw.entries
        .into_iter()
        .map(|entry| {
            let key = entry
                .url
                .strip_prefix(&format!("s3://{bucket}/"))
                .filter(|key| {
                    key.strip_prefix(run_prefix).is_some_and(|file| {
                        !file.is_empty() && !file.contains("//") && !file.starts_with('/')
                    }) && !key.contains("..")
                })
                .ok_or_else(|| ManifestError::Foreign {
                    url: entry.url.clone(),
                    expected: expected.clone(),
                })?
                .to_string();
            if !seen.insert(key.clone()) {
                return Err(ManifestError::Foreign {
                    url: entry.url,
                    expected: format!("{expected} (each file listed once)"),
                });
            }
            match entry.meta {
                Some(RawMeta {
                    content_length: Some(size),
                    record_count: Some(rows),
                }) => Ok(ManifestEntry { key, size, rows }),
                _ => Err(ManifestError::MissingMeta { url: entry.url }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERBOSE: &str = r#"{
      "entries": [
        {"url":"s3://b/p/run1/0000_part_00.parquet", "meta": { "content_length": 5956875, "record_count": 100 }},
        {"url":"s3://b/p/run1/0001_part_00.parquet", "meta": { "content_length": 5997091, "record_count": 200 }}
      ],
      "schema": {"elements": [{"name": "venueid", "type": {"base": "integer"}}]},
      "meta": {"content_length": 11953966, "record_count": 300},
      "author": {"name": "Amazon Redshift", "version": "1.0.0"}
    }"#;

    #[test]
    fn parses_verbose_manifest() {
        let entries = parse(VERBOSE.as_bytes(), "b", "p/run1/").unwrap();
        assert_eq!(
            entries,
            vec![
                ManifestEntry {
                    key: "p/run1/0000_part_00.parquet".into(),
                    size: 5956875,
                    rows: 100
                },
                ManifestEntry {
                    key: "p/run1/0001_part_00.parquet".into(),
                    size: 5997091,
                    rows: 200
                },
            ]
        );
    }

    #[test]
    fn rejects_foreign_and_plain_entries() {
        assert!(matches!(
            parse(VERBOSE.as_bytes(), "b", "p/run2/"),
            Err(ManifestError::Foreign { .. })
        ));
        assert!(matches!(
            parse(VERBOSE.as_bytes(), "other", "p/run1/"),
            Err(ManifestError::Foreign { .. })
        ));
        let plain = r#"{"entries":[{"url":"s3://b/p/run1/0000_part_00.parquet"}]}"#;
        assert!(matches!(
            parse(plain.as_bytes(), "b", "p/run1/"),
            Err(ManifestError::MissingMeta { .. })
        ));
        let escape = r#"{"entries":[{"url":"s3://b/p/run1/../x","meta":{"content_length":1,"record_count":1}}]}"#;
        assert!(parse(escape.as_bytes(), "b", "p/run1/").is_err());
        for odd in ["s3://b/p/run1/", "s3://b/p/run1//x"] {
            let json = format!(
                r#"{{"entries":[{{"url":"{odd}","meta":{{"content_length":1,"record_count":1}}}}]}}"#
            );
            assert!(parse(json.as_bytes(), "b", "p/run1/").is_err(), "{odd}");
        }
        let twice = r#"{"entries":[{"url":"s3://b/p/run1/a","meta":{"content_length":1,"record_count":1}},{"url":"s3://b/p/run1/a","meta":{"content_length":1,"record_count":1}}]}"#;
        assert!(parse(twice.as_bytes(), "b", "p/run1/").is_err());
        assert!(parse(b"{}", "b", "p/run1/").is_err());
    }
}
