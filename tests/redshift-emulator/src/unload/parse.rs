//! Tokenizer and parser for Redshift's `UNLOAD` statement.
//!
//! Grammar (after the Redshift UNLOAD reference), keywords case-insensitive:
//!
//! ```text
//! UNLOAD ( 'select-statement' )
//! TO 's3://bucket/prefix'
//! authorization
//! [ option [ ... ] ]
//!
//! authorization :=
//!     IAM_ROLE { DEFAULT | 'arn:aws:iam::<account>:role/<name>[,arn...]' }
//!   | ACCESS_KEY_ID 'id' SECRET_ACCESS_KEY 'secret' [ SESSION_TOKEN 'token' ]
//!   | [ WITH ] CREDENTIALS [ AS ] 'aws_iam_role=...' | 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'
//!
//! option :=
//!     [ FORMAT [ AS ] ] { PARQUET | CSV | JSON }
//!   | MANIFEST [ VERBOSE ]          | PARALLEL [ { ON | TRUE | OFF | FALSE } ]
//!   | MAXFILESIZE [ AS ] n [ MB | GB ]   | ROWGROUPSIZE [ AS ] n [ MB | GB ]
//!   | ALLOWOVERWRITE | CLEANPATH   | EXTENSION 'ext' | REGION [ AS ] 'region'
//!   | PARTITION BY ( col [, ...] ) [ INCLUDE ]
//!   | ENCRYPTED [ AUTO ] | KMS_KEY_ID 'key'
//!   | HEADER | ADDQUOTES | ESCAPE | BZIP2 | GZIP | ZSTD
//!   | DELIMITER [ AS ] 'c' | FIXEDWIDTH [ AS ] 'spec' | NULL [ AS ] 'str'
//! ```
//!
//! The quoted SELECT is a Redshift string literal: `''` and `\'` stand for a quote and `\\` for
//! a backslash (Redshift string literals process backslash escapes). Options that only make sense
//! for text formats are parsed so the emulator can reject them with a precise message.

use std::fmt;

/// A failure to parse an UNLOAD statement (SQLSTATE 42601).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnloadSyntaxError {
    /// Human-readable description, Redshift style (`syntax error at or near "x"`).
    pub message: String,
}

fn syntax_error(near: &str) -> UnloadSyntaxError {
    UnloadSyntaxError {
        message: format!("syntax error at or near \"{near}\""),
    }
}

fn error(message: impl Into<String>) -> UnloadSyntaxError {
    UnloadSyntaxError {
        message: message.into(),
    }
}

/// How UNLOAD authenticates against S3. Debug output never shows secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Authorization {
    /// `IAM_ROLE default`: the cluster's default role.
    DefaultRole,
    /// `IAM_ROLE 'arn,...'`: one role or a chain of roles.
    Roles(Vec<String>),
    /// Temporary or permanent access keys.
    AccessKeys {
        /// `ACCESS_KEY_ID`
        access_key_id: String,
        /// `SECRET_ACCESS_KEY` (secret)
        secret_access_key: String,
        /// `SESSION_TOKEN` (secret)
        session_token: Option<String>,
    },
}

impl fmt::Debug for Authorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DefaultRole => f.write_str("DefaultRole"),
            Self::Roles(r) => f.debug_tuple("Roles").field(r).finish(),
            Self::AccessKeys {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("AccessKeys")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"<redacted>")
                .field(
                    "session_token",
                    &session_token.as_ref().map(|_| "<redacted>"),
                )
                .finish(),
        }
    }
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnloadFormat {
    /// Redshift's default: pipe-delimited text.
    Text,
    /// `FORMAT AS CSV`
    Csv,
    /// `FORMAT AS JSON`
    Json,
    /// `FORMAT AS PARQUET`
    Parquet,
}

/// Which manifest to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// `MANIFEST`: the list of URLs.
    Plain,
    /// `MANIFEST VERBOSE`: URLs with sizes and record counts, the schema and totals.
    Verbose,
}

