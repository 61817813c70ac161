//! `CREATE USER` and `ALTER USER`, which the emulator runs itself against its in-memory users
//! ([`crate::users`]) instead of forwarding them: the backend PostgreSQL's roles play no part in
//! logins to the emulator.
//!
//! ```text
//! CREATE USER name [WITH] PASSWORD { 'password' | 'md5<hex of md5(password || name)>' | DISABLE }
//!     [ CREATEUSER | NOCREATEUSER ]
//! ALTER USER name [WITH] { PASSWORD { 'password' | 'md5...' | DISABLE } | CREATEUSER | NOCREATEUSER } [...]
//! ```
//!
//! Unquoted names are lower-cased, as on Redshift. Other options (VALID UNTIL, CONNECTION LIMIT,
//! SESSION TIMEOUT, IN GROUP, ...) are refused with 0A000. The statements take effect at once,
//! also inside a transaction (a ROLLBACK does not undo them).
//!
//! May import: `crate::sql`, `crate::users`, `crate::config`, `crate::error`.

use crate::config::Secret;
use crate::error::StatementError;
use crate::sql::{Token, TokenKind, tokenize};
use crate::users::NewPassword;

/// A parsed user statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserStatement {
    /// CREATE (true) or ALTER.
    pub(crate) create: bool,
    /// The user.
    pub(crate) name: String,
    /// `PASSWORD ...`.
    pub(crate) password: Option<NewPassword>,
    /// `CREATEUSER` (true) / `NOCREATEUSER` (false).
    pub(crate) superuser: Option<bool>,
}

impl UserStatement {
    /// The command tag.
    pub(crate) fn tag(&self) -> &'static str {
        if self.create {
            "CREATE USER"
        } else {
            "ALTER USER"
        }
    }
}

fn syntax(near: &str) -> StatementError {
    StatementError::Syntax(format!("syntax error at or near \"{near}\""))
}

/// The value of a string literal token: `'...'` (`''` and `\'`, `\\` undone), `E'...'`,
/// `$tag$...$tag$`.
fn string_value(text: &str) -> String {
    if let Some(rest) = text.strip_prefix('$') {
        let tag_end = rest.find('$').map_or(0, |i| i + 2);
        return text[tag_end..text.len() - tag_end].to_owned();
    }
    let body = text.trim_start_matches(['E', 'e']);
    let body = &body[1..body.len() - 1];
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\'', Some('\'')) | ('\\', Some('\'')) | ('\\', Some('\\')) => {
                out.push(chars.next().unwrap_or(c));
            }
            _ => out.push(c),
        }
    }
    out
}

fn identifier(token: &Token, src: &str) -> Result<String, StatementError> {
    let text = token.text(src);
    match token.kind {
        TokenKind::Word => Ok(text.to_lowercase()),
        TokenKind::QuotedIdent => Ok(text[1..text.len() - 1].replace("\"\"", "\"")),
        _ => Err(syntax(text)),
    }
}

/// True if `tokens` start a statement the emulator handles here (`CREATE USER`, `ALTER USER`;
/// not PostgreSQL's `CREATE USER MAPPING`).
pub(crate) fn is_user_statement(src: &str, tokens: &[Token]) -> bool {
    let word = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.is_word(src, w));
    (word(0, "create") || word(0, "alter")) && word(1, "user") && !word(2, "mapping")
}

