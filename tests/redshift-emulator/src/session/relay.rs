//! Relaying the backend's messages to the client: until ReadyForQuery (simple query, Sync) or
//! until every forwarded extended-protocol message has its response (before the emulator
//! answers a local message, so answers stay in order). A COPY FROM STDIN is failed on the
//! backend, as Redshift has none.
//!
//! May import: `super`.

use std::fmt::Debug;

use futures::{Sink, SinkExt};
use pgwire::api::ClientInfo;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::CopyFail;
use pgwire::messages::extendedquery::Flush;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Session, SessionState, backend_lost, no_backend};

/// How far to relay backend messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Until {
    /// up to and including ReadyForQuery (`forward_ready` says whether to pass it on)
    Ready { forward_ready: bool },
    /// until every pending extended-protocol message has its response
    PendingDone,
}

impl Session {
    /// Relays backend messages to the client. Returns true if an ErrorResponse was relayed.
    pub(super) async fn relay<C>(
        client: &mut C,
        state: &mut SessionState,
        until: Until,
    ) -> PgWireResult<bool>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        let mut saw_error = false;
        loop {
            if until == Until::PendingDone && state.pending == 0 {
                return Ok(saw_error);
            }
            let msg = backend.recv().await.map_err(backend_lost)?;
            match msg {
                PgWireBackendMessage::ReadyForQuery(r) => {
                    backend.status = r.status;
                    client.set_transaction_status(r.status);
                    state.pending = 0;
                    if let Until::Ready {
                        forward_ready: true,
                    } = until
                    {
                        client.feed(PgWireBackendMessage::ReadyForQuery(r)).await?;
                    }
                    return Ok(saw_error);
                }
                PgWireBackendMessage::CopyInResponse(_)
                | PgWireBackendMessage::CopyBothResponse(_) => {
                    // Redshift has no COPY FROM STDIN; make the backend fail the COPY
                    backend
                        .send(PgWireFrontendMessage::CopyFail(CopyFail::new(
                            "COPY FROM STDIN is not supported by the Redshift emulator".to_owned(),
                        )))
                        .await
                        .map_err(backend_lost)?;
                }
                PgWireBackendMessage::ErrorResponse(e) => {
                    saw_error = true;
                    if until == Until::PendingDone {
                        state.pending = 0;
                        state.skipping = true;
                    }
                    client.feed(PgWireBackendMessage::ErrorResponse(e)).await?;
                }
                other => {
                    let terminal = matches!(
                        other,
                        PgWireBackendMessage::ParseComplete(_)
                            | PgWireBackendMessage::BindComplete(_)
                            | PgWireBackendMessage::CloseComplete(_)
                            | PgWireBackendMessage::NoData(_)
                            | PgWireBackendMessage::RowDescription(_)
                            | PgWireBackendMessage::CommandComplete(_)
                            | PgWireBackendMessage::EmptyQueryResponse(_)
                            | PgWireBackendMessage::PortalSuspended(_)
                    );
                    if terminal && until == Until::PendingDone {
                        state.pending = state.pending.saturating_sub(1);
                    }
                    client.feed(other).await?;
                }
            }
        }
    }

    /// Relays the responses to every forwarded extended-protocol message, so the emulator can
    /// answer a local message in order.
    pub(super) async fn drain<C>(client: &mut C, state: &mut SessionState) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if state.pending == 0 || state.skipping {
            return Ok(());
        }
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend
            .send(PgWireFrontendMessage::Flush(Flush::new()))
            .await
            .map_err(backend_lost)?;
        Self::relay(client, state, Until::PendingDone).await?;
        Ok(())
    }

    /// Forwards one extended-protocol message whose response is relayed later.
    pub(super) async fn forward(
        state: &mut SessionState,
        msg: PgWireFrontendMessage,
    ) -> PgWireResult<()> {
        let backend = state.backend.as_mut().ok_or_else(no_backend)?;
        backend.feed(msg).await.map_err(backend_lost)?;
        state.pending += 1;
        Ok(())
    }
}