/// `ENCRYPTED` or `ENCRYPTED AUTO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypted {
    /// `ENCRYPTED`: with `KMS_KEY_ID` SSE-KMS, else SSE-S3 (the emulator has no client-side
    /// encryption, which PARQUET does not take anyway).
    Plain,
    /// `ENCRYPTED AUTO`: the bucket's default encryption (no encryption header is sent).
    Auto,
}

/// Redshift-style message when `KMS_KEY_ID` comes without `ENCRYPTED` (the emulator's wording).
pub const KMS_KEY_NEEDS_ENCRYPTED: &str = "KMS_KEY_ID can only be used with the ENCRYPTED option.";

/// An S3 destination `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix (may be empty, may end in `/`).
    pub prefix: String,
}

/// A parsed UNLOAD statement.
#[derive(Debug, Clone, PartialEq)]
pub struct UnloadStatement {
    /// The SELECT, with the literal's escapes undone.
    pub select: String,
    /// Where the files go.
    pub destination: S3Url,
    /// How to reach S3.
    pub authorization: Authorization,
    /// `FORMAT`.
    pub format: UnloadFormat,
    /// `MANIFEST [VERBOSE]`.
    pub manifest: Option<ManifestKind>,
    /// `PARALLEL` (default on).
    pub parallel: bool,
    /// `MAXFILESIZE` in bytes.
    pub max_file_size: Option<u64>,
    /// `ROWGROUPSIZE` in bytes.
    pub row_group_size: Option<u64>,
    /// `ALLOWOVERWRITE`.
    pub allow_overwrite: bool,
    /// `CLEANPATH`.
    pub clean_path: bool,
    /// `EXTENSION 'ext'`.
    pub extension: Option<String>,
    /// `REGION 'r'`: the bucket's region (default: the cluster's).
    pub region: Option<String>,
    /// `ENCRYPTED [AUTO]`.
    pub encrypted: Option<Encrypted>,
    /// `KMS_KEY_ID 'key'`: SSE-KMS with that key (requires ENCRYPTED).
    pub kms_key_id: Option<String>,
    /// `PARTITION BY (...)` columns (not supported by the emulator).
    pub partition_by: Option<Vec<String>>,
    /// Text-format-only options that were given (`HEADER`, `DELIMITER`, ...), upper case.
    pub text_options: Vec<&'static str>,
}

/// Smallest `MAXFILESIZE` Redshift accepts: 5 MB.
pub const MIN_MAX_FILE_SIZE: u64 = 5 * MB;
/// Largest `MAXFILESIZE` (and the default): 6.2 GB, i.e. 6.2 * 1024^3 bytes rounded.
pub const MAX_MAX_FILE_SIZE: u64 = 6_657_199_309;
/// Smallest `ROWGROUPSIZE`: 32 MB (also the default).
pub const MIN_ROW_GROUP_SIZE: u64 = 32 * MB;
/// Largest `ROWGROUPSIZE`: 128 MB.
pub const MAX_ROW_GROUP_SIZE: u64 = 128 * MB;
const MB: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Number(String),
    LParen,
    RParen,
    Comma,
    Semicolon,
}

impl Tok {
    fn display(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Number(w) => w.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Comma => ",".into(),
            Tok::Semicolon => ";".into(),
        }
    }
}

