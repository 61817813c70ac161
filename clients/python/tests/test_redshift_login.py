"""Redshift logins without a stored password (issue 14), end to end through the emulator's AWS
API double and moto's Secrets Manager: `redshift_auth = iam` on a provisioned cluster
(GetClusterCredentials, credentials that expire and are fetched again) and on Serverless
(GetCredentials), `redshift_auth = secret` with a rotation that needs no restart, clear errors
that name the key at fault, and no secret in any log, error or `check` output.

Who logged in with what is read from the emulator's `stl_connection_log` (`authenticated` /
`authentication failure` per login, `iamauthguid` = the API request that issued the temporary
credentials). Users are unique per test, since the log lives in the shared PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time

import boto3
import pyarrow.flight as flight
import pytest

from aws_support import (
    api_emulator, assert_no_secret, assert_same_as_postgres, aws_env, connection_log, emulator_sql, make_table,
    read_table, run_command, running, start_failure,
)
from conftest import base_config, own_emulator
from support import path, unique


def utcnow() -> dt.datetime:
    """Now, as stl_connection_log.recordtime writes it (UTC, no zone)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def password() -> str:
    """A password Redshift's rules accept (upper, lower, digit, 8..64 characters)."""
    return "Rsf-" + secrets.token_hex(12) + "-Aa1"


@pytest.fixture
def table(pg, make_schema):
    schema = make_schema("awslogin")
    return schema, make_table(pg, schema, rows=2000)


def login_config(emulator: dict[str, str], **login: str) -> dict[str, str]:
    """The test bed's configuration with the stored login replaced by `login`."""
    config = base_config(emulator)
    del config["redshift_user"], config["redshift_password"]
    config.update(login)
    return config


def api_env(tmp_path, api_url: str, **extra: str) -> dict:
    """The server's environment: AWS API calls to the emulator's double, trace logging (so that a
    leaked secret would show), nothing of the machine's AWS set-up."""
    settings = dict(AWS_ENDPOINT_URL_REDSHIFT=api_url, AWS_ENDPOINT_URL_REDSHIFT_SERVERLESS=api_url,
                    REDSHIFT_FLIGHT_LOG="trace")
    return aws_env(tmp_path, **dict(settings, **extra))


def assert_no_issued_password(server) -> None:
    """The answers carrying temporary passwords (DbPassword in the Query protocol's XML,
    dbPassword in Serverless JSON) never reach the log, not even at trace level. (The passwords
    themselves are random and known only to the server and the emulator.)"""
    log = server.stderr_path.read_text(errors="replace")
    assert "TRACE" in log, "the server did not log at trace level"
    for name in ("DbPassword", "dbPassword"):
        assert name not in log, f"{name} appears in the server log"


def logins(emulator: dict[str, str], user: str, since: dt.datetime | None = None) -> list[dict]:
    """`user`'s login attempts (no disconnections), oldest first."""
    return [
        r for r in connection_log(emulator, since)
        if r["username"] == user and r["event"] in ("authenticated", "authentication failure")
    ]


def test_iam_cluster_credentials_are_fetched_again_when_they_expire(testbed, pg, table, tmp_path):
    """GetClusterCredentials issues credentials that live 5 s, and the emulator closes sessions
    idle for 2 s: the second read, after both, logs in with newly issued credentials."""
    schema, name = table
    user = unique("rsf_iam")
    flags = ("--iam-credential-seconds", "5", "--idle-session-seconds", "2")
    with api_emulator(testbed, tmp_path / "emulator", *flags) as (emulator, api):
        emulator_sql(emulator, f"CREATE USER {user} PASSWORD DISABLE")
        config = login_config(emulator, redshift_auth="iam", redshift_cluster_id="testbed", redshift_user=user)
        with running(config, tmp_path / "server", api_env(tmp_path, api)) as server:
            client = server.connect()
            assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
            first = logins(emulator, f"IAM:{user}")
            time.sleep(7)  # past the credentials' expiry and the sessions' idle timeout
            assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
        attempts = logins(emulator, f"IAM:{user}")
    assert_no_issued_password(server)
    assert first and all(r["event"] == "authenticated" for r in first), first
    assert [r for r in attempts if r["event"] != "authenticated"] == [], attempts
    assert all(r["authmethod"] == "IAM" for r in attempts), attempts
    issues = {r["iamauthguid"] for r in attempts}
    assert len(issues) >= 2 and None not in issues, attempts
    later = attempts[len(first):]
    assert later and {r["iamauthguid"] for r in later}.isdisjoint({r["iamauthguid"] for r in first}), attempts


