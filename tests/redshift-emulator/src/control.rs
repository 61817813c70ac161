//! `EMULATOR ...` control statements: change the fault knobs of a running emulator.
//!
//! ```text
//! EMULATOR SET unload_delay_ms = 500          -- or TO instead of =
//! EMULATOR SET fetch_delay_ms = 200           -- sleep after each FETCH an UNLOAD writes
//! EMULATOR SET fail_after_files = 2           -- NONE / OFF / -1 disables
//! EMULATOR SET drop_connection_on_unload = true
//! EMULATOR SET skip_manifest = true           -- data files, no manifest, success reported
//! EMULATOR SET delete_manifest = true         -- manifest written, then deleted, success reported
//! EMULATOR SET int96_timestamps = true        -- TIMESTAMP[TZ] columns written as Parquet INT96
//! EMULATOR SET iam_credential_seconds = 5     -- temporary credentials issued from now on live 5 s (NONE: as asked)
//! EMULATOR SET idle_session_seconds = 2       -- close sessions idle 2 s (NONE: never)
//! EMULATOR RESET [knob]                       -- back to the start-up values
//! ```
//!
//! The knobs are global to the emulator process: every session sees the change. The statement
//! completes with the command tag `EMULATOR`.

use crate::config::{FaultKnobs, FaultSettings};
use crate::error::StatementError;
use crate::sql::{TokenKind, tokenize};

/// A parsed control statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    /// `EMULATOR SET knob = value`
    Set(Knob),
    /// `EMULATOR RESET` (all knobs) or `EMULATOR RESET knob`
    Reset(Option<&'static str>),
}

/// A knob with its new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Knob {
    UnloadDelayMs(u64),
    FetchDelayMs(u64),
    FailAfterFiles(Option<u64>),
    DropConnectionOnUnload(bool),
    SkipManifest(bool),
    DeleteManifest(bool),
    Int96Timestamps(bool),
    IamCredentialSeconds(Option<u64>),
    IdleSessionSeconds(Option<u64>),
}

const KNOBS: [&str; 9] = [
    "unload_delay_ms",
    "fetch_delay_ms",
    "fail_after_files",
    "drop_connection_on_unload",
    "skip_manifest",
    "delete_manifest",
    "int96_timestamps",
    "iam_credential_seconds",
    "idle_session_seconds",
];

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Some(true),
        "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn syntax(msg: impl Into<String>) -> StatementError {
    StatementError::Syntax(msg.into())
}

fn knob_name(word: &str) -> Result<&'static str, StatementError> {
    KNOBS
        .iter()
        .copied()
        .find(|k| k.eq_ignore_ascii_case(word))
        .ok_or_else(|| {
            syntax(format!(
                "unknown emulator knob \"{word}\"; known knobs: {}",
                KNOBS.join(", ")
            ))
        })
}

/// Parses an `EMULATOR ...` statement.
pub(crate) fn parse_control(text: &str) -> Result<Control, StatementError> {
    let tokens = tokenize(text).map_err(|e| syntax(e.to_string()))?;
    let words: Vec<String> = tokens
        .iter()
        .filter(|t| t.kind != TokenKind::Semicolon)
        .map(|t| {
            let s = t.text(text);
            if t.kind == TokenKind::String {
                s.trim_matches('\'').to_owned()
            } else {
                s.to_owned()
            }
        })
        .collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let usage = "usage: EMULATOR SET <knob> = <value> | EMULATOR RESET [<knob>]";
    match w.as_slice() {
        [e, reset] if e.eq_ignore_ascii_case("emulator") && reset.eq_ignore_ascii_case("reset") => {
            Ok(Control::Reset(None))
        }
        [e, reset, knob]
            if e.eq_ignore_ascii_case("emulator") && reset.eq_ignore_ascii_case("reset") =>
        {
            Ok(Control::Reset(Some(knob_name(knob)?)))
        }
        [e, set, knob, eq, value @ ..]
            if e.eq_ignore_ascii_case("emulator")
                && set.eq_ignore_ascii_case("set")
                && (*eq == "=" || eq.eq_ignore_ascii_case("to"))
                && !value.is_empty() =>
        {
            let value = value.concat();
            let bad = || {
                syntax(format!(
                    "invalid value \"{value}\" for emulator knob {knob}"
                ))
            };
            let optional = |value: &str| match value.to_ascii_lowercase().as_str() {
                "none" | "off" | "-1" | "null" => Ok(None),
                v => v.parse().map(Some).map_err(|_| bad()),
            };
            let knob = match knob_name(knob)? {
                "unload_delay_ms" => Knob::UnloadDelayMs(value.parse().map_err(|_| bad())?),
                "fetch_delay_ms" => Knob::FetchDelayMs(value.parse().map_err(|_| bad())?),
                "fail_after_files" => Knob::FailAfterFiles(optional(&value)?),
                "iam_credential_seconds" => Knob::IamCredentialSeconds(optional(&value)?),
                "idle_session_seconds" => Knob::IdleSessionSeconds(optional(&value)?),
                "drop_connection_on_unload" => {
                    Knob::DropConnectionOnUnload(parse_bool(&value).ok_or_else(bad)?)
                }
                "skip_manifest" => Knob::SkipManifest(parse_bool(&value).ok_or_else(bad)?),
                "delete_manifest" => Knob::DeleteManifest(parse_bool(&value).ok_or_else(bad)?),
                _ => Knob::Int96Timestamps(parse_bool(&value).ok_or_else(bad)?),
            };
            Ok(Control::Set(knob))
        }
        _ => Err(syntax(usage)),
    }
}

