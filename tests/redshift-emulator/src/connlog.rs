//! The connection log: one row in `public.stl_connection_log` (created by [`crate::compat`]) per
//! login attempt and per disconnection, as Redshift's STL_CONNECTION_LOG records them, so that a
//! test can see which logins used which credentials:
//!
//! | event | when | columns besides recordtime, remotehost, remoteport, dbname, username, application_name, sessionid |
//! |---|---|---|
//! | `authentication failure` | a login was refused | `authmethod` tried (`password`, `IAM`), `reason` (the FATAL message) |
//! | `authenticated` | a login succeeded (written before the client sees ReadyForQuery) | `authmethod`, `pid` (the session's `pg_backend_pid()`), `iamauthguid` (the request id of the API call that issued the temporary credentials), `db_groups` (their DbGroups, comma-separated) |
//! | `disconnecting session` | the session ended (client, idle timeout, shutdown) | `authmethod`, `pid`, `duration` (microseconds since authenticated) |
//!
//! Passwords are never written. Like the UNLOAD history, the rows are written on the emulator's
//! own backend connection (best effort: a failure is logged as a warning).
//!
//! May import: `crate::history`, `crate::users`.

use std::net::SocketAddr;

use crate::history::History;
use crate::users::AuthMethod;

/// One connection-log row.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionEvent<'a> {
    /// `authenticated`, `authentication failure`, `disconnecting session`.
    pub(crate) event: &'static str,
    /// The client's address.
    pub(crate) peer: Option<SocketAddr>,
    /// The database asked for.
    pub(crate) database: &'a str,
    /// The user name the client gave.
    pub(crate) user: &'a str,
    /// How it authenticated (or tried to).
    pub(crate) method: AuthMethod,
    /// The session's backend process id (none before a backend was connected).
    pub(crate) pid: Option<i32>,
    /// Microseconds since authentication (`disconnecting session`).
    pub(crate) duration_micros: Option<i64>,
    /// The issuing API request id of temporary credentials.
    pub(crate) iam_request_id: Option<&'a str>,
    /// The client's `application_name`.
    pub(crate) application_name: Option<&'a str>,
    /// The emulator's id of the session.
    pub(crate) session_id: &'a str,
    /// Why the login failed.
    pub(crate) reason: Option<&'a str>,
    /// DbGroups of the temporary credentials.
    pub(crate) groups: &'a [String],
}

/// Event names.
pub(crate) const AUTHENTICATED: &str = "authenticated";
/// A refused login.
pub(crate) const AUTHENTICATION_FAILURE: &str = "authentication failure";
/// The end of a session.
pub(crate) const DISCONNECTING: &str = "disconnecting session";

/// Writes one row; failures are logged, not returned.
pub(crate) async fn record(history: &History, e: &ConnectionEvent<'_>) {
    let written = async {
        let client = history.client().await?;
        let host = e.peer.map(|p| p.ip().to_string());
        let port = e.peer.map(|p| p.port().to_string());
        let duration = e
            .duration_micros
            .map(|d| i32::try_from(d).unwrap_or(i32::MAX));
        let groups = (!e.groups.is_empty()).then(|| e.groups.join(","));
        client
            .execute(
                "INSERT INTO public.stl_connection_log (event, recordtime, remotehost, remoteport, \
                   pid, dbname, username, authmethod, duration, iamauthguid, application_name, \
                   protocol_version, sessionid, reason, db_groups) \
                 VALUES ($1, timezone('UTC', clock_timestamp()), $2, $3, $4, $5, $6, $7, $8, $9, \
                   $10, 3, $11, $12, $13)",
                &[
                    &e.event,
                    &host,
                    &port,
                    &e.pid,
                    &e.database,
                    &e.user,
                    &e.method.as_str(),
                    &duration,
                    &e.iam_request_id,
                    &e.application_name,
                    &e.session_id,
                    &e.reason,
                    &groups,
                ],
            )
            .await
    }
    .await;
    if let Err(err) = written {
        tracing::warn!(error = %err, event = e.event, "cannot write stl_connection_log");
    }
}
