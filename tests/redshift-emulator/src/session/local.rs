//! The statements the emulator answers itself instead of forwarding: `UNLOAD` ([`crate::unload`],
//! recorded in the monitoring views, with the delay and drop-connection knobs), `EMULATOR`
//! knob changes ([`crate::control`]) and `CREATE USER` / `ALTER USER` ([`crate::user_sql`]);
//! and how their result reaches the client (CommandComplete or ErrorResponse).
//!
//! May import: `super`, `crate::control`, `crate::error`, `crate::history`, `crate::sql`,
//! `crate::unload`, `crate::user_sql`, `crate::users`.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::response::CommandComplete;

use super::{Session, SessionState};
use crate::control;
use crate::error::StatementError;
use crate::history::{UnloadProgress, UnloadStart};
use crate::sql::StatementClass;
use crate::unload::{self, UnloadEnv};
use crate::user_sql;

/// A statement or portal the emulator answers itself.
#[derive(Debug, Clone)]
pub(super) enum LocalStatement {
    Unload(String),
    Control(String),
    User(String),
}

pub(super) fn local_statement(class: StatementClass, text: &str) -> Result<LocalStatement, String> {
    match class {
        StatementClass::Unload => Ok(LocalStatement::Unload(text.to_owned())),
        StatementClass::Control => Ok(LocalStatement::Control(text.to_owned())),
        StatementClass::User => Ok(LocalStatement::User(text.to_owned())),
        StatementClass::Forward(sql) => Err(sql),
    }
}

impl Session {
    /// Runs an UNLOAD or EMULATOR statement; returns the command tag.
    pub(super) async fn run_local(
        &self,
        state: &mut SessionState,
        stmt: &LocalStatement,
    ) -> Result<&'static str, StatementError> {
        match stmt {
            LocalStatement::User(text) => {
                let statement = user_sql::parse_user_statement(text)?;
                let actor = self.db_user();
                let users = &self.shared.users;
                let done = if statement.create {
                    users.create(
                        &actor,
                        &statement.name,
                        statement
                            .password
                            .as_ref()
                            .unwrap_or(&crate::users::NewPassword::Disable),
                        statement.superuser,
                    )
                } else {
                    users.alter(
                        &actor,
                        &statement.name,
                        statement.password.as_ref(),
                        statement.superuser,
                    )
                };
                done.map_err(|e| StatementError::coded(e.code, e.message))?;
                tracing::info!(user = %statement.name, by = %actor, "{}", statement.tag());
                Ok(statement.tag())
            }
            LocalStatement::Control(text) => {
                let control = control::parse_control(text)?;
                control::apply(&control, &self.shared.knobs, &self.shared.config.faults);
                tracing::info!(?control, "emulator knobs changed");
                Ok("EMULATOR")
            }
            LocalStatement::Unload(text) => {
                let _running = self.shared.unloads.enter(text);
                let faults = self.shared.knobs.get();
                self.cancel.flag.reset();
                if faults.unload_delay_ms > 0 {
                    self.cancel
                        .flag
                        .sleep(std::time::Duration::from_millis(faults.unload_delay_ms))
                        .await?;
                }
                if faults.drop_connection_on_unload {
                    tracing::info!(
                        "dropping the client connection during UNLOAD (drop_connection_on_unload)"
                    );
                    self.dropped.notify_one();
                    // the connection task drops this future together with the socket
                    std::future::pending::<()>().await;
                }
                let backend = state.backend.as_mut().ok_or_else(|| {
                    StatementError::BackendLost("no backend connection".to_owned())
                })?;
                let progress = Arc::new(UnloadProgress::default());
                let env = UnloadEnv {
                    config: &self.shared.config,
                    faults,
                    cancel: &self.cancel.flag,
                    progress: Arc::clone(&progress),
                };
                // a syntax error leaves pg_last_unload_count() as it was (and is not recorded)
                let prepared = unload::prepare(text)?;
                let location = prepared.location();
                let start = UnloadStart {
                    text,
                    location: &location,
                    file_format: prepared.file_format(),
                    database: &self.shared.config.database,
                    session_id: backend.process_id(),
                };
                let record = self.shared.history.begin(&start, progress).await;
                let result = unload::execute(backend, &prepared, &env).await;
                if let Some(record) = record {
                    record.finish(&result).await;
                }
                if let Some(rows) = unload::count_after(&result) {
                    unload::record_count(backend, rows).await?;
                }
                result.map(|_| "UNLOAD")
            }
        }
    }

    /// Sends the result of a local statement: CommandComplete, or ErrorResponse. Returns false
    /// on error (fatal errors end the session).
    pub(super) async fn report<C>(
        client: &mut C,
        result: Result<&'static str, StatementError>,
    ) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match result {
            Ok(tag) => {
                client
                    .feed(PgWireBackendMessage::CommandComplete(CommandComplete::new(
                        tag.to_owned(),
                    )))
                    .await?;
                Ok(true)
            }
            Err(e) if e.is_fatal() => Err(e.into()),
            Err(e) => {
                tracing::info!(error = %e, "statement failed");
                client
                    .feed(PgWireBackendMessage::ErrorResponse(
                        e.into_error_info().into(),
                    ))
                    .await?;
                Ok(false)
            }
        }
    }
}
