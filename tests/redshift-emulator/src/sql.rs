//! A small, quote-aware SQL lexer.
//!
//! The emulator forwards almost every statement to PostgreSQL untouched, but it has to recognise
//! the few it handles itself (`UNLOAD`, `EMULATOR ...`, `SELECT version()`), split a simple-query
//! string into statements when one of those is mixed with ordinary SQL, and find a `LIMIT` in the
//! outermost level of an UNLOAD's SELECT. All of that needs to know what is inside a string
//! literal, a quoted identifier, a dollar-quoted body or a comment, and nothing more, so this
//! lexer understands exactly that much of PostgreSQL's lexical structure.

/// The kind of one lexical token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// An unquoted identifier or keyword (letters, digits, `_`, `$`).
    Word,
    /// A number (digits with an optional fraction).
    Number,
    /// A string literal: `'...'`, `E'...'` or a dollar-quoted `$tag$...$tag$` body.
    String,
    /// A double-quoted identifier.
    QuotedIdent,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `;`
    Semicolon,
    /// `.`
    Dot,
    /// Any other punctuation or operator character.
    Other,
}

/// One token with its byte span in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// What kind of token this is.
    pub(crate) kind: TokenKind,
    /// Byte offset of the first character.
    pub(crate) start: usize,
    /// Byte offset one past the last character.
    pub(crate) end: usize,
}

impl Token {
    /// The token's text.
    pub(crate) fn text<'a>(&self, src: &'a str) -> &'a str {
        &src[self.start..self.end]
    }

    /// True if this is the unquoted word `kw`, compared case-insensitively.
    pub(crate) fn is_word(&self, src: &str, kw: &str) -> bool {
        self.kind == TokenKind::Word && self.text(src).eq_ignore_ascii_case(kw)
    }
}

/// A lexing failure: an unterminated quote or comment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} starting at byte {position} is not terminated")]
pub(crate) struct LexError {
    /// What was left open ("string literal", "quoted identifier", ...).
    pub(crate) what: &'static str,
    /// Byte offset where it starts.
    pub(crate) position: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || (c as u32) >= 0x80
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || (c as u32) >= 0x80
}