/// Parses a `CREATE USER` / `ALTER USER` statement.
pub(crate) fn parse_user_statement(src: &str) -> Result<UserStatement, StatementError> {
    let tokens: Vec<Token> = tokenize(src)
        .map_err(|e| StatementError::Syntax(e.to_string()))?
        .into_iter()
        .filter(|t| t.kind != TokenKind::Semicolon)
        .collect();
    if !is_user_statement(src, &tokens) {
        return Err(syntax(tokens.first().map_or("", |t| t.text(src))));
    }
    let create = tokens[0].is_word(src, "create");
    let name = match tokens.get(2) {
        Some(t) => identifier(t, src)?,
        None => {
            return Err(StatementError::Syntax(
                "syntax error at end of input".into(),
            ));
        }
    };
    let mut statement = UserStatement {
        create,
        name,
        password: None,
        superuser: None,
    };
    let mut i = 3;
    if tokens.get(i).is_some_and(|t| t.is_word(src, "with")) {
        i += 1;
    }
    while let Some(token) = tokens.get(i) {
        let text = token.text(src);
        if token.is_word(src, "password") && statement.password.is_none() {
            let value = tokens
                .get(i + 1)
                .ok_or_else(|| StatementError::Syntax("syntax error at end of input".to_owned()))?;
            statement.password = Some(match value.kind {
                TokenKind::Word if value.is_word(src, "disable") => NewPassword::Disable,
                TokenKind::String => {
                    let clear = string_value(value.text(src));
                    match clear.strip_prefix("md5") {
                        Some(hash)
                            if hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            NewPassword::Md5(hash.to_owned())
                        }
                        _ if clear.starts_with("sha256|") => {
                            return Err(StatementError::coded(
                                "0A000",
                                "the Redshift emulator does not support sha256| passwords",
                            ));
                        }
                        _ => NewPassword::Clear(Secret::new(clear)),
                    }
                }
                _ => return Err(syntax(value.text(src))),
            });
            i += 2;
        } else if token.is_word(src, "createuser") && statement.superuser.is_none() {
            statement.superuser = Some(true);
            i += 1;
        } else if token.is_word(src, "nocreateuser") && statement.superuser.is_none() {
            statement.superuser = Some(false);
            i += 1;
        } else if token.kind == TokenKind::Word {
            return Err(StatementError::coded(
                "0A000",
                format!(
                    "the Redshift emulator does not support the {} USER option {}",
                    if create { "CREATE" } else { "ALTER" },
                    text.to_uppercase()
                ),
            ));
        } else {
            return Err(syntax(text));
        }
    }
    if create && statement.password.is_none() {
        return Err(StatementError::Syntax(
            "CREATE USER needs PASSWORD { 'password' | DISABLE }".to_owned(),
        ));
    }
    if !create && statement.password.is_none() && statement.superuser.is_none() {
        return Err(StatementError::Syntax(
            "syntax error at end of input".to_owned(),
        ));
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> UserStatement {
        parse_user_statement(sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn alter_and_create() {
        let st = parse("ALTER USER \"AwsUser\" WITH PASSWORD 'It''s-Passw0rd';");
        assert_eq!(st.name, "AwsUser");
        assert_eq!(st.tag(), "ALTER USER");
        assert_eq!(
            st.password,
            Some(NewPassword::Clear(Secret::new("It's-Passw0rd")))
        );
        let st = parse("alter user Bob password disable createuser");
        assert_eq!(
            (st.name.as_str(), st.password, st.superuser),
            ("bob", Some(NewPassword::Disable), Some(true))
        );
        let st =
            parse("CREATE USER carol PASSWORD 'md5ABCDEF0123456789abcdef0123456789' NOCREATEUSER");
        assert!(st.create);
        assert_eq!(
            st.password,
            Some(NewPassword::Md5("ABCDEF0123456789abcdef0123456789".into()))
        );
        assert_eq!(st.superuser, Some(false));
        let st = parse("create user d with password $$Dollar-Passw0rd$$");
        assert_eq!(
            st.password,
            Some(NewPassword::Clear(Secret::new("Dollar-Passw0rd")))
        );
    }

    #[test]
    fn refusals() {
        for (sql, code) in [
            ("create user x", "42601"),
            ("alter user x", "42601"),
            ("alter user x password", "42601"),
            (
                "alter user x password 'A-b0cdefgh' valid until '2030-01-01'",
                "0A000",
            ),
            ("create user x password 'sha256|abc'", "0A000"),
            ("alter user x password 5", "42601"),
        ] {
            let err = parse_user_statement(sql).unwrap_err();
            assert_eq!(err.into_error_info().code, code, "{sql}");
        }
    }

    #[test]
    fn recognises_only_user_statements() {
        let check = |sql: &str| is_user_statement(sql, &tokenize(sql).unwrap());
        assert!(check("ALTER USER x PASSWORD 'y'"));
        assert!(check("/* c */ create user x password disable"));
        assert!(!check("create user mapping for x server s"));
        assert!(!check("alter table user_x add column y int"));
        assert!(!check("select 'alter user'"));
    }
}