def test_iam_cluster_auto_create_and_db_groups(testbed, pg, table, tmp_path):
    """AutoCreate makes the user (login IAMA:<user>) and the sessions join the DbGroups."""
    schema, name = table
    user = unique("rsf_auto")
    with api_emulator(testbed, tmp_path / "emulator") as (emulator, api):
        config = login_config(
            emulator, redshift_auth="iam", redshift_cluster_id="testbed", redshift_user=user,
            redshift_auto_create="true", redshift_db_groups="rsf_readers",
        )
        with running(config, tmp_path / "server", api_env(tmp_path, api)) as server:
            assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
        attempts = logins(emulator, f"IAMA:{user}")
    assert attempts and all(r["event"] == "authenticated" for r in attempts), attempts
    assert all(r["db_groups"] == "rsf_readers" for r in attempts), attempts


def test_serverless_workgroup(testbed, pg, table, tmp_path):
    """Redshift Serverless GetCredentials: the user is derived from the IAM identity (IAMR:);
    `check` passes with it too."""
    schema, name = table
    user = unique("rsf_sls")
    with api_emulator(dict(testbed, TESTBED_REDSHIFT_USER=user), tmp_path / "emulator") as (emulator, api):
        config = login_config(emulator, redshift_auth="iam", redshift_workgroup="testbed-wg")
        since = utcnow()
        with running(config, tmp_path / "server", api_env(tmp_path, api)) as server:
            assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
        attempts = logins(emulator, f"IAMR:{user}", since)
        check = run_command(config, tmp_path / "check", api_env(tmp_path, api, REDSHIFT_FLIGHT_LOG="warn"), "check")
    assert check.returncode == 0 and check.stdout.rstrip().endswith("all checks passed"), check.stdout + check.stderr
    assert_no_issued_password(server)
    assert attempts and all(r["event"] == "authenticated" and r["authmethod"] == "IAM" for r in attempts), attempts
    assert all(r["iamauthguid"] for r in attempts), attempts


@pytest.fixture
def secrets_manager(testbed):
    """moto's Secrets Manager (the test bed's S3 server serves it); secrets made are deleted."""
    client = boto3.client(
        "secretsmanager", endpoint_url=testbed["TESTBED_S3_ENDPOINT"], region_name=testbed["TESTBED_S3_REGION"],
        aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"], aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"],
    )
    made: list[str] = []

    def create(username: str, pw: str) -> str:
        arn = client.create_secret(
            Name=unique("rsf/redshift"), SecretString=json.dumps({"username": username, "password": pw, "engine": "redshift"}),
        )["ARN"]
        made.append(arn)
        return arn

    client.make = create
    yield client
    for arn in made:
        client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def test_secret_rotation_needs_no_restart(testbed, pg, table, tmp_path, secrets_manager):
    """The secret's password is rotated (ALTER USER, then the secret's new value), the emulator
    closes the idle sessions: the next login fails with the cached password (28P01), the server
    reads the secret again and logs in with the new one, and the read succeeds."""
    schema, name = table
    user, old, new = unique("rsf_app"), password(), password()
    with own_emulator(testbed, tmp_path / "emulator", "--idle-session-seconds", "2") as emulator:
        emulator_sql(emulator, f"CREATE USER {user} PASSWORD '{old}'")
        arn = secrets_manager.make(user, old)
        config = login_config(emulator, redshift_auth="secret", redshift_secret_arn=arn)
        env = aws_env(tmp_path, AWS_ENDPOINT_URL_SECRETS_MANAGER=testbed["TESTBED_S3_ENDPOINT"],
                      AWS_REGION=testbed["TESTBED_S3_REGION"], REDSHIFT_FLIGHT_LOG="debug")
        with running(config, tmp_path / "server", env) as server:
            client = server.connect()
            assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
            rotated = utcnow()
            emulator_sql(emulator, f"ALTER USER {user} PASSWORD '{new}'")
            secrets_manager.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": user, "password": new}))
            time.sleep(3)  # the emulator closes the sessions idle for 2 s: the next read logs in again
            assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
        before = logins(emulator, user)
        after = logins(emulator, user, rotated)
    assert before and before[0]["event"] == "authenticated", before
    events = [r["event"] for r in after]
    assert "authentication failure" in events, after
    assert events[-1] == "authenticated" and events.index("authentication failure") < len(events) - 1, events
    assert_no_secret({"server log": server.stderr_path.read_text(errors="replace")}, [old, new])