/// Splits `src` into tokens, skipping whitespace and comments.
pub(crate) fn tokenize(src: &str) -> Result<Vec<Token>, LexError> {
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let Some(c) = src[i..].chars().next() else {
            break;
        };
        let start = i;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        // -- line comment
        if src[i..].starts_with("--") {
            i = src[i..].find('\n').map_or(bytes.len(), |p| i + p + 1);
            continue;
        }
        // /* nested block comment */
        if src[i..].starts_with("/*") {
            let mut depth = 0usize;
            loop {
                if i >= bytes.len() {
                    return Err(LexError {
                        what: "block comment",
                        position: start,
                    });
                }
                if bytes[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if bytes[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            continue;
        }
        // E'...' string with backslash escapes
        if (c == 'e' || c == 'E') && bytes.get(i + 1) == Some(&b'\'') {
            i = scan_quoted(src, i + 1, b'\'', true).ok_or(LexError {
                what: "string literal",
                position: start,
            })?;
            tokens.push(Token {
                kind: TokenKind::String,
                start,
                end: i,
            });
            continue;
        }
        if is_ident_start(c) {
            i += c.len_utf8();
            while let Some(n) = src[i..].chars().next() {
                if is_ident_char(n) {
                    i += n.len_utf8();
                } else {
                    break;
                }
            }
            tokens.push(Token {
                kind: TokenKind::Word,
                start,
                end: i,
            });
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                i += 1;
            }
            tokens.push(Token {
                kind: TokenKind::Number,
                start,
                end: i,
            });
            continue;
        }
        let kind = match c {
            '\'' => {
                i = scan_quoted(src, i, b'\'', false).ok_or(LexError {
                    what: "string literal",
                    position: start,
                })?;
                TokenKind::String
            }
            '"' => {
                i = scan_quoted(src, i, b'"', false).ok_or(LexError {
                    what: "quoted identifier",
                    position: start,
                })?;
                TokenKind::QuotedIdent
            }
            '$' => {
                if let Some(tag_len) = dollar_tag_len(&src[i..]) {
                    let tag = &src[i..i + tag_len];
                    let body_start = i + tag_len;
                    let close = src[body_start..].find(tag).ok_or(LexError {
                        what: "dollar-quoted string",
                        position: start,
                    })?;
                    i = body_start + close + tag_len;
                    TokenKind::String
                } else {
                    // positional parameter `$1`
                    i += 1;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                    TokenKind::Other
                }
            }
            '(' => {
                i += 1;
                TokenKind::LParen
            }
            ')' => {
                i += 1;
                TokenKind::RParen
            }
            ';' => {
                i += 1;
                TokenKind::Semicolon
            }
            '.' => {
                i += 1;
                TokenKind::Dot
            }
            other => {
                i += other.len_utf8();
                TokenKind::Other
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    Ok(tokens)
}

/// Scans a quoted token starting at `open` (the opening quote); doubled quotes are escapes,
/// and with `backslash` a backslash escapes the next byte. Returns the offset after the close.
fn scan_quoted(src: &str, open: usize, quote: u8, backslash: bool) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut i = open + 1;
    while i < bytes.len() {
        let b = bytes[i];
        if backslash && b == b'\\' {
            i += 2;
            continue;
        }
        if b == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// If `s` starts with a dollar-quote tag (`$$` or `$tag$`), returns the tag's length.
fn dollar_tag_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('$')?;
    let mut len = 1;
    for c in rest.chars() {
        if c == '$' {
            return Some(len + 1);
        }
        let ok = if len == 1 {
            is_ident_start(c)
        } else {
            is_ident_char(c) && c != '$'
        };
        if !ok {
            return None;
        }
        len += c.len_utf8();
    }
    None
}

/// One statement of a query string: its text (without the terminating `;`) and its tokens
/// (spans relative to that text).
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// The statement text, trimmed.
    pub(crate) text: String,
}

/// Splits a simple-query string at top-level semicolons; empty statements are dropped.
pub(crate) fn split_statements(src: &str) -> Result<Vec<Statement>, LexError> {
    let tokens = tokenize(src)?;
    let mut out = Vec::new();
    let mut begin = 0;
    for t in tokens.iter().filter(|t| t.kind == TokenKind::Semicolon) {
        push_statement(&mut out, &src[begin..t.start]);
        begin = t.end;
    }
    push_statement(&mut out, &src[begin..]);
    Ok(out)
}

fn push_statement(out: &mut Vec<Statement>, text: &str) {
    // a statement made only of comments is empty too
    if tokenize(text).map(|t| t.is_empty()).unwrap_or(false) {
        return;
    }
    out.push(Statement {
        text: text.trim().to_owned(),
    });
}

/// What the emulator does with one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatementClass {
    /// `UNLOAD ...`: executed by the emulator.
    Unload,
    /// `EMULATOR ...`: a fault-knob control statement.
    Control,
    /// `CREATE USER` / `ALTER USER`: run against the emulator's own users.
    User,
    /// Anything else: forwarded to PostgreSQL with this (possibly rewritten) text.
    Forward(String),
}

/// The string `SELECT version()` reports.
pub const REDSHIFT_VERSION: &str = "PostgreSQL 8.0.2 on i686-pc-linux-gnu, compiled by GCC gcc (GCC) 3.4.2 20041017 (Red Hat 3.4.2-6.fc3), Redshift 1.0.77467";

/// Classifies a statement by its first word, rewriting calls of `version()` so they report
/// Redshift's version string, and the catalog statements and names of [`crate::catalog_sql`]. Text that does not lex is forwarded unchanged (PostgreSQL
/// produces the syntax error).
pub(crate) fn classify(text: &str) -> StatementClass {
    let Ok(tokens) = tokenize(text) else {
        return StatementClass::Forward(text.to_owned());
    };
    match tokens.first() {
        Some(t) if t.is_word(text, "unload") => StatementClass::Unload,
        Some(t) if t.is_word(text, "emulator") => StatementClass::Control,
        Some(_) if crate::user_sql::is_user_statement(text, &tokens) => StatementClass::User,
        _ => StatementClass::Forward(
            crate::catalog_sql::rewrite_statement(text, &tokens).unwrap_or_else(|| {
                crate::catalog_sql::rewrite_relations(&rewrite_version(text, &tokens))
            }),
        ),
    }
}

/// Replaces every `version()` / `pg_catalog.version()` call by a scalar subquery whose column
/// is named `version`, so `SELECT version()` keeps its column name.
fn rewrite_version(text: &str, tokens: &[Token]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        let is_call = t.is_word(text, "version")
            && tokens.get(i + 1).map(|n| n.kind) == Some(TokenKind::LParen)
            && tokens.get(i + 2).map(|n| n.kind) == Some(TokenKind::RParen);
        if is_call {
            // include a `pg_catalog.` qualifier; leave other qualified names alone
            let mut start = t.start;
            if i >= 2 && tokens[i - 1].kind == TokenKind::Dot {
                if tokens[i - 2].is_word(text, "pg_catalog") {
                    start = tokens[i - 2].start;
                } else {
                    i += 1;
                    continue;
                }
            }
            out.push_str(&text[copied..start]);
            out.push_str("(SELECT '");
            out.push_str(REDSHIFT_VERSION);
            out.push_str("'::text AS version)");
            copied = tokens[i + 2].end;
            i += 3;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// True if `select` has a `LIMIT` clause at its outermost parenthesis level.
pub(crate) fn has_outer_limit(select: &str) -> Result<bool, LexError> {
    let tokens = tokenize(select)?;
    let mut depth = 0i32;
    for t in &tokens {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth -= 1,
            TokenKind::Word if depth == 0 && t.is_word(select, "limit") => return Ok(true),
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let s = "select ';' as \"a;b\"; -- c;\n select $x$ ; $x$ /* ; /* ; */ */ ; ;select E'\\';'";
        let parts: Vec<String> = split_statements(s)
            .unwrap()
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(
            parts,
            vec![
                "select ';' as \"a;b\"".to_owned(),
                "-- c;\n select $x$ ; $x$ /* ; /* ; */ */".to_owned(),
                "select E'\\';'".to_owned(),
            ]
        );
    }

    #[test]
    fn comment_only_statement_is_dropped() {
        assert!(
            split_statements(" -- nothing\n ; /* x */")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(tokenize("select 'abc").is_err());
        assert!(tokenize("select \"abc").is_err());
        assert!(tokenize("select $a$ abc").is_err());
    }

    #[test]
    fn classifies_statements() {
        assert_eq!(
            classify("  unload ('x') to 's3://b/p'"),
            StatementClass::Unload
        );
        assert_eq!(classify("/* hi */ Emulator reset"), StatementClass::Control);
        assert_eq!(
            classify("ALTER USER awsuser PASSWORD 'x'"),
            StatementClass::User
        );
        assert_eq!(
            classify("select 1"),
            StatementClass::Forward("select 1".to_owned())
        );
    }

    #[test]
    fn rewrites_version_calls_only() {
        let StatementClass::Forward(sql) =
            classify("SELECT version(), 'version()', myschema.version()")
        else {
            panic!("not forwarded");
        };
        assert_eq!(
            sql,
            format!(
                "SELECT (SELECT '{REDSHIFT_VERSION}'::text AS version), 'version()', myschema.version()"
            )
        );
        let StatementClass::Forward(sql) = classify("select pg_catalog.version ( )") else {
            panic!("not forwarded");
        };
        assert_eq!(
            sql,
            format!("select (SELECT '{REDSHIFT_VERSION}'::text AS version)")
        );
    }

    #[test]
    fn finds_outer_limit() {
        assert!(has_outer_limit("select * from t LIMIT 5").unwrap());
        assert!(!has_outer_limit("select * from (select * from t limit 5) s").unwrap());
        assert!(!has_outer_limit("select 'limit' as \"limit\" from t").unwrap());
    }
}
