"""The server's S3 credentials from AWS's own sources (issue 14), end to end: static keys, a
profile with `credential_process` (refreshed after the expiry it gave), an assume-role chain in
a profile, `s3_role_arn` with an external id, UNLOAD's `KMS_KEY_ID` and `REGION`, and
`redshift-flight check`.

Most tests run against a moto server of their own that enforces IAM (aws_support.IamMoto): the
bucket is readable only by the identities the test grants it to, so a table read through Flight
proves which credentials S3 saw. The emulator of that bed writes its UNLOADs there as a separate
IAM user (Redshift's UNLOAD role). Every read is compared row by row with PostgreSQL."""

from __future__ import annotations

import secrets
import sys
import time
from dataclasses import dataclass

import boto3
import botocore.exceptions
import pyarrow.flight as flight
import pytest

from aws_support import (
    ACCOUNT, IAM_BUCKET, IAM_PREFIX, IamMoto, allow, policy, assert_no_secret, assert_same_as_postgres, aws_env,
    iam_moto, make_table, read_table, run_command, running, server_policy, start_failure,
)
from conftest import S3_PREFIX, base_config, own_emulator
from support import app_metadata, cancel_flight, path

EXTERNAL_ID = "rsf-external-" + secrets.token_hex(8)
PROCESS_LIFETIME_S = 16


@dataclass
class IamBed:
    moto: IamMoto
    emulator: dict[str, str]  # test bed settings pointing at the bed's own emulator and moto


@pytest.fixture(scope="module")
def iam_bed(testbed, tmp_path_factory):
    """moto with IAM enforced. Users: `unloader` (the UNLOAD role: anything on the bucket),
    `weak-unloader` (an UNLOAD role without s3:PutObject), `reader` (what the server needs),
    `nodelete` (that without s3:DeleteObject), `base` (sts:AssumeRole only). Roles `rsf-chain` and
    `rsf-ext` (trusting `base`, the latter only with EXTERNAL_ID) have the server's policy. An
    emulator of the bed's own UNLOADs into it as `unloader`."""
    work = tmp_path_factory.mktemp("iam-bed")
    with iam_moto(work / "moto") as moto:
        moto.client("s3").create_bucket(Bucket=IAM_BUCKET)
        bucket = [f"arn:aws:s3:::{IAM_BUCKET}", f"arn:aws:s3:::{IAM_BUCKET}/*"]
        unloader = moto.add_user("unloader", policy(allow(["s3:*"], bucket)))
        moto.add_user("weak-unloader", policy(allow(["s3:ListBucket", "s3:GetObject"], bucket)))
        moto.add_user("reader", server_policy())
        moto.add_user("nodelete", server_policy(delete=False))
        base = moto.add_user("base", policy(allow(["sts:AssumeRole"], [f"arn:aws:iam::{ACCOUNT}:role/*"])))
        moto.add_role("rsf-chain", base.arn, server_policy())
        moto.add_role("rsf-ext", base.arn, server_policy(), external_id=EXTERNAL_ID)
        moto.enforce()
        settings = dict(
            testbed, TESTBED_S3_ENDPOINT=moto.url, TESTBED_S3_BUCKET=IAM_BUCKET,
            AWS_ACCESS_KEY_ID=unloader.access_key_id, AWS_SECRET_ACCESS_KEY=unloader.secret_access_key,
        )
        with own_emulator(settings, work / "emulator") as emulator:
            yield IamBed(moto, emulator)