/// Applies a control statement to the knobs.
pub(crate) fn apply(control: &Control, knobs: &FaultKnobs, initial: &FaultSettings) {
    match control {
        Control::Set(Knob::UnloadDelayMs(v)) => knobs.update(|s| s.unload_delay_ms = *v),
        Control::Set(Knob::FetchDelayMs(v)) => knobs.update(|s| s.fetch_delay_ms = *v),
        Control::Set(Knob::FailAfterFiles(v)) => knobs.update(|s| s.fail_after_files = *v),
        Control::Set(Knob::DropConnectionOnUnload(v)) => {
            knobs.update(|s| s.drop_connection_on_unload = *v)
        }
        Control::Set(Knob::SkipManifest(v)) => knobs.update(|s| s.skip_manifest = *v),
        Control::Set(Knob::DeleteManifest(v)) => knobs.update(|s| s.delete_manifest = *v),
        Control::Set(Knob::Int96Timestamps(v)) => knobs.update(|s| s.int96_timestamps = *v),
        Control::Set(Knob::IamCredentialSeconds(v)) => {
            knobs.update(|s| s.iam_credential_seconds = *v)
        }
        Control::Set(Knob::IdleSessionSeconds(v)) => knobs.update(|s| s.idle_session_seconds = *v),
        Control::Reset(None) => knobs.reset(),
        Control::Reset(Some(name)) => knobs.update(|s| match *name {
            "unload_delay_ms" => s.unload_delay_ms = initial.unload_delay_ms,
            "fetch_delay_ms" => s.fetch_delay_ms = initial.fetch_delay_ms,
            "fail_after_files" => s.fail_after_files = initial.fail_after_files,
            "drop_connection_on_unload" => {
                s.drop_connection_on_unload = initial.drop_connection_on_unload
            }
            "skip_manifest" => s.skip_manifest = initial.skip_manifest,
            "delete_manifest" => s.delete_manifest = initial.delete_manifest,
            "iam_credential_seconds" => s.iam_credential_seconds = initial.iam_credential_seconds,
            "idle_session_seconds" => s.idle_session_seconds = initial.idle_session_seconds,
            _ => s.int96_timestamps = initial.int96_timestamps,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statements() {
        assert_eq!(
            parse_control("EMULATOR SET unload_delay_ms = 500").unwrap(),
            Control::Set(Knob::UnloadDelayMs(500))
        );
        assert_eq!(
            parse_control("EMULATOR SET fetch_delay_ms = 250").unwrap(),
            Control::Set(Knob::FetchDelayMs(250))
        );
        assert_eq!(
            parse_control("emulator set FAIL_AFTER_FILES to 2;").unwrap(),
            Control::Set(Knob::FailAfterFiles(Some(2)))
        );
        assert_eq!(
            parse_control("emulator set fail_after_files = none").unwrap(),
            Control::Set(Knob::FailAfterFiles(None))
        );
        assert_eq!(
            parse_control("emulator set drop_connection_on_unload = 'true'").unwrap(),
            Control::Set(Knob::DropConnectionOnUnload(true))
        );
        assert_eq!(
            parse_control("EMULATOR SET skip_manifest = on").unwrap(),
            Control::Set(Knob::SkipManifest(true))
        );
        assert_eq!(
            parse_control("EMULATOR SET delete_manifest TO false").unwrap(),
            Control::Set(Knob::DeleteManifest(false))
        );
        assert_eq!(
            parse_control("EMULATOR SET int96_timestamps = true").unwrap(),
            Control::Set(Knob::Int96Timestamps(true))
        );
        assert_eq!(
            parse_control("EMULATOR SET iam_credential_seconds = 3").unwrap(),
            Control::Set(Knob::IamCredentialSeconds(Some(3)))
        );
        assert_eq!(
            parse_control("EMULATOR SET idle_session_seconds TO none").unwrap(),
            Control::Set(Knob::IdleSessionSeconds(None))
        );
        assert_eq!(
            parse_control("EMULATOR RESET").unwrap(),
            Control::Reset(None)
        );
        assert_eq!(
            parse_control("EMULATOR RESET unload_delay_ms").unwrap(),
            Control::Reset(Some("unload_delay_ms"))
        );
    }

    #[test]
    fn rejects_nonsense() {
        for bad in [
            "emulator",
            "emulator set",
            "emulator set nope = 1",
            "emulator set unload_delay_ms = soon",
            "emulator set drop_connection_on_unload = maybe",
            "emulator explode",
        ] {
            let err = parse_control(bad).expect_err(bad);
            assert!(matches!(err, StatementError::Syntax(_)), "{bad}");
        }
    }

    #[test]
    fn applies_and_resets() {
        let initial = FaultSettings {
            unload_delay_ms: 7,
            ..FaultSettings::default()
        };
        let knobs = FaultKnobs::new(initial.clone());
        apply(&Control::Set(Knob::UnloadDelayMs(1)), &knobs, &initial);
        apply(
            &Control::Set(Knob::FailAfterFiles(Some(3))),
            &knobs,
            &initial,
        );
        apply(&Control::Reset(Some("unload_delay_ms")), &knobs, &initial);
        assert_eq!(knobs.get().unload_delay_ms, 7);
        assert_eq!(knobs.get().fail_after_files, Some(3));
        apply(&Control::Reset(None), &knobs, &initial);
        assert_eq!(knobs.get(), initial);
    }
}
