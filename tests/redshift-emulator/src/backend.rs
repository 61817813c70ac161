//! The emulator's own wire-protocol connection to the backend PostgreSQL.
//!
//! Each client session gets one backend connection, and ordinary statements are relayed over it
//! message by message (pgwire's message codec in both directions). Relaying raw messages, rather
//! than re-executing statements through a driver, is what keeps rows, column types and
//! modifiers, command tags, text/binary formats, notices and errors (with every field) exactly
//! as PostgreSQL produced them. The same connection runs the UNLOAD cursor, so an UNLOAD sees the
//! session's temporary tables and open transaction.
//!
//! Authentication to the backend supports trust, cleartext, MD5 and SCRAM-SHA-256 (via
//! `postgres-protocol`, the implementation tokio-postgres uses). TLS to the backend is not
//! supported: the backend is expected on loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::data::{DataRow, RowDescription};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::{
    Authentication, PasswordMessageFamily, SASLInitialResponse, SASLResponse, SecretKey, Startup,
};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, ProtocolVersion,
};
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_postgres::config::Host;
use tokio_util::codec::{Decoder, Encoder, Framed};

/// Where and as whom to connect to the backend, parsed once from the `--pg-url`.
#[derive(Clone)]
pub(crate) struct BackendTarget {
    host: String,
    port: u16,
    user: String,
    password: Option<Vec<u8>>,
    dbname: String,
    options: Option<String>,
}

impl std::fmt::Debug for BackendTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

impl BackendTarget {
    /// Parses a libpq URL or key=value string (the syntax tokio-postgres accepts).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let config =
            tokio_postgres::Config::from_str(url).map_err(|e| format!("invalid --pg-url: {e}"))?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(_) => return Err("--pg-url: only TCP hosts are supported".to_owned()),
            None => "127.0.0.1".to_owned(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config
            .get_user()
            .ok_or("--pg-url: a user is required")?
            .to_owned();
        Ok(Self {
            host,
            port,
            dbname: config.get_dbname().unwrap_or(&user).to_owned(),
            user,
            password: config.get_password().map(<[u8]>::to_vec),
            options: config.get_options().map(str::to_owned),
        })
    }

    /// `host:port`, for messages.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A backend failure.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BackendError {
    /// Network failure or EOF.
    #[error("{0}")]
    Io(String),
    /// PostgreSQL refused the connection (auth, unknown database, ...).
    #[error("{}", .0.message)]
    Server(Box<ErrorInfo>),
    /// Something the emulator does not understand.
    #[error("{0}")]
    Protocol(String),
}

impl From<PgWireError> for BackendError {
    fn from(e: PgWireError) -> Self {
        BackendError::Io(e.to_string())
    }
}

/// Encodes frontend messages, decodes backend messages.
#[derive(Debug)]
struct BackendCodec {
    ctx: DecodeContext,
}

impl Decoder for BackendCodec {
    type Item = PgWireBackendMessage;
    type Error = PgWireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        PgWireBackendMessage::decode(src, &self.ctx)
    }
}

impl Encoder<PgWireFrontendMessage> for BackendCodec {
    type Error = PgWireError;

    fn encode(
        &mut self,
        item: PgWireFrontendMessage,
        dst: &mut BytesMut,
    ) -> Result<(), Self::Error> {
        item.encode(dst)
    }
}

/// One authenticated backend connection.
#[derive(Debug)]
pub(crate) struct Backend {
    framed: Framed<TcpStream, BackendCodec>,
    /// ParameterStatus values reported at start-up.
    pub(crate) params: BTreeMap<String, String>,
    /// Process id and secret key for CancelRequest.
    cancel_key: Option<(i32, i32)>,
    addr: SocketAddr,
    /// Transaction status from the last ReadyForQuery.
    pub(crate) status: TransactionStatus,
}

/// A handle that can cancel whatever the backend connection is running.
#[derive(Debug, Clone)]
pub(crate) struct BackendCancel {
    addr: SocketAddr,
    pid: i32,
    secret: i32,
}