def iam_config(bed: IamBed, emulator: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The server's configuration on the IAM bed (through `emulator`, default the bed's own),
    without credentials unless `extra` has them."""
    config = base_config(emulator or bed.emulator)
    config["s3_prefix"] = IAM_PREFIX
    del config["aws_access_key_id"], config["aws_secret_access_key"]
    config.update(extra)
    return config


@pytest.fixture
def table(pg, make_schema):
    schema = make_schema("awscred")
    return schema, make_table(pg, schema)


def log_of(server) -> str:
    return server.stderr_path.read_text(errors="replace")


def assert_denied(moto: IamMoto, keys) -> None:
    """`keys` cannot list the bucket: whatever reads it through the server used other ones."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        moto.client("s3", keys).list_objects_v2(Bucket=IAM_BUCKET, Prefix=IAM_PREFIX + "/")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def test_static_keys_win_over_the_environment(iam_bed, pg, table, tmp_path):
    schema, name = table
    reader, base = iam_bed.moto.users["reader"], iam_bed.moto.users["base"]
    assert_denied(iam_bed.moto, base)
    config = iam_config(iam_bed, aws_access_key_id=reader.access_key_id, aws_secret_access_key=reader.secret_access_key)
    # The environment names `base`, which may not read the bucket: the configured keys must win.
    env = aws_env(tmp_path, AWS_ACCESS_KEY_ID=base.access_key_id, AWS_SECRET_ACCESS_KEY=base.secret_access_key)
    with running(config, tmp_path / "server", env) as server:
        assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
    assert_no_secret({"server log": log_of(server)}, [reader.secret_access_key, base.secret_access_key])


CREDENTIAL_PROCESS = """\
import datetime, json, sys, time
with open(sys.argv[1], "a") as calls:
    calls.write(f"{time.time()}\\n")
expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(sys.argv[2]))
print(json.dumps({"Version": 1, "AccessKeyId": %r, "SecretAccessKey": %r,
                  "Expiration": expiry.strftime("%%Y-%%m-%%dT%%H:%%M:%%SZ")}))
"""


def test_credential_process_profile_is_run_and_run_again_after_expiry(iam_bed, pg, table, tmp_path):
    """AWS_PROFILE names a profile whose credential_process prints short-lived keys (and counts
    its runs); the region comes from the profile too (no s3_region)."""
    schema, name = table
    reader = iam_bed.moto.users["reader"]
    script, calls = tmp_path / "credentials.py", tmp_path / "calls"
    script.write_text(CREDENTIAL_PROCESS % (reader.access_key_id, reader.secret_access_key))
    (tmp_path / "config").write_text(
        "[profile rsf-process]\n"
        f'credential_process = "{sys.executable}" "{script}" "{calls}" {PROCESS_LIFETIME_S}\n'
        "region = us-east-1\n"
    )
    config = iam_config(iam_bed)
    del config["s3_region"]

    def runs() -> list[float]:
        return [float(t) for t in calls.read_text().split()] if calls.exists() else []

    with running(config, tmp_path / "server", aws_env(tmp_path, AWS_PROFILE="rsf-process")) as server:
        client = server.connect()
        assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
        first = runs()
        # It ran, and its keys were cached rather than asked for on every S3 request.
        assert 1 <= len(first) <= 3, first
        time.sleep(max(0.0, first[-1] + PROCESS_LIFETIME_S + 1 - time.time()))
        assert runs() == first  # nothing asks while the server is idle
        assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))
        later = runs()[len(first):]
    # Asked again for the second read, and not before the refresh fell due (half the lifetime).
    assert later, "credential_process was not run again after the credentials it gave expired"
    assert min(later) >= first[-1] + PROCESS_LIFETIME_S / 2, (first, later)
    assert_no_secret({"server log": log_of(server)}, [reader.secret_access_key])


def test_assume_role_chain_in_a_profile(iam_bed, pg, table, tmp_path):
    """role_arn + source_profile: the source profile's user may only assume the role; the role
    reads the bucket. STS is moto's (AWS_ENDPOINT_URL_STS)."""
    schema, name = table
    base = iam_bed.moto.users["base"]
    assert_denied(iam_bed.moto, base)
    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {base.access_key_id}\naws_secret_access_key = {base.secret_access_key}\n"
    )
    (tmp_path / "config").write_text(
        "[profile chained]\n"
        f"role_arn = {iam_bed.moto.roles['rsf-chain']}\n"
        "source_profile = base\n"
        "role_session_name = rsf-chain-test\n"
        "region = us-east-1\n"
    )
    env = aws_env(tmp_path, AWS_PROFILE="chained", AWS_ENDPOINT_URL_STS=iam_bed.moto.url)
    with running(iam_config(iam_bed), tmp_path / "server", env) as server:
        assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
    assert_no_secret({"server log": log_of(server)}, [base.secret_access_key])


