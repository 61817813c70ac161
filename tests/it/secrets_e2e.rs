//! Secrets never leave the process (issue 6, item 6): the real server binary runs at debug log
//! level (trace for its own target) through a full Flight session, its failure paths, the `plan`
//! and `tables` subcommands, a configuration that fails validation and a start-up that fails on a
//! wrong password; then every byte it wrote to stdout and stderr is searched for each secret.
//!
//! The secrets: the test bed's real Redshift password (needed to log in), the test bed's AWS
//! secret key, a ticket_secret and two auth tokens chosen here, the wrong password and the wrong
//! token a client tried (a mistyped credential is as sensitive as the real one).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::error::FlightError;
use arrow_flight::{
    CancelFlightInfoRequest, CancelStatus, FlightClient, FlightDescriptor, FlightInfo, Ticket,
};
use futures::TryStreamExt;
use redshift_flight::config::{Config, RawConfig};
use tonic::Code;

use crate::common::{config_json, pg, tb, unique};

const BIN: &str = env!("CARGO_BIN_EXE_redshift-flight");

/// Secrets shorter than this could match by chance; the test refuses to run on them.
const MIN_SECRET_LEN: usize = 8;

struct Secrets {
    redshift_password: String,
    aws_secret_access_key: String,
    ticket_secret: String,
    token_a: String,
    token_b: String,
    wrong_password: String,
    wrong_token: String,
}

impl Secrets {
    fn new() -> Self {
        let r = || format!("{:016x}", rand::random::<u64>());
        Self {
            redshift_password: tb("TESTBED_REDSHIFT_PASSWORD"),
            aws_secret_access_key: tb("AWS_SECRET_ACCESS_KEY"),
            ticket_secret: format!("TicketSecret-{}{}", r(), r()),
            token_a: format!("TokenAlpha-{}", r()),
            token_b: format!("TokenBeta-{}", r()),
            wrong_password: format!("WrongPassword-{}", r()),
            wrong_token: format!("WrongToken-{}", r()),
        }
    }

    fn all(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("redshift_password", &self.redshift_password),
            ("aws_secret_access_key", &self.aws_secret_access_key),
            ("ticket_secret", &self.ticket_secret),
            ("auth token a", &self.token_a),
            ("auth token b", &self.token_b),
            ("wrong password", &self.wrong_password),
            ("wrong token", &self.wrong_token),
        ]
    }
}

/// A scratch folder for config files and captured output, removed at the end unless the test fails.
struct Scratch {
    dir: PathBuf,
    outputs: Vec<PathBuf>,
}

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("redshift_flight_secrets"));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            dir,
            outputs: Vec::new(),
        }
    }

    fn write_config(&self, name: &str, json: &serde_json::Value) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(json).unwrap()).unwrap();
        path
    }

    /// A `redshift-flight` command whose stdout and stderr go to files `<name>.stdout` / `.stderr`.
    fn command(&mut self, name: &str, config: &Path, args: &[&str]) -> Command {
        let stdout = self.dir.join(format!("{name}.stdout"));
        let stderr = self.dir.join(format!("{name}.stderr"));
        let mut command = Command::new(BIN);
        // Only the config file configures the server: drop any REDSHIFT_FLIGHT_* of the caller.
        for (key, _) in std::env::vars() {
            if key.starts_with("REDSHIFT_FLIGHT_") {
                command.env_remove(key);
            }
        }
        command
            .env("REDSHIFT_FLIGHT_LOG", "debug,redshift_flight=trace")
            .arg("--config")
            .arg(config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        self.outputs.push(stdout);
        self.outputs.push(stderr);
        command
    }

    /// Runs a subcommand to completion (with a deadline) and returns (success, stdout + stderr).
    fn run(&mut self, name: &str, config: &Path, args: &[&str]) -> (bool, String) {
        let mut child = self.command(name, config, args).spawn().unwrap();
        let status = wait_with_deadline(&mut child, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("redshift-flight {args:?} did not finish within 60 s"));
        let text = self.outputs[self.outputs.len() - 2..]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        (status.success(), text)
    }
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stops a child with SIGTERM (so its shutdown path logs too) and waits for it.
fn terminate(child: &mut Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    if wait_with_deadline(child, Duration::from_secs(30)).is_none() {
        panic!("the server did not stop within 30 s of SIGTERM");
    }
}

fn code(error: &FlightError) -> Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        _ => Code::Unknown,
    }
}