impl BackendCancel {
    /// Sends a CancelRequest on a new connection (best effort).
    pub(crate) async fn cancel(&self) {
        let Ok(mut stream) = TcpStream::connect(self.addr).await else {
            return;
        };
        let mut buf = Vec::with_capacity(16);
        buf.extend_from_slice(&16i32.to_be_bytes());
        buf.extend_from_slice(&80_877_102i32.to_be_bytes());
        buf.extend_from_slice(&self.pid.to_be_bytes());
        buf.extend_from_slice(&self.secret.to_be_bytes());
        let _ = stream.write_all(&buf).await;
        let _ = stream.shutdown().await;
    }
}

impl Backend {
    /// Connects and authenticates; `client_params` are start-up parameters to pass on
    /// (`application_name`, `options`, `DateStyle`, ...).
    pub(crate) async fn connect(
        target: &BackendTarget,
        client_params: &BTreeMap<String, String>,
    ) -> Result<Self, BackendError> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                BackendError::Io(format!("cannot connect to {}: {e}", target.address()))
            })?;
        let addr = stream
            .peer_addr()
            .map_err(|e| BackendError::Io(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut ctx = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
        ctx.awaiting_frontend_ssl = false;
        ctx.awaiting_frontend_startup = false;
        let mut framed = Framed::new(stream, BackendCodec { ctx });

        let mut startup = Startup::new();
        for (k, v) in client_params {
            startup.parameters.insert(k.clone(), v.clone());
        }
        startup
            .parameters
            .insert("user".into(), target.user.clone());
        startup
            .parameters
            .insert("database".into(), target.dbname.clone());
        if let Some(options) = &target.options {
            startup
                .parameters
                .entry("options".into())
                .or_insert_with(|| options.clone());
        }
        // Redshift sessions start in UTC unless the client asks otherwise
        if !startup
            .parameters
            .keys()
            .any(|k| k.eq_ignore_ascii_case("timezone"))
        {
            startup.parameters.insert("TimeZone".into(), "UTC".into());
        }
        // Redshift string literals process backslash escapes ('a\\b' is a\b), as PostgreSQL
        // did before 9.1; make the backend parse literals the same way, quietly.
        startup
            .parameters
            .insert("standard_conforming_strings".into(), "off".into());
        startup
            .parameters
            .insert("escape_string_warning".into(), "off".into());
        framed.send(PgWireFrontendMessage::Startup(startup)).await?;

        let mut backend = Self {
            framed,
            params: BTreeMap::new(),
            cancel_key: None,
            addr,
            status: TransactionStatus::Idle,
        };
        backend.authenticate(target).await?;
        Ok(backend)
    }

    async fn authenticate(&mut self, target: &BackendTarget) -> Result<(), BackendError> {
        let password = || {
            target.password.clone().ok_or_else(|| {
                BackendError::Protocol(
                    "the backend PostgreSQL asks for a password but --pg-url has none".to_owned(),
                )
            })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            match self.recv().await? {
                PgWireBackendMessage::Authentication(auth) => match auth {
                    Authentication::Ok => {}
                    Authentication::CleartextPassword => {
                        let pw = String::from_utf8_lossy(&password()?).into_owned();
                        self.send_password(PasswordMessageFamily::Password(
                            pgwire::messages::startup::Password::new(pw),
                        ))
                        .await?;
                    }
                    Authentication::MD5Password(salt) => {
                        let salt: [u8; 4] = salt
                            .as_slice()
                            .try_into()
                            .map_err(|_| BackendError::Protocol("bad MD5 salt".to_owned()))?;
                        let hash = postgres_protocol::authentication::md5_hash(
                            target.user.as_bytes(),
                            &password()?,
                            salt,
                        );
                        self.send_password(PasswordMessageFamily::Password(
                            pgwire::messages::startup::Password::new(hash),
                        ))
                        .await?;
                    }
                    Authentication::SASL(mechanisms) => {
                        if !mechanisms.iter().any(|m| m == SCRAM_SHA_256) {
                            return Err(BackendError::Protocol(format!(
                                "unsupported SASL mechanisms {mechanisms:?}"
                            )));
                        }
                        let s = ScramSha256::new(&password()?, ChannelBinding::unsupported());
                        let first = Bytes::copy_from_slice(s.message());
                        scram = Some(s);
                        self.send_password(PasswordMessageFamily::SASLInitialResponse(
                            SASLInitialResponse::new(SCRAM_SHA_256.to_owned(), Some(first)),
                        ))
                        .await?;
                    }
                    Authentication::SASLContinue(data) => {
                        let s = scram.as_mut().ok_or_else(|| {
                            BackendError::Protocol("unexpected SASLContinue".into())
                        })?;
                        s.update(&data)
                            .map_err(|e| BackendError::Protocol(format!("SCRAM: {e}")))?;
                        let msg = Bytes::copy_from_slice(s.message());
                        self.send_password(PasswordMessageFamily::SASLResponse(SASLResponse::new(
                            msg,
                        )))
                        .await?;
                    }
                    Authentication::SASLFinal(data) => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| BackendError::Protocol("unexpected SASLFinal".into()))?;
                        s.finish(&data)
                            .map_err(|e| BackendError::Protocol(format!("SCRAM: {e}")))?;
                    }
                    other => {
                        return Err(BackendError::Protocol(format!(
                            "unsupported authentication request {other:?}"
                        )));
                    }
                },
                PgWireBackendMessage::ParameterStatus(p) => {
                    self.params.insert(p.name, p.value);
                }
                PgWireBackendMessage::BackendKeyData(k) => {
                    if let SecretKey::I32(secret) = k.secret_key {
                        self.cancel_key = Some((k.pid, secret));
                    }
                }
                PgWireBackendMessage::ReadyForQuery(r) => {
                    self.status = r.status;
                    return Ok(());
                }
                PgWireBackendMessage::ErrorResponse(e) => {
                    return Err(BackendError::Server(Box::new(e.into())));
                }
                PgWireBackendMessage::NoticeResponse(_)
                | PgWireBackendMessage::NegotiateProtocolVersion(_) => {}
                other => {
                    return Err(BackendError::Protocol(format!(
                        "unexpected message during start-up: {other:?}"
                    )));
                }
            }
        }
    }

    async fn send_password(&mut self, msg: PasswordMessageFamily) -> Result<(), BackendError> {
        self.framed
            .send(PgWireFrontendMessage::PasswordMessageFamily(msg))
            .await?;
        Ok(())
    }

    /// The backend's process id (0 if it sent none).
    pub(crate) fn process_id(&self) -> i32 {
        self.cancel_key.map_or(0, |(pid, _)| pid)
    }

    /// A handle to cancel the running statement, if the backend sent a key.
    pub(crate) fn cancel_handle(&self) -> Option<BackendCancel> {
        self.cancel_key.map(|(pid, secret)| BackendCancel {
            addr: self.addr,
            pid,
            secret,
        })
    }

    /// Queues a message without flushing.
    pub(crate) async fn feed(&mut self, msg: PgWireFrontendMessage) -> Result<(), BackendError> {
        self.framed.feed(msg).await?;
        Ok(())
    }

    /// Sends a message and flushes.
    pub(crate) async fn send(&mut self, msg: PgWireFrontendMessage) -> Result<(), BackendError> {
        self.framed.send(msg).await?;
        Ok(())
    }

    /// Receives the next message; EOF is an error.
    pub(crate) async fn recv(&mut self) -> Result<PgWireBackendMessage, BackendError> {
        match self.framed.next().await {
            Some(Ok(msg)) => Ok(msg),
            Some(Err(e)) => Err(BackendError::Io(e.to_string())),
            None => Err(BackendError::Io(
                "the backend PostgreSQL closed the connection".to_owned(),
            )),
        }
    }

    /// Runs an internal simple query and returns its text rows, or the first error (after
    /// reading up to ReadyForQuery). Notices and parameter changes are not passed on: internal
    /// statements are invisible to the client. Only for small results.
    pub(crate) async fn simple(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Vec<Option<String>>>, Box<ErrorInfo>>, BackendError> {
        self.send(PgWireFrontendMessage::Query(Query::new(sql.to_owned())))
            .await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            match self.recv().await? {
                PgWireBackendMessage::DataRow(row) => rows.push(decode_text_row(&row)?),
                PgWireBackendMessage::ErrorResponse(e) => {
                    error.get_or_insert_with(|| Box::new(ErrorInfo::from(e)));
                }
                PgWireBackendMessage::CopyInResponse(_) => {
                    self.send(PgWireFrontendMessage::CopyFail(
                        pgwire::messages::copy::CopyFail::new("COPY is not supported".to_owned()),
                    ))
                    .await?;
                }
                PgWireBackendMessage::ReadyForQuery(r) => {
                    self.status = r.status;
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
        }
    }
}

/// One result chunk of a cursor FETCH.
#[derive(Debug)]
pub(crate) struct FetchResult {
    /// The row description (sent even when there are no rows).
    pub(crate) description: Option<RowDescription>,
    /// The rows, as text.
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl Backend {
    /// Runs `FETCH` (or any row-returning simple query) and returns the description and rows.
    pub(crate) async fn fetch(
        &mut self,
        sql: &str,
    ) -> Result<Result<FetchResult, Box<ErrorInfo>>, BackendError> {
        self.send(PgWireFrontendMessage::Query(Query::new(sql.to_owned())))
            .await?;
        let mut result = FetchResult {
            description: None,
            rows: Vec::new(),
        };
        let mut error = None;
        loop {
            match self.recv().await? {
                PgWireBackendMessage::RowDescription(d) => result.description = Some(d),
                PgWireBackendMessage::DataRow(row) => result.rows.push(decode_text_row(&row)?),
                PgWireBackendMessage::ErrorResponse(e) => {
                    error.get_or_insert_with(|| Box::new(ErrorInfo::from(e)));
                }
                PgWireBackendMessage::ReadyForQuery(r) => {
                    self.status = r.status;
                    return Ok(match error {
                        Some(e) => Err(e),
                        None => Ok(result),
                    });
                }
                _ => {}
            }
        }
    }
}

/// Splits a DataRow into its text values (text format only).
pub(crate) fn decode_text_row(row: &DataRow) -> Result<Vec<Option<String>>, BackendError> {
    let data = &row.data[..];
    let mut values = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut pos = 0usize;
    let bad = || BackendError::Protocol("malformed DataRow".to_owned());
    for _ in 0..row.field_count {
        let len_bytes: [u8; 4] = data
            .get(pos..pos + 4)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        pos += 4;
        let len = i32::from_be_bytes(len_bytes);
        if len < 0 {
            values.push(None);
            continue;
        }
        let len = len as usize;
        let bytes = data.get(pos..pos + len).ok_or_else(bad)?;
        pos += len;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| BackendError::Protocol("DataRow value is not UTF-8".to_owned()))?;
        values.push(Some(text.to_owned()));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_without_exposing_password() {
        let t = BackendTarget::parse("postgres://me:pw@127.0.0.1:55432/dev").unwrap();
        assert_eq!(t.address(), "127.0.0.1:55432");
        assert_eq!(t.dbname, "dev");
        assert_eq!(t.password.as_deref(), Some(&b"pw"[..]));
        assert!(!format!("{t:?}").contains("pw\""));
    }

    #[test]
    fn decodes_data_rows() {
        let mut data = BytesMut::new();
        data.extend_from_slice(&2i32.to_be_bytes());
        data.extend_from_slice(b"ab");
        data.extend_from_slice(&(-1i32).to_be_bytes());
        data.extend_from_slice(&0i32.to_be_bytes());
        let row = DataRow::new(data, 3);
        assert_eq!(
            decode_text_row(&row).unwrap(),
            vec![Some("ab".to_owned()), None, Some(String::new())]
        );
    }
}