def test_s3_role_arn_with_external_id(iam_bed, pg, table, tmp_path):
    """The server's own keys (`base`) may only assume `rsf-ext`, whose trust policy requires the
    external id: S3 saw the assumed role's credentials. A wrong external id is refused."""
    schema, name = table
    base = iam_bed.moto.users["base"]
    assert_denied(iam_bed.moto, base)
    config = iam_config(
        iam_bed, aws_access_key_id=base.access_key_id, aws_secret_access_key=base.secret_access_key,
        s3_role_arn=iam_bed.moto.roles["rsf-ext"], s3_role_external_id=EXTERNAL_ID,
        s3_role_session_name="rsf-e2e",
    )
    env = aws_env(tmp_path, AWS_ENDPOINT_URL_STS=iam_bed.moto.url)
    with running(config, tmp_path / "server", env) as server:
        assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
    assert_no_secret({"server log": log_of(server)}, [base.secret_access_key, EXTERNAL_ID])

    wrong = dict(config, s3_role_external_id="rsf-external-wrong")
    failure = start_failure(wrong, tmp_path / "wrong", env)
    assert failure is not None, "the server started with a role it cannot assume"
    # The message names the key (or the role). moto wraps STS errors in <Errors>, which the AWS SDK
    # does not read, so AWS's AccessDenied code itself cannot be asserted here.
    assert "s3_role_arn" in failure or iam_bed.moto.roles["rsf-ext"] in failure, failure
    assert_no_secret({"start-up error": failure}, [base.secret_access_key, EXTERNAL_ID])


# --------------------------------------------------------------------------------------------------
# redshift-flight check


def check_lines(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line and not line.startswith(" ")]