/// Tokenizes an UNLOAD statement; string literals are unescaped.
fn tokenize(src: &str) -> Result<Vec<Tok>, UnloadSyntaxError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            loop {
                if i >= chars.len() {
                    return Err(error("unterminated /* comment"));
                }
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(error("unterminated quoted string")),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if matches!(chars.get(i + 1), Some('\'') | Some('\\')) => {
                        s.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            out.push(Tok::Number(chars[start..i].iter().collect()));
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        } else if c == '"' {
            // a quoted identifier (only meaningful in PARTITION BY)
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(error("unterminated quoted identifier")),
                    Some('"') if chars.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&other) => {
                        s.push(other);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Word(s));
        } else {
            let tok = match c {
                '(' => Tok::LParen,
                ')' => Tok::RParen,
                ',' => Tok::Comma,
                ';' => Tok::Semicolon,
                other => return Err(syntax_error(&other.to_string())),
            };
            out.push(tok);
            i += 1;
        }
    }
    // trailing semicolons end the statement
    while out.last() == Some(&Tok::Semicolon) {
        out.pop();
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn near(&self) -> String {
        self.peek()
            .map(Tok::display)
            .unwrap_or_else(|| "end of input".to_owned())
    }

    fn unexpected(&self) -> UnloadSyntaxError {
        match self.peek() {
            Some(_) => syntax_error(&self.near()),
            None => error("syntax error at end of input"),
        }
    }

    fn peek_word(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_word(&mut self, kw: &str) -> bool {
        if self.peek_word(kw) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect_word(&mut self, kw: &str) -> Result<(), UnloadSyntaxError> {
        if self.eat_word(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), UnloadSyntaxError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect_string(&mut self) -> Result<String, UnloadSyntaxError> {
        match self.peek() {
            Some(Tok::Str(_)) => match self.next() {
                Some(Tok::Str(s)) => Ok(s),
                _ => Err(self.unexpected()),
            },
            _ => Err(self.unexpected()),
        }
    }

    /// `n [MB|GB]` in bytes; MB is the default unit.
    fn size(&mut self) -> Result<u64, UnloadSyntaxError> {
        let n = match self.next() {
            Some(Tok::Number(n)) => n,
            other => {
                self.pos -= 1;
                let _ = other;
                return Err(self.unexpected());
            }
        };
        let value: f64 = n.parse().map_err(|_| syntax_error(&n))?;
        let unit = if self.eat_word("gb") {
            1024.0 * MB as f64
        } else {
            self.eat_word("mb");
            MB as f64
        };
        Ok((value * unit).round() as u64)
    }
}

/// Options seen so far, to reject duplicates like Redshift does.
#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn once(&mut self, name: &'static str) -> Result<(), UnloadSyntaxError> {
        if self.0.contains(&name) {
            return Err(error(format!("conflicting or redundant options: {name}")));
        }
        self.0.push(name);
        Ok(())
    }
}

/// Parses one UNLOAD statement (without validating option values against each other; see
/// [`UnloadStatement::validate`]).
pub fn parse_unload(sql: &str) -> Result<UnloadStatement, UnloadSyntaxError> {
    let mut p = Parser {
        toks: tokenize(sql)?,
        pos: 0,
    };
    p.expect_word("unload")?;
    p.expect(&Tok::LParen)?;
    let select = p.expect_string()?;
    p.expect(&Tok::RParen)?;
    p.expect_word("to")?;
    let to = p.expect_string()?;
    let destination = parse_s3_url(&to)?;

    let mut st = UnloadStatement {
        select,
        destination,
        authorization: Authorization::DefaultRole,
        format: UnloadFormat::Text,
        manifest: None,
        parallel: true,
        max_file_size: None,
        row_group_size: None,
        allow_overwrite: false,
        clean_path: false,
        extension: None,
        region: None,
        encrypted: None,
        kms_key_id: None,
        partition_by: None,
        text_options: Vec::new(),
    };
    let mut seen = Seen::default();
    let mut authorization = None;

    while let Some(tok) = p.next() {
        let Tok::Word(word) = tok else {
            p.pos -= 1;
            return Err(p.unexpected());
        };
        match word.to_ascii_lowercase().as_str() {
            "iam_role" => {
                seen.once("IAM_ROLE")?;
                let auth = if p.eat_word("default") {
                    Authorization::DefaultRole
                } else {
                    Authorization::Roles(split_roles(&p.expect_string()?))
                };
                set_auth(&mut authorization, auth)?;
            }
            "access_key_id" => {
                seen.once("ACCESS_KEY_ID")?;
                let access_key_id = p.expect_string()?;
                p.expect_word("secret_access_key")?;
                let secret_access_key = p.expect_string()?;
                let session_token = if p.eat_word("session_token") {
                    Some(p.expect_string()?)
                } else {
                    None
                };
                set_auth(
                    &mut authorization,
                    Authorization::AccessKeys {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    },
                )?;
            }
            "with" => {
                p.expect_word("credentials")?;
                p.pos -= 1;
            }
            "credentials" => {
                seen.once("CREDENTIALS")?;
                p.eat_word("as");
                let auth = parse_credentials(&p.expect_string()?)?;
                set_auth(&mut authorization, auth)?;
            }
            "format" => {
                seen.once("FORMAT")?;
                p.eat_word("as");
                st.format = match p.next() {
                    Some(Tok::Word(f)) if f.eq_ignore_ascii_case("parquet") => {
                        UnloadFormat::Parquet
                    }
                    Some(Tok::Word(f)) if f.eq_ignore_ascii_case("csv") => UnloadFormat::Csv,
                    Some(Tok::Word(f)) if f.eq_ignore_ascii_case("json") => UnloadFormat::Json,
                    _ => {
                        p.pos -= 1;
                        return Err(p.unexpected());
                    }
                };
            }
            "parquet" => {
                seen.once("FORMAT")?;
                st.format = UnloadFormat::Parquet;
            }
            "csv" => {
                seen.once("FORMAT")?;
                st.format = UnloadFormat::Csv;
            }
            "json" => {
                seen.once("FORMAT")?;
                st.format = UnloadFormat::Json;
            }
            "manifest" => {
                seen.once("MANIFEST")?;
                st.manifest = Some(if p.eat_word("verbose") {
                    ManifestKind::Verbose
                } else {
                    ManifestKind::Plain
                });
            }
            "parallel" => {
                seen.once("PARALLEL")?;
                st.parallel = if p.eat_word("on") || p.eat_word("true") {
                    true
                } else {
                    !(p.eat_word("off") || p.eat_word("false"))
                };
            }
            "maxfilesize" => {
                seen.once("MAXFILESIZE")?;
                p.eat_word("as");
                st.max_file_size = Some(p.size()?);
            }
            "rowgroupsize" => {
                seen.once("ROWGROUPSIZE")?;
                p.eat_word("as");
                st.row_group_size = Some(p.size()?);
            }
            "allowoverwrite" => {
                seen.once("ALLOWOVERWRITE")?;
                st.allow_overwrite = true;
            }
            "cleanpath" => {
                seen.once("CLEANPATH")?;
                st.clean_path = true;
            }
            "extension" => {
                seen.once("EXTENSION")?;
                st.extension = Some(p.expect_string()?);
            }
            "region" => {
                seen.once("REGION")?;
                p.eat_word("as");
                st.region = Some(p.expect_string()?);
            }
            "partition" => {
                seen.once("PARTITION BY")?;
                p.expect_word("by")?;
                p.expect(&Tok::LParen)?;
                let mut cols = Vec::new();
                loop {
                    match p.next() {
                        Some(Tok::Word(c)) => cols.push(c),
                        _ => {
                            p.pos -= 1;
                            return Err(p.unexpected());
                        }
                    }
                    if p.peek() == Some(&Tok::Comma) {
                        p.pos += 1;
                        continue;
                    }
                    p.expect(&Tok::RParen)?;
                    break;
                }
                p.eat_word("include");
                st.partition_by = Some(cols);
            }
            "encrypted" => {
                seen.once("ENCRYPTED")?;
                st.encrypted = Some(if p.eat_word("auto") {
                    Encrypted::Auto
                } else {
                    Encrypted::Plain
                });
            }
            "kms_key_id" => {
                seen.once("KMS_KEY_ID")?;
                st.kms_key_id = Some(p.expect_string()?);
            }
            "header" | "addquotes" | "escape" | "bzip2" | "gzip" | "zstd" => {
                let name = text_option_name(&word);
                seen.once(name)?;
                st.text_options.push(name);
            }
            "delimiter" | "fixedwidth" | "null" => {
                let name = text_option_name(&word);
                seen.once(name)?;
                p.eat_word("as");
                p.expect_string()?;
                st.text_options.push(name);
            }
            _ => {
                p.pos -= 1;
                return Err(p.unexpected());
            }
        }
    }

    st.authorization = authorization.ok_or_else(|| {
        error("UNLOAD requires an authorization: IAM_ROLE, ACCESS_KEY_ID/SECRET_ACCESS_KEY or CREDENTIALS")
    })?;
    Ok(st)
}

fn text_option_name(word: &str) -> &'static str {
    match word.to_ascii_lowercase().as_str() {
        "header" => "HEADER",
        "addquotes" => "ADDQUOTES",
        "escape" => "ESCAPE",
        "bzip2" => "BZIP2",
        "gzip" => "GZIP",
        "zstd" => "ZSTD",
        "delimiter" => "DELIMITER",
        "fixedwidth" => "FIXEDWIDTH",
        _ => "NULL AS",
    }
}