/// Kills the server if the test panics before stopping it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn client(addr: &str, token: Option<&str>) -> FlightClient {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the server");
    let mut client = FlightClient::new(channel);
    if let Some(token) = token {
        client
            .add_header("authorization", &format!("Bearer {token}"))
            .unwrap();
    }
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_errors_or_debug_output() {
    let secrets = Secrets::new();
    for (what, secret) in secrets.all() {
        assert!(
            secret.len() >= MIN_SECRET_LEN,
            "{what} has {} characters: too short to search for reliably",
            secret.len()
        );
    }
    let mut scratch = Scratch::new();

    // A table to serve, with a replication key for an incremental session.
    let table = unique("secrets");
    let db = pg().await;
    db.batch_execute(&format!(
        "CREATE TABLE public.{table} (id integer primary key, name varchar(40), updated_at timestamp);
         INSERT INTO public.{table}
           SELECT i, 'row ' || i, TIMESTAMP '2024-01-01' + i * INTERVAL '1 minute'
           FROM generate_series(1, 50) AS i;"
    ))
    .await
    .unwrap();

    let tokens = format!("{},{}", secrets.token_a, secrets.token_b);
    let good = config_json(&[
        ("ticket_secret", &secrets.ticket_secret),
        ("auth_tokens", &tokens),
        ("staging_grace_seconds", "0"),
    ]);
    assert_eq!(
        good["redshift_password"],
        secrets.redshift_password.as_str()
    );
    assert_eq!(
        good["aws_secret_access_key"],
        secrets.aws_secret_access_key.as_str()
    );
    let good_path = scratch.write_config("good.json", &good);

    // Debug output of the configuration, raw and validated.
    let raw: RawConfig = serde_json::from_value(good.clone()).unwrap();
    let config = Config::try_from_raw(raw.clone()).unwrap();
    let debug = format!("{raw:?}\n{raw:#?}\n{config:?}\n{config:#?}");
    assert!(debug.contains(&tb("TESTBED_REDSHIFT_USER")), "{debug}");

    // The server, through a full session.
    let mut server = KillOnDrop(
        scratch
            .command("serve", &good_path, &["serve"])
            .spawn()
            .unwrap(),
    );
    let serve_stdout = scratch.dir.join("serve.stdout");
    let addr = {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&serve_stdout).unwrap_or_default();
            if let Some(addr) = text
                .lines()
                .find_map(|l| l.strip_prefix("redshift-flight listening on "))
            {
                break addr.trim().to_string();
            }
            if let Some(status) = server.0.try_wait().unwrap() {
                panic!(
                    "the server exited with {status}: {}",
                    std::fs::read_to_string(scratch.dir.join("serve.stderr")).unwrap()
                );
            }
            assert!(
                Instant::now() < until,
                "the server did not start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let session = session(&addr, &secrets, &table).await;
    terminate(&mut server.0);
    session.expect("Flight session");

    // The subcommands with the same configuration.
    let (ok, out) = scratch.run("plan", &good_path, &["plan", &format!("public.{table}")]);
    assert!(ok, "plan failed: {out}");
    assert!(out.contains("UNLOAD ("), "{out}");
    let (ok, out) = scratch.run("tables", &good_path, &["tables"]);
    assert!(ok, "tables failed: {out}");
    assert!(out.contains(&table), "{out}");

    // A configuration that fails validation, and one that points at a closed port.
    let mut invalid = good.clone();
    invalid["redshift_port"] = "not-a-port".into();
    let invalid_path = scratch.write_config("invalid.json", &invalid);
    for args in [vec!["plan", "public.x"], vec!["tables"], vec!["serve"]] {
        let (ok, out) = scratch.run(&format!("invalid-{}", args[0]), &invalid_path, &args);
        assert!(!ok, "{args:?} accepted redshift_port 'not-a-port': {out}");
        assert!(out.contains("redshift_port"), "{out}");
    }
    let mut closed = good.clone();
    closed["redshift_port"] = "1".into();
    let closed_path = scratch.write_config("closed.json", &closed);
    let (ok, out) = scratch.run("closed-plan", &closed_path, &["plan", "public.x"]);
    assert!(!ok, "plan against port 1 succeeded: {out}");

    // Start-up and subcommands with a wrong password fail, without echoing it.
    let mut wrong = good.clone();
    wrong["redshift_password"] = secrets.wrong_password.as_str().into();
    let wrong_path = scratch.write_config("wrong-password.json", &wrong);
    for args in [vec!["serve"], vec!["tables"], vec!["plan", "public.x"]] {
        let (ok, out) = scratch.run(&format!("wrong-password-{}", args[0]), &wrong_path, &args);
        assert!(!ok, "{args:?} started with a wrong password: {out}");
        assert!(
            out.to_lowercase().contains("password") || out.to_lowercase().contains("auth"),
            "the error does not say what is wrong: {out}"
        );
    }

    // Every captured byte, searched for every secret (also hex- and base64-encoded).
    let mut log = String::new();
    for path in &scratch.outputs {
        log.push_str(&strip_ansi(&std::fs::read_to_string(path).unwrap()));
        log.push('\n');
    }
    // The search is only worth something if the server did log the session.
    assert!(log.contains("UNLOAD"), "the debug log has no UNLOAD");
    assert!(log.contains(&table), "the debug log never names the table");
    assert!(
        log.len() > 10_000,
        "the debug log is only {} bytes",
        log.len()
    );
    use base64::Engine;
    let mut leaks = Vec::new();
    for (what, secret) in secrets.all() {
        for (encoding, form) in [
            ("plain", secret.to_string()),
            ("hex", hex::encode(secret)),
            (
                "base64",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(secret),
            ),
        ] {
            if log.contains(&form) {
                leaks.push(format!("{what} ({encoding}) in the captured output"));
            }
            if debug.contains(&form) {
                leaks.push(format!("{what} ({encoding}) in Config's Debug output"));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets leaked: {leaks:#?}\ncaptured output kept in {}",
        scratch.dir.display()
    );

    // KEEP_SECRETS_OUTPUT=1 keeps the captured output for inspection.
    if std::env::var_os("KEEP_SECRETS_OUTPUT").is_none() {
        let _ = std::fs::remove_dir_all(&scratch.dir);
    } else {
        eprintln!("captured output in {}", scratch.dir.display());
    }
    db.batch_execute(&format!("DROP TABLE public.{table}"))
        .await
        .unwrap();
}

/// ListFlights, GetSchema, GetFlightInfo (snapshot and incremental with a cursor), DoGet of every
/// endpoint, the failure paths, CancelFlightInfo.
async fn session(addr: &str, secrets: &Secrets, table: &str) -> Result<(), String> {
    let mut a = client(addr, Some(&secrets.token_a)).await;
    let mut b = client(addr, Some(&secrets.token_b)).await;

    let listed: Vec<_> = a
        .list_flights("")
        .await
        .map_err(|e| format!("ListFlights: {e}"))?
        .try_collect()
        .await
        .map_err(|e| format!("ListFlights stream: {e}"))?;
    if !listed.iter().any(|info| {
        info.flight_descriptor
            .as_ref()
            .is_some_and(|d| d.path.iter().any(|p| p == table))
    }) {
        return Err(format!("ListFlights does not list {table}"));
    }

    let path = FlightDescriptor::new_path(vec!["public".into(), table.into()]);
    let schema = b
        .get_schema(path.clone())
        .await
        .map_err(|e| format!("GetSchema: {e}"))?;
    if schema.fields().len() != 3 {
        return Err(format!("GetSchema: {schema:?}"));
    }

    let info = a
        .get_flight_info(path.clone())
        .await
        .map_err(|e| format!("GetFlightInfo: {e}"))?;
    let rows = read_rows(&mut b, &info).await?;
    if rows != 50 {
        return Err(format!("DoGet returned {rows} rows, not 50"));
    }

    // Incremental: a first sync, then one from its cursor (nothing new).
    let command = |cursor: Option<&str>| {
        let mut json = serde_json::json!({
            "table": format!("public.{table}"),
            "mode": "incremental",
            "replication_key": "updated_at",
        });
        if let Some(cursor) = cursor {
            json["cursor"] = cursor.into();
        }
        FlightDescriptor::new_cmd(json.to_string())
    };
    let first = a
        .get_flight_info(command(None))
        .await
        .map_err(|e| format!("incremental GetFlightInfo: {e}"))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&first.app_metadata).map_err(|e| format!("app_metadata: {e}"))?;
    let cursor = metadata["next_cursor"]
        .as_str()
        .ok_or("no next_cursor")?
        .to_string();
    read_rows(&mut a, &first).await?;
    let second = a
        .get_flight_info(command(Some(&cursor)))
        .await
        .map_err(|e| format!("GetFlightInfo from the cursor: {e}"))?;
    if second.total_records > 0 {
        return Err(format!(
            "{} new rows after the cursor",
            second.total_records
        ));
    }

    // Failures: unknown table, bad and tampered tickets, a damaged cursor, wrong and no token.
    let expect = |what: &str, result: Result<(), FlightError>, codes: &[Code]| match result {
        Err(e) if codes.contains(&code(&e)) => Ok(()),
        other => Err(format!("{what}: expected {codes:?}, got {other:?}")),
    };
    expect(
        "unknown table",
        a.get_flight_info(FlightDescriptor::new_path(vec![
            "public".into(),
            format!("{table}_missing"),
        ]))
        .await
        .map(drop),
        &[Code::NotFound],
    )?;
    expect(
        "garbage ticket",
        do_get_all(&mut a, Ticket::new("garbage")).await,
        &[Code::InvalidArgument],
    )?;
    let mut tampered = info.endpoint[0].ticket.clone().unwrap().ticket.to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    expect(
        "tampered ticket",
        do_get_all(&mut a, Ticket::new(tampered)).await,
        &[Code::InvalidArgument, Code::PermissionDenied],
    )?;
    expect(
        "damaged cursor",
        a.get_flight_info(command(Some(&format!("{cursor}x"))))
            .await
            .map(drop),
        &[Code::InvalidArgument],
    )?;
    let mut wrong = client(addr, Some(&secrets.wrong_token)).await;
    expect(
        "wrong token",
        wrong.get_flight_info(path.clone()).await.map(drop),
        &[Code::Unauthenticated],
    )?;
    let mut anonymous = client(addr, None).await;
    expect(
        "no token",
        anonymous.list_flights("").await.map(drop),
        &[Code::Unauthenticated],
    )?;

    // CancelFlightInfo of a staged run nobody reads.
    let staged = a
        .get_flight_info(path)
        .await
        .map_err(|e| format!("GetFlightInfo: {e}"))?;
    let cancelled = a
        .cancel_flight_info(CancelFlightInfoRequest { info: Some(staged) })
        .await
        .map_err(|e| format!("CancelFlightInfo: {e}"))?;
    if cancelled.status != CancelStatus::Cancelled as i32 {
        return Err(format!("CancelFlightInfo: {cancelled:?}"));
    }
    Ok(())
}

/// The log's colours (ANSI escape sequences) removed, so they cannot split a secret.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads every endpoint of `info`; the rows read.
async fn read_rows(client: &mut FlightClient, info: &FlightInfo) -> Result<usize, String> {
    let mut rows = 0;
    for endpoint in &info.endpoint {
        let ticket = endpoint.ticket.clone().ok_or("endpoint without a ticket")?;
        let batches: Vec<RecordBatch> = client
            .do_get(ticket)
            .await
            .map_err(|e| format!("DoGet: {e}"))?
            .try_collect()
            .await
            .map_err(|e| format!("DoGet stream: {e}"))?;
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    Ok(rows)
}

async fn do_get_all(client: &mut FlightClient, ticket: Ticket) -> Result<(), FlightError> {
    let _: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
    Ok(())
}
