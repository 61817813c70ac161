//! UNLOAD's encryption and region options against moto: SSE-S3 by default, SSE-KMS with
//! `KMS_KEY_ID ... ENCRYPTED` on every data file and the manifest, the ENCRYPTED requirement, and
//! Redshift's errors for a bucket in another region. Needs the test bed (see `common`).

use crate::common::{Emulator, db_error, list_keys, unique};

/// The server-side encryption headers moto reports for `key`: (algorithm, KMS key id). moto
/// wants an Authorization header on a private object but does not verify signatures.
async fn encryption(emu: &Emulator, key: &str) -> (Option<String>, Option<String>) {
    let url = format!("{}/{}/{key}", emu.bed.s3_endpoint, emu.bed.bucket);
    let now = chrono::Utc::now();
    let response = reqwest::Client::new()
        .head(url)
        .header(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{}/us-east-1/s3/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature={}",
                emu.bed.access_key_id,
                now.format("%Y%m%d"),
                "0".repeat(64)
            ),
        )
        .header("x-amz-date", now.format("%Y%m%dT%H%M%SZ").to_string())
        .header("x-amz-content-sha256", "UNSIGNED-PAYLOAD")
        .send()
        .await
        .expect("HEAD");
    assert_eq!(response.status().as_u16(), 200, "{key}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        header("x-amz-server-side-encryption"),
        header("x-amz-server-side-encryption-aws-kms-key-id"),
    )
}

const SELECT: &str = "select g as n, md5(g::text) as s from generate_series(1, 3000) g";

#[tokio::test]
async fn kms_key_encrypts_every_file_and_the_manifest() {
    let emu = Emulator::start_with(|c| c.with_slices(2)).await;
    let client = emu.client().await;
    let key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let prefix = format!("{}/", unique("kms"));
    client
        .simple_query(&emu.unload(
            SELECT,
            &prefix,
            &format!("FORMAT PARQUET MANIFEST KMS_KEY_ID '{key_id}' ENCRYPTED"),
        ))
        .await
        .unwrap();
    let keys = list_keys(&emu.bed.store(), &prefix).await;
    assert!(keys.len() >= 3, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with("manifest")), "{keys:?}");
    for key in &keys {
        assert_eq!(
            encryption(&emu, key).await,
            (Some("aws:kms".to_owned()), Some(key_id.to_owned())),
            "{key}"
        );
    }

    // without KMS_KEY_ID: SSE-S3, as Redshift always does
    let prefix = format!("{}/", unique("sse_s3"));
    client
        .simple_query(&emu.unload(SELECT, &prefix, "FORMAT PARQUET MANIFEST"))
        .await
        .unwrap();
    for key in list_keys(&emu.bed.store(), &prefix).await {
        assert_eq!(
            encryption(&emu, &key).await,
            (Some("AES256".to_owned()), None),
            "{key}"
        );
    }
}

#[tokio::test]
async fn kms_key_needs_encrypted() {
    let emu = Emulator::start().await;
    let client = emu.client().await;
    let prefix = format!("{}/", unique("kms_plain"));
    let err = client
        .simple_query(&emu.unload(SELECT, &prefix, "FORMAT PARQUET KMS_KEY_ID 'k1'"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "XX000".to_owned(),
            redshift_emulator::unload::parse::KMS_KEY_NEEDS_ENCRYPTED.to_owned()
        )
    );
    assert!(list_keys(&emu.bed.store(), &prefix).await.is_empty());
}

#[tokio::test]
async fn a_bucket_in_another_region_fails_like_redshift() {
    // the cluster is in us-east-1, every bucket in eu-west-1
    let emu =
        Emulator::start_with(|c| c.with_region("us-east-1").with_bucket_region("eu-west-1")).await;
    let client = emu.client().await;
    let prefix = format!("{}/", unique("region"));
    let err = client
        .simple_query(&emu.unload(SELECT, &prefix, "FORMAT PARQUET"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err),
        (
            "XX000".to_owned(),
            format!(
                "S3ServiceException:{}",
                redshift_emulator::unload::BUCKET_IN_OTHER_REGION
            )
        )
    );
    let err = client
        .simple_query(&emu.unload(SELECT, &prefix, "FORMAT PARQUET REGION 'us-west-2'"))
        .await
        .unwrap_err();
    assert_eq!(
        db_error(&err).1,
        format!(
            "S3ServiceException:{}",
            redshift_emulator::unload::BUCKET_NEEDS_OTHER_ENDPOINT
        )
    );
    assert!(list_keys(&emu.bed.store(), &prefix).await.is_empty());
    // a failed UNLOAD counts 0, as on Redshift
    let n: i64 = client
        .query_one("select pg_last_unload_count()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    client
        .simple_query(&emu.unload(SELECT, &prefix, "FORMAT PARQUET REGION AS 'eu-west-1'"))
        .await
        .unwrap();
    assert!(!list_keys(&emu.bed.store(), &prefix).await.is_empty());
}