fn set_auth(
    slot: &mut Option<Authorization>,
    auth: Authorization,
) -> Result<(), UnloadSyntaxError> {
    if slot.is_some() {
        return Err(error(
            "conflicting or redundant options: only one of IAM_ROLE, ACCESS_KEY_ID or CREDENTIALS may be given",
        ));
    }
    *slot = Some(auth);
    Ok(())
}

fn split_roles(s: &str) -> Vec<String> {
    s.split(',').map(|r| r.trim().to_owned()).collect()
}

/// Parses a `CREDENTIALS` string: `aws_iam_role=arn...` or
/// `aws_access_key_id=..;aws_secret_access_key=..[;token=..]`.
fn parse_credentials(s: &str) -> Result<Authorization, UnloadSyntaxError> {
    let mut role = None;
    let mut key = None;
    let mut secret = None;
    let mut token = None;
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| error("Invalid credentials. Must be of the format: credentials 'aws_iam_role=...' or 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_iam_role" => role = Some(v.trim().to_owned()),
            "aws_access_key_id" => key = Some(v.trim().to_owned()),
            "aws_secret_access_key" => secret = Some(v.trim().to_owned()),
            "token" => token = Some(v.trim().to_owned()),
            _ => {
                return Err(error(format!(
                    "Invalid credentials: unknown key '{}'",
                    k.trim()
                )));
            }
        }
    }
    match (role, key, secret) {
        (Some(r), None, None) if token.is_none() => Ok(Authorization::Roles(split_roles(&r))),
        (None, Some(access_key_id), Some(secret_access_key)) => Ok(Authorization::AccessKeys {
            access_key_id,
            secret_access_key,
            session_token: token,
        }),
        _ => Err(error(
            "Invalid credentials. Must be of the format: credentials 'aws_iam_role=...' or 'aws_access_key_id=...;aws_secret_access_key=...[;token=...]'",
        )),
    }
}