def test_no_secret_in_logs_errors_or_check_output(testbed, pg, table, tmp_path, secrets_manager):
    """The user's password changes but the secret is not updated: the next login fails and so
    does the read, then start-up and `check` fail, naming the user and the secret. Neither the
    client's error, nor the server's trace log, nor `check` shows a password or the AWS key."""
    schema, name = table
    user, right, changed = unique("rsf_leak"), password(), password()
    with own_emulator(testbed, tmp_path / "emulator", "--idle-session-seconds", "2") as emulator:
        emulator_sql(emulator, f"CREATE USER {user} PASSWORD '{right}'")
        arn = secrets_manager.make(user, right)
        config = login_config(emulator, redshift_auth="secret", redshift_secret_arn=arn)
        env = aws_env(tmp_path, AWS_ENDPOINT_URL_SECRETS_MANAGER=testbed["TESTBED_S3_ENDPOINT"],
                      AWS_REGION=testbed["TESTBED_S3_REGION"], REDSHIFT_FLIGHT_LOG="trace")
        with running(config, tmp_path / "server", env) as server:
            client = server.connect()
            assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
            emulator_sql(emulator, f"ALTER USER {user} PASSWORD '{changed}'")
            time.sleep(3)  # the emulator closes the idle sessions: the next read must log in
            with pytest.raises(flight.FlightError) as caught:
                client.get_flight_info(path(schema, name))
        failure = start_failure(config, tmp_path / "serve", env)
        check = run_command(config, tmp_path / "check", env, "check")
    assert failure is not None, "the server started with a wrong password"
    assert user in failure and "password authentication failed" in failure, failure
    assert check.returncode != 0 and "FAIL" in check.stdout and arn in check.stdout, check.stdout
    texts = {
        "the client's error": str(caught.value), "server log": server.stderr_path.read_text(errors="replace"),
        "start-up log": failure, "check output": check.stdout + check.stderr,
    }
    assert_no_secret(texts, [right, changed, testbed["AWS_SECRET_ACCESS_KEY"]])


MISSING_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rsf-no-such-secret-AbCdEf"


@pytest.mark.parametrize("key,login", [
    ("redshift_cluster_id", {"redshift_auth": "iam", "redshift_cluster_id": "no-such-cluster", "redshift_user": "awsuser"}),
    ("redshift_workgroup", {"redshift_auth": "iam", "redshift_workgroup": "no-such-workgroup"}),
    ("redshift_secret_arn", {"redshift_auth": "secret", "redshift_secret_arn": MISSING_SECRET}),
])
def test_unknown_cluster_workgroup_or_secret_names_the_key(testbed, tmp_path, key, login):
    """Start-up and `check` fail with a message naming the key at fault and its value."""
    with api_emulator(testbed, tmp_path / "emulator") as (emulator, api):
        config = login_config(emulator, **login)
        env = api_env(tmp_path, api, AWS_ENDPOINT_URL_SECRETS_MANAGER=testbed["TESTBED_S3_ENDPOINT"],
                      AWS_REGION=testbed["TESTBED_S3_REGION"], REDSHIFT_FLIGHT_LOG="warn")
        failure = start_failure(config, tmp_path / "serve", env)
        check = run_command(config, tmp_path / "check", env, "check")
    assert failure is not None, "the server started"
    assert check.returncode != 0, check.stdout
    for text in (failure, check.stdout):
        assert key in text and login[key] in text, text