def test_check_passes_on_the_test_bed(testbed, tmp_path):
    result = run_command(base_config(testbed), tmp_path, {}, "check")
    lines = check_lines(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(lines) >= 6, lines
    assert all(line.startswith("ok ") or line == "all checks passed" for line in lines), lines
    assert lines[-1] == "all checks passed"
    assert_no_secret({"check output": result.stdout + result.stderr}, [testbed["AWS_SECRET_ACCESS_KEY"], testbed["TESTBED_REDSHIFT_PASSWORD"]])


def test_check_names_the_missing_permission(iam_bed, tmp_path):
    """Each permission removed in turn: check fails at the step that needs it, names the action and
    the resource, passes the steps before, and exits non-zero; with all of them it passes."""
    reader, nodelete = iam_bed.moto.users["reader"], iam_bed.moto.users["nodelete"]
    keys = lambda k: dict(aws_access_key_id=k.access_key_id, aws_secret_access_key=k.secret_access_key)  # noqa: E731
    prefix_arn = f"arn:aws:s3:::{IAM_BUCKET}/{IAM_PREFIX}/*"

    result = run_command(iam_config(iam_bed, **keys(reader)), tmp_path / "all", aws_env(tmp_path), "check")
    assert result.returncode == 0 and check_lines(result)[-1] == "all checks passed", result.stdout + result.stderr

    # The server's identity lacks s3:DeleteObject.
    result = run_command(iam_config(iam_bed, **keys(nodelete)), tmp_path / "nodelete", aws_env(tmp_path), "check")
    lines = check_lines(result)
    assert result.returncode != 0, result.stdout
    failed = [line for line in lines if line.startswith("FAIL")]
    assert failed and all("delete" in line.lower() for line in failed), lines
    assert any(line.startswith("ok") and "Redshift login" in line for line in lines), lines
    assert any(line.startswith("ok") and "UNLOAD" in line for line in lines), lines
    assert "s3:DeleteObject" in result.stdout and prefix_arn in result.stdout, result.stdout
    assert_no_secret({"check output": result.stdout + result.stderr}, [nodelete.secret_access_key])

    # Redshift's UNLOAD role lacks s3:PutObject (the emulator writes as `weak-unloader`).
    weak = iam_bed.moto.users["weak-unloader"]
    settings = dict(iam_bed.emulator, AWS_ACCESS_KEY_ID=weak.access_key_id, AWS_SECRET_ACCESS_KEY=weak.secret_access_key)
    with own_emulator(settings, tmp_path / "weak-emulator") as weak_emulator:
        config = iam_config(iam_bed, weak_emulator, **keys(reader))
        result = run_command(config, tmp_path / "weak", aws_env(tmp_path), "check")
    lines = check_lines(result)
    assert result.returncode != 0, result.stdout
    failed = [line for line in lines if line.startswith("FAIL")]
    assert len(failed) == 1 and "UNLOAD" in failed[0], lines
    assert "s3:PutObject" in result.stdout and prefix_arn in result.stdout and config["iam_role"] in result.stdout, result.stdout


# --------------------------------------------------------------------------------------------------
# UNLOAD options


def test_unload_kms_key_id_encrypts_the_staged_files(testbed, pg, table, tmp_path):
    schema, name = table
    endpoint = dict(endpoint_url=testbed["TESTBED_S3_ENDPOINT"], region_name=testbed["TESTBED_S3_REGION"],
                    aws_access_key_id=testbed["AWS_ACCESS_KEY_ID"], aws_secret_access_key=testbed["AWS_SECRET_ACCESS_KEY"])
    key_id = boto3.client("kms", **endpoint).create_key(Description="redshift-flight UNLOAD test")["KeyMetadata"]["KeyId"]
    s3 = boto3.client("s3", **endpoint)
    config = dict(base_config(testbed), unload_kms_key_id=key_id)
    with running(config, tmp_path / "server") as server:
        client = server.connect()
        info = client.get_flight_info(path(schema, name))
        run_id = app_metadata(info)["run_id"]
        listed = s3.list_objects_v2(Bucket=testbed["TESTBED_S3_BUCKET"], Prefix=f"{S3_PREFIX}/{run_id}/data/")
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert any(k.endswith(".parquet") for k in keys), keys
        for key in keys:
            head = s3.head_object(Bucket=testbed["TESTBED_S3_BUCKET"], Key=key)
            assert head.get("ServerSideEncryption") == "aws:kms", (key, head)
            assert head.get("SSEKMSKeyId", "").endswith(key_id), (key, head.get("SSEKMSKeyId"))
        cancel_flight(client, info)
        assert_same_as_postgres(pg, schema, name, read_table(client, schema, name))


def test_unload_region_for_a_bucket_in_another_region(testbed, pg, table, tmp_path):
    """The emulator's buckets are in eu-west-1, its cluster in us-east-1: without unload_region
    (or with a wrong one) the UNLOAD fails with a message naming unload_region; with it, exact."""
    schema, name = table
    with own_emulator(testbed, tmp_path / "emulator", "--bucket-region", "eu-west-1") as far:
        for wrong in (None, "us-west-2"):
            config = base_config(far)
            if wrong:
                config["unload_region"] = wrong
            with running(config, tmp_path / f"server-{wrong}") as server:
                with pytest.raises(flight.FlightInternalError, match="unload_region"):
                    server.connect().get_flight_info(path(schema, name))
        config = dict(base_config(far), unload_region="eu-west-1")
        with running(config, tmp_path / "server-right") as server:
            assert_same_as_postgres(pg, schema, name, read_table(server.connect(), schema, name))
        result = run_command(base_config(far), tmp_path / "check", {}, "check")
        assert result.returncode != 0 and "unload_region" in result.stdout, result.stdout