/// Parses `s3://bucket/prefix`.
fn parse_s3_url(url: &str) -> Result<S3Url, UnloadSyntaxError> {
    let rest = url.strip_prefix("s3://").ok_or_else(|| {
        error(format!(
            "Invalid S3 location \"{url}\": it must start with s3://"
        ))
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(error(format!(
            "Invalid S3 location \"{url}\": no bucket name"
        )));
    }
    Ok(S3Url {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
    })
}

/// True if `arn` is `arn:aws:iam::<12 digits>:role/<name>` (partition `aws`, `aws-cn`,
/// `aws-us-gov`; the name may contain a path).
pub fn is_valid_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Some(name) = resource.strip_prefix("role/") else {
        return false;
    };
    matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
}

impl UnloadStatement {
    /// Checks option values and combinations the way Redshift does before running anything.
    /// Returns the message of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if let Authorization::Roles(roles) = &self.authorization {
            for role in roles {
                if !is_valid_role_arn(role) {
                    return Err(format!(
                        "Invalid IAM Role ARN: '{role}' is not a valid IAM role ARN (expected arn:aws:iam::<account-id>:role/<role-name>)"
                    ));
                }
            }
        }
        if let Some(key) = &self.kms_key_id {
            if self.encrypted.is_none() {
                return Err(KMS_KEY_NEEDS_ENCRYPTED.to_owned());
            }
            if key.trim().is_empty() {
                return Err("KMS_KEY_ID must not be empty.".to_owned());
            }
        }
        if self.allow_overwrite && self.clean_path {
            return Err("ALLOWOVERWRITE and CLEANPATH options cannot be used together.".to_owned());
        }
        if let Some(size) = self.max_file_size
            && !(MIN_MAX_FILE_SIZE..=MAX_MAX_FILE_SIZE).contains(&size)
        {
            return Err("MAXFILESIZE must be between 5 MB and 6.2 GB.".to_owned());
        }
        if let Some(size) = self.row_group_size
            && !(MIN_ROW_GROUP_SIZE..=MAX_ROW_GROUP_SIZE).contains(&size)
        {
            return Err("ROWGROUPSIZE must be between 32 MB and 128 MB.".to_owned());
        }
        if self.format == UnloadFormat::Parquet {
            if let Some(opt) = self.text_options.first() {
                return Err(format!(
                    "{opt} option is not supported with PARQUET format."
                ));
            }
        } else {
            let name = match self.format {
                UnloadFormat::Text => "TEXT",
                UnloadFormat::Csv => "CSV",
                UnloadFormat::Json => "JSON",
                UnloadFormat::Parquet => "PARQUET",
            };
            return Err(format!(
                "The Redshift emulator only supports UNLOAD ... FORMAT AS PARQUET; {name} is not supported."
            ));
        }
        if self.partition_by.is_some() {
            return Err("The Redshift emulator does not support PARTITION BY.".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::123456789012:role/MyRedshiftRole";

    fn parse(sql: &str) -> UnloadStatement {
        match parse_unload(sql) {
            Ok(st) => st,
            Err(e) => panic!("{sql}: {e}"),
        }
    }

    #[test]
    fn minimal_statement_defaults() {
        let st = parse(&format!(
            "unload ('select * from venue') to 's3://mybucket/unload/venue_' iam_role '{ROLE}'"
        ));
        assert_eq!(st.select, "select * from venue");
        assert_eq!(
            st.destination,
            S3Url {
                bucket: "mybucket".into(),
                prefix: "unload/venue_".into()
            }
        );
        assert_eq!(st.authorization, Authorization::Roles(vec![ROLE.into()]));
        assert_eq!(st.format, UnloadFormat::Text);
        assert!(st.parallel);
        assert_eq!(st.manifest, None);
        assert_eq!(st.max_file_size, None);
    }

    #[test]
    fn all_parquet_options_case_insensitive() {
        let st = parse(
            "UnLoad ( 'select 1' )\n TO 's3://b/p/' IAM_ROLE default FORMAT as Parquet \
             manifest Verbose parallel off MAXFILESIZE as 5.5 mb ROWGROUPSIZE 64 MB \
             ALLOWOVERWRITE extension 'parq' region as 'eu-west-1' encrypted auto;",
        );
        assert_eq!(st.authorization, Authorization::DefaultRole);
        assert_eq!(st.format, UnloadFormat::Parquet);
        assert_eq!(st.manifest, Some(ManifestKind::Verbose));
        assert!(!st.parallel);
        assert_eq!(st.max_file_size, Some((5.5 * 1024.0 * 1024.0) as u64));
        assert_eq!(st.row_group_size, Some(64 * MB));
        assert!(st.allow_overwrite);
        assert!(!st.clean_path);
        assert_eq!(st.extension.as_deref(), Some("parq"));
        assert_eq!(st.region.as_deref(), Some("eu-west-1"));
        assert_eq!(st.encrypted, Some(Encrypted::Auto));
        assert_eq!(st.kms_key_id, None);
        assert_eq!(st.validate(), Ok(()));
        let st = parse(&format!(
            "unload ('select 1') to 's3://b/p' iam_role '{ROLE}' parquet \
             KMS_KEY_ID 'alias/unload' ENCRYPTED"
        ));
        assert_eq!(
            (st.encrypted, st.kms_key_id.as_deref()),
            (Some(Encrypted::Plain), Some("alias/unload"))
        );
        assert_eq!(st.validate(), Ok(()));
    }

    #[test]
    fn gb_unit_and_parallel_variants() {
        let st = parse(
            "unload ('x') to 's3://b/' iam_role default parquet maxfilesize 1 gb parallel true",
        );
        assert_eq!(st.max_file_size, Some(1024 * MB));
        assert!(st.parallel);
        let st = parse("unload ('x') to 's3://b/' iam_role default parquet parallel FALSE");
        assert!(!st.parallel);
        let st = parse("unload ('x') to 's3://b/' iam_role default parquet parallel");
        assert!(st.parallel);
    }

    #[test]
    fn doubled_and_backslash_quotes_are_undone() {
        let st = parse(
            "unload ('select \"My Col\", ''it''''s'' as s, \\'x\\' from \"S c\".\"T\" where a = ''\\\\d''') \
             to 's3://b/p' iam_role default parquet",
        );
        assert_eq!(
            st.select,
            "select \"My Col\", 'it''s' as s, 'x' from \"S c\".\"T\" where a = '\\d'"
        );
    }

    #[test]
    fn authorization_variants() {
        let st = parse(
            "unload ('x') to 's3://b/p' access_key_id 'AK' secret_access_key 'SK' session_token 'TK' parquet",
        );
        assert_eq!(
            st.authorization,
            Authorization::AccessKeys {
                access_key_id: "AK".into(),
                secret_access_key: "SK".into(),
                session_token: Some("TK".into())
            }
        );
        let dbg = format!("{:?}", st.authorization);
        assert!(!dbg.contains("SK") && !dbg.contains("TK"), "{dbg}");

        let st = parse(&format!(
            "unload ('x') to 's3://b/p' with credentials as 'aws_iam_role={ROLE},{ROLE}' parquet"
        ));
        assert_eq!(
            st.authorization,
            Authorization::Roles(vec![ROLE.into(), ROLE.into()])
        );
        let st = parse(
            "unload ('x') to 's3://b/p' credentials 'aws_access_key_id=A;aws_secret_access_key=S;token=T' parquet",
        );
        assert!(matches!(st.authorization, Authorization::AccessKeys { .. }));
    }

    #[test]
    fn chained_roles_are_validated() {
        let st = parse(&format!(
            "unload ('x') to 's3://b/p' iam_role '{ROLE},arn:aws:iam::210987654321:role/Other' parquet"
        ));
        assert_eq!(st.validate(), Ok(()));
        let st = parse(&format!(
            "unload ('x') to 's3://b/p' iam_role '{ROLE},nope' parquet"
        ));
        assert!(st.validate().unwrap_err().contains("Invalid IAM Role ARN"));
    }

    #[test]
    fn role_arn_shapes() {
        assert!(is_valid_role_arn(ROLE));
        assert!(is_valid_role_arn(
            "arn:aws:iam::123456789012:role/path/to/R_1+=,.@-"
        ));
        assert!(!is_valid_role_arn("arn:aws:iam::12345678901:role/R"));
        assert!(!is_valid_role_arn("arn:aws:iam::123456789012:user/R"));
        assert!(!is_valid_role_arn("arn:aws:s3:::bucket"));
        assert!(!is_valid_role_arn("arn:aws:iam::123456789012:role/"));
        assert!(!is_valid_role_arn("not-an-arn"));
    }

    #[test]
    fn syntax_errors() {
        let cases = [
            (
                "unload 'x' to 's3://b/p' iam_role default",
                "syntax error at or near \"'x'\"",
            ),
            (
                "unload ('x') 's3://b/p' iam_role default",
                "syntax error at or near \"'s3://b/p'\"",
            ),
            (
                "unload ('x') to 's3://b/p' iam_role default bogus",
                "syntax error at or near \"bogus\"",
            ),
            (
                "unload ('x') to 's3://b/p' iam_role default maxfilesize",
                "syntax error at end of input",
            ),
            ("unload ('x) to s3", "unterminated quoted string"),
            (
                "unload ('x') to 'http://b/p' iam_role default",
                "Invalid S3 location",
            ),
            (
                "unload ('x') to 's3://b/p'",
                "UNLOAD requires an authorization",
            ),
            (
                "unload ('x') to 's3://b/p' iam_role default parquet manifest manifest",
                "conflicting or redundant options: MANIFEST",
            ),
            (
                "unload ('x') to 's3://b/p' iam_role default access_key_id 'a' secret_access_key 'b'",
                "conflicting or redundant options",
            ),
        ];
        for (sql, want) in cases {
            let err = parse_unload(sql).expect_err(sql);
            assert!(err.message.contains(want), "{sql}: got {err}");
        }
    }

    #[test]
    fn validation_errors() {
        let base = "unload ('x') to 's3://b/p' iam_role default";
        let cases = [
            (
                "parquet allowoverwrite cleanpath",
                "ALLOWOVERWRITE and CLEANPATH options cannot be used together.",
            ),
            (
                "parquet maxfilesize 4.9 mb",
                "MAXFILESIZE must be between 5 MB and 6.2 GB.",
            ),
            (
                "parquet maxfilesize 7 gb",
                "MAXFILESIZE must be between 5 MB and 6.2 GB.",
            ),
            (
                "parquet rowgroupsize 16 mb",
                "ROWGROUPSIZE must be between 32 MB and 128 MB.",
            ),
            (
                "parquet header",
                "HEADER option is not supported with PARQUET format.",
            ),
            (
                "parquet delimiter as '|'",
                "DELIMITER option is not supported with PARQUET format.",
            ),
            ("parquet kms_key_id 'k'", KMS_KEY_NEEDS_ENCRYPTED),
            (
                "parquet kms_key_id '' encrypted",
                "KMS_KEY_ID must not be empty.",
            ),
            ("csv", "CSV is not supported"),
            ("", "TEXT is not supported"),
            (
                "parquet partition by (a, \"B c\") include",
                "does not support PARTITION BY",
            ),
        ];
        for (opts, want) in cases {
            let sql = format!("{base} {opts}");
            let err = parse(&sql).validate().expect_err(&sql);
            assert!(err.contains(want), "{sql}: got {err}");
        }
        assert_eq!(
            parse(&format!(
                "{base} parquet maxfilesize 5 mb rowgroupsize 32 mb"
            ))
            .validate(),
            Ok(())
        );
        assert_eq!(
            parse(&format!(
                "{base} parquet maxfilesize 6.2 gb rowgroupsize 128"
            ))
            .validate(),
            Ok(())
        );
    }

    #[test]
    fn comments_are_skipped() {
        let st = parse("/* c */ unload ('x') -- to nowhere\n to 's3://b' iam_role default parquet");
        assert_eq!(st.destination.prefix, "");
        assert_eq!(st.destination.bucket, "b");
    }
}
