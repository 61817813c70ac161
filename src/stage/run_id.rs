//! Run and reader ids, and where a run's objects live.
//!
//! A run lives under `<s3_prefix>/<run id>/`; the run id starts with its creation time
//! (`20261125T121700Z-<random>`, taken when an UNLOAD slot is free), so the sweeper can tell
//! expired runs from their names alone. UNLOAD writes the data files and the manifest under
//! `data/`; the run's own state lives beside it (see [`super::run_state`]). Imports nothing of
//! the crate but the stage's error.

use std::time::SystemTime;

use super::StageError;

/// Where UNLOAD writes a run's data files and manifest: `data/` inside the run prefix, so that
/// the run's own state (`lease`, `consumed/`, `readers/`) never makes Redshift find the UNLOAD's
/// destination "not empty", even when the lease is written while the UNLOAD waits in a queue.
pub fn data_prefix(run_prefix: &str) -> String {
    format!("{run_prefix}data/")
}

/// A reader id as a path component: 1 to 32 hex digits; empty (tickets without one) is `_`.
pub(super) fn reader_name(reader: &str) -> Result<String, StageError> {
    if reader.is_empty() {
        return Ok("_".into());
    }
    if reader.len() <= 32 && reader.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(reader.to_ascii_lowercase())
    } else {
        Err(StageError::RunId(format!("reader {reader:?}")))
    }
}

/// A fresh reader id (one per FlightInfo): 64 random bits in hex.
pub fn new_reader_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A new run id: creation time, then 64 random bits.
pub fn new_run_id(now: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = now.into();
    format!(
        "{}-{:016x}",
        time.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u64>()
    )
}

/// The creation time encoded in a run id, or `None` if it is not a run id.
pub fn run_created_at(run_id: &str) -> Option<SystemTime> {
    let (time, random) = run_id.split_once('-')?;
    if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let time = chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ").ok()?;
    Some(SystemTime::from(time.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn run_ids_carry_their_creation_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_073_020);
        let id = new_run_id(t);
        assert!(id.starts_with("20251125T121700Z-"), "{id}");
        assert_eq!(id.len(), "20251125T121700Z-".len() + 16);
        assert_ne!(new_run_id(t), new_run_id(t));
        assert_eq!(run_created_at(&id), Some(t));
        for bad in [
            "",
            "x",
            "20251125T121700Z-zz",
            "../20251125T121700Z-0000000000000000",
            "20251125T121700Z",
        ] {
            assert_eq!(run_created_at(bad), None, "{bad}");
        }
    }
}
