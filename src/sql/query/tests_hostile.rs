//! The hostile list of issue 13, the round trip of rendering, the size limit and deep nesting.
//! The list's inputs are also the seeds of `fuzz/corpus/sql_validate/` (a test keeps them equal;
//! `cargo test --lib sql::query -- --ignored write_sql_validate_corpus` rewrites them).

use std::path::{Path, PathBuf};

use super::*;

/// (corpus file name, input). Every one is refused, or accepted only with a rendering that reads
/// back the same (checked by `hostile_inputs_are_refused_or_render_safely`).
const HOSTILE: &[(&str, &str)] = &[
    ("comment_hides_drop", "SELECT 1; -- x\nDROP TABLE t"),
    (
        "block_comment_hides_delete",
        "SELECT 1 /* ; */; DELETE FROM t",
    ),
    ("two_selects", "SELECT 1; SELECT 2"),
    (
        "trailing_statement_in_comment",
        "SELECT 1 -- ; DROP TABLE t",
    ),
    ("select_into", "SELECT * INTO t2 FROM t"),
    ("select_into_temp", "SELECT a INTO TEMP t2 FROM t"),
    (
        "cte_delete",
        "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
    ),
    (
        "cte_insert",
        "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
    ),
    (
        "cte_update",
        "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
    ),
    ("for_update", "SELECT * FROM t FOR UPDATE"),
    (
        "with_then_insert",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    ),
    ("insert", "INSERT INTO t VALUES (1)"),
    ("update", "UPDATE t SET a = 1"),
    ("delete", "DELETE FROM t"),
    (
        "merge",
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
    ),
    ("create_table_as", "CREATE TABLE t2 AS SELECT * FROM t"),
    ("drop_table", "DROP TABLE t"),
    ("alter_table", "ALTER TABLE t ADD COLUMN c INT"),
    ("grant", "GRANT SELECT ON t TO PUBLIC"),
    ("call", "CALL p()"),
    (
        "unload",
        "UNLOAD ('SELECT 1') TO 's3://b/p' IAM_ROLE 'arn:aws:iam::1:role/r'",
    ),
    (
        "copy",
        "COPY t FROM 's3://b/p' IAM_ROLE 'arn:aws:iam::1:role/r'",
    ),
    ("set", "SET search_path TO evil"),
    ("show", "SHOW search_path"),
    ("truncate", "TRUNCATE t"),
    ("explain", "EXPLAIN SELECT 1"),
    ("begin", "BEGIN"),
    (
        "pg_terminate_backend",
        "SELECT pg_terminate_backend(pid) FROM stv_sessions",
    ),
    ("pg_cancel_backend", "SELECT pg_cancel_backend(42)"),
    (
        "set_config",
        "SELECT set_config('search_path', 'evil', false)",
    ),
    (
        "pg_sleep_nested",
        "SELECT count(*) FROM t WHERE a = (SELECT pg_sleep(10))",
    ),
    ("pg_sleep_window", "SELECT sum(pg_sleep(1)) OVER () FROM t"),
    ("pg_sleep_qualified", "SELECT pg_catalog.pg_sleep(1)"),
    ("pg_sleep_quoted", "SELECT \"pg_sleep\"(1)"),
    (
        "pg_sleep_in_cte",
        "WITH c AS (SELECT pg_sleep(1)) SELECT * FROM c",
    ),
    ("pg_sleep_table_function", "SELECT * FROM pg_sleep(1)"),
    ("pg_read_file", "SELECT pg_read_file('/etc/passwd')"),
    ("lo_import", "SELECT lo_import('/etc/passwd')"),
    (
        "dblink",
        "SELECT * FROM t WHERE a IN (SELECT dblink('host=x', 'DROP TABLE t'))",
    ),
    ("nextval", "SELECT nextval('s')"),
    ("setval", "SELECT setval('s', 1)"),
    ("user_function", "SELECT public.f_delete_everything()"),
    ("backslash_escaped_quote", r"SELECT 'a\'; DROP TABLE t; --'"),
    (
        "backslash_at_end",
        r"SELECT 'x\\' AS a, ' ; DROP TABLE t; --'",
    ),
    (
        "backslash_before_quote",
        r"SELECT 'x\\''; DROP TABLE t; --'",
    ),
    ("doubled_quotes_run", "SELECT 'a''''b'"),
    (
        "quote_injection",
        "SELECT * FROM t WHERE name = 'x'' OR ''1''=''1'",
    ),
    ("escape_string", r"SELECT E'\x27; DROP TABLE t; --'"),
    ("dollar_quoted", "SELECT $$'; DROP TABLE t; --$$"),
    ("dollar_tagged", "SELECT $tag$x$tag$"),
    ("national_string", "SELECT N'x'"),
    ("hex_string", "SELECT X'27'"),
    ("hex_number", "SELECT 0x27"),
    ("byte_string", "SELECT B'0101'"),
    ("unicode_string", r"SELECT U&'\0027'"),
    ("long_number", "SELECT 12L"),
    ("nul_in_literal", "SELECT 'a\0b'"),
    ("nul_in_identifier", "SELECT \"a\0b\" FROM t"),
    (
        "quoted_ident_injection",
        "SELECT * FROM \"t\"\";DROP TABLE x;--\"",
    ),
    ("quoted_ident_doubled_run", "SELECT \"a\"\"\"\"b\" FROM t"),
    (
        "quoted_ident_backslash",
        "SELECT \"x\\\"\" ; DROP TABLE y; --\" FROM t",
    ),
    ("bracket_ident", "SELECT [a] FROM t"),
    ("placeholder", "SELECT * FROM t WHERE a = $1"),
    ("three_part_name", "SELECT * FROM otherdb.public.t"),
    (
        "semicolon_in_literal",
        "SELECT ';' AS a, '--' AS b, '/*' AS c",
    ),
    (
        "comment_tricks",
        "SELECT 1 /* nested /* comment */ still */ AS a",
    ),
    ("empty", ""),
    ("only_semicolons", ";;"),
    ("only_comment", "-- nothing here"),
    (
        "deep_parentheses",
        "SELECT ((((((((((((((((((((((((((((((((((((((((((((((((((((\
         1))))))))))))))))))))))))))))))))))))))))))))))))))))",
    ),
    (
        "deep_subqueries",
        "SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM \
         (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM \
         (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM \
         (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM \
         (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM \
         (SELECT * FROM t) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) a) \
         a) a) a) a",
    ),
];

/// The 1 MB input of the hostile list: a `1+1+...` chain just under the default limit, so it is
/// parsed (in a loop, as deep as it is long) and must be refused for its depth, not crash.
fn one_megabyte_chain() -> String {
    let mut text = "SELECT 1".to_string();
    while text.len() + 2 <= 1_000_000 {
        text.push_str("+1");
    }
    text
}

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sql_validate")
}

fn corpus() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = HOSTILE
        .iter()
        .map(|(name, sql)| (name.to_string(), sql.to_string()))
        .collect();
    all.push(("one_megabyte_chain".to_string(), one_megabyte_chain()));
    all
}

/// Panics unless `sql` is refused, or accepted with a rendering that is one statement parsing
/// to the same AST as `sql` and validating to itself.
fn assert_refused_or_round_trips(sql: &str) -> Option<ValidatedQuery> {
    let policy = QueryPolicy::new();
    let query = validate(sql, &policy).ok()?;
    let rendered = query.sql().to_string();
    let original = parse(sql).expect("accepted, so it parses");
    let again = parse(&rendered).unwrap_or_else(|e| panic!("{sql:?} -> {rendered:?}: {e}"));
    assert_eq!(again.len(), 1, "{sql:?} -> {rendered:?}");
    assert_eq!(original, again, "{sql:?} -> {rendered:?}");
    let twice = validate(&rendered, &policy).unwrap_or_else(|e| panic!("{rendered:?}: {e}"));
    assert_eq!(twice.sql().as_str(), rendered);
    assert_eq!(twice.relations(), query.relations());
    Some(query)
}

#[test]
fn hostile_inputs_are_refused_or_render_safely() {
    for (name, sql) in corpus() {
        if let Some(q) = assert_refused_or_round_trips(&sql) {
            // The only ones accepted: quote games whose rendering is a harmless literal or name.
            assert!(
                [
                    "backslash_escaped_quote",
                    "quote_injection",
                    "quoted_ident_injection",
                    "semicolon_in_literal",
                    "comment_tricks",
                    "trailing_statement_in_comment",
                ]
                .contains(&name.as_str()),
                "{name} accepted as {}",
                q.sql()
            );
        }
    }
}

fn refusal(sql: &str) -> QueryError {
    validate(sql, &QueryPolicy::new()).expect_err(sql)
}

#[test]
fn several_statements_are_counted_whatever_comments_hide() {
    for (sql, count) in [
        ("SELECT 1; -- x\nDROP TABLE t", 2),
        ("SELECT 1 /* ; */; DELETE FROM t", 2),
        ("SELECT 1; SELECT 2; SELECT 3", 3),
        ("", 0),
        (";;", 0),
        ("  -- nothing\n /* at all */ ", 0),
    ] {
        assert_eq!(
            refusal(sql),
            QueryError::NotOneStatement { count },
            "{sql:?}"
        );
    }
    // A trailing semicolon ends the one statement; a comment hides nothing that runs.
    assert!(validate("SELECT 1;", &QueryPolicy::new()).is_ok());
    assert_eq!(
        validate("SELECT 1 -- ; DROP TABLE t", &QueryPolicy::new())
            .unwrap()
            .sql()
            .as_str(),
        "SELECT 1"
    );
}

#[test]
fn statements_that_are_not_queries_are_named() {
    for (sql, statement) in [
        ("SELECT * INTO t2 FROM t", "SELECT ... INTO"),
        ("SELECT a INTO TEMP t2 FROM t", "SELECT ... INTO"),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "DELETE",
        ),
        (
            "WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i",
            "INSERT",
        ),
        (
            "WITH u AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM u",
            "UPDATE",
        ),
        ("INSERT INTO t VALUES (1)", "INSERT"),
        (
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            "INSERT",
        ),
        ("WITH x AS (SELECT 1) DELETE FROM t", "DELETE"),
        ("INSERT INTO t SELECT * FROM u", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("/* hi */ DELETE FROM t", "DELETE"),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE",
        ),
        ("CREATE TABLE t2 AS SELECT * FROM t", "CREATE TABLE"),
        (
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW",
        ),
        ("DROP TABLE t", "DROP TABLE"),
        ("ALTER TABLE t ADD COLUMN c INT", "ALTER TABLE"),
        ("GRANT SELECT ON t TO PUBLIC", "GRANT"),
        ("CALL p()", "CALL"),
        ("UNLOAD ('SELECT 1') TO 's3://b/p' IAM_ROLE 'r'", "UNLOAD"),
        ("COPY t FROM 's3://b/p' IAM_ROLE 'r'", "COPY"),
        ("SET search_path TO evil", "SET"),
        ("SHOW search_path", "SHOW"),
        ("TRUNCATE t", "TRUNCATE"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("BEGIN", "BEGIN"),
    ] {
        assert_eq!(
            refusal(sql),
            QueryError::NotReadOnly {
                statement: statement.to_string()
            },
            "{sql}"
        );
    }
    // The Redshift dialect does not even parse a locking clause.
    assert!(matches!(
        refusal("SELECT * FROM t FOR UPDATE"),
        QueryError::Parse { .. } | QueryError::NotReadOnly { .. }
    ));
}

#[test]
fn literal_and_identifier_games_are_refused() {
    for sql in [
        r"SELECT 'x\\' AS a, ' ; DROP TABLE t; --'",
        r"SELECT 'x\\''; DROP TABLE t; --'",
        r"SELECT 'a\\b'",
        "SELECT 'a''''b'",
        "SELECT $$'; DROP TABLE t; --$$",
        "SELECT N'x'",
        "SELECT X'27'",
        "SELECT 0x27",
        "SELECT B'0101'",
        "SELECT 12L",
        "SELECT 'a\0b'",
        "SELECT \"a\0b\" FROM t",
        "SELECT \"a\"\"\"\"b\" FROM t",
        "SELECT [a] FROM t",
        "SELECT * FROM t WHERE a = $1",
        "SELECT * FROM otherdb.public.t",
        "SELECT TRY_CAST(a AS INT) FROM t",
        "SELECT a FROM t LIMIT 1, 2",
        "SELECT a::int[] FROM t",
        "SELECT * FROM t TABLESAMPLE BERNOULLI (10)",
    ] {
        assert!(
            matches!(
                refusal(sql),
                QueryError::Unsupported { .. } | QueryError::Parse { .. }
            ),
            "{sql:?}"
        );
    }
    assert!(matches!(
        refusal("SELECT 'a\0b'"),
        QueryError::Unsupported { what } if what.contains("NUL")
    ));
    assert!(matches!(
        refusal("SELECT \"a\0b\" FROM t"),
        QueryError::Unsupported { what } if what.contains("NUL")
    ));
    assert!(matches!(
        refusal(r"SELECT 'a\\b'"),
        QueryError::Unsupported { what } if what.contains("CHR(92)")
    ));
    assert!(matches!(
        refusal("SELECT 'a''''b'"),
        QueryError::Unsupported { what } if what.contains("CHR(39)")
    ));
    assert!(matches!(
        refusal("SELECT \"a\"\"\"\"b\" FROM t"),
        QueryError::Unsupported { what } if what.contains("two double quotes")
    ));
}

/// Inputs made of payloads (quotes, backslashes, comments, semicolons, dollars, NUL, non-ASCII)
/// in literal and identifier positions: whatever is accepted renders to itself.
#[test]
fn rendering_round_trips_for_generated_hostile_inputs() {
    let payloads = [
        "",
        "'",
        "''",
        "'''",
        "\\",
        "\\'",
        "\\\\",
        "\"",
        "\"\"",
        "\\\"",
        ";",
        "; DROP TABLE t; --",
        "--",
        "/*",
        "*/",
        "$$",
        "$1",
        "\n",
        "\r\n",
        "\t",
        "é",
        "\u{2028}",
        "\0",
        "E'",
        "%",
        "_",
        "?",
        ":",
        "::",
        "[",
        "]",
        "`",
        "\u{feff}",
    ];
    let mut accepted = 0;
    let mut total = 0;
    for a in payloads {
        for b in payloads {
            let text = format!("x{a}{b}y");
            let doubled = text.replace('\'', "''");
            let dq = text.replace('"', "\"\"");
            let backslashed = text.replace('\\', "\\\\").replace('\'', "\\'");
            for sql in [
                format!("SELECT '{doubled}'"),
                format!("SELECT '{backslashed}' AS v FROM t WHERE c = '{doubled}'"),
                format!("SELECT '{text}'"),
                format!("SELECT \"{dq}\" FROM \"{dq}\".\"{dq}\""),
                format!("SELECT 1 AS \"{dq}\", c::varchar(5) FROM t -- {text}"),
                format!("SELECT {text} FROM t"),
                format!("SELECT * FROM t WHERE a IN ('{doubled}', 1) /* {text} */"),
                format!("SELECT c.arr[0].\"{dq}\" FROM c"),
            ] {
                total += 1;
                if assert_refused_or_round_trips(&sql).is_some() {
                    accepted += 1;
                }
            }
        }
    }
    // The set exercises both sides: most are accepted, the backslash and NUL games are not.
    assert!(
        accepted > total / 2 && accepted < total,
        "{accepted} of {total}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Random text over SQL's special characters, alone and inside a literal and a name: never a
    /// panic, and whatever is accepted renders to itself.
    #[test]
    fn random_text_is_refused_or_round_trips(
        text in r#"[a-c1 '"\\;$\-/*().,:\[\]eExXN&|%@#~!<>=+\n\x00é]{0,40}"#,
    ) {
        assert_refused_or_round_trips(&text);
        assert_refused_or_round_trips(&format!("SELECT {text}"));
        assert_refused_or_round_trips(&format!("SELECT a FROM t WHERE b = '{text}'"));
        assert_refused_or_round_trips(&format!("SELECT \"{text}\" FROM t"));
    }
}

#[test]
fn the_size_limit_applies_before_parsing_on_both_sides() {
    const MIB: usize = 1 << 20;
    let policy = QueryPolicy::new();
    let mut text = "SELECT a FROM t WHERE a IN (0".to_string();
    let mut i = 1;
    while text.len() < MIB - 16 {
        text.push_str(&format!(",{i}"));
        i += 1;
    }
    text.push(')');
    let exact = text.clone() + &" ".repeat(MIB - text.len());
    assert_eq!(exact.len(), MIB);
    let q = validate(&exact, &policy).expect("a 1 MiB query is accepted");
    assert_eq!(
        q.relations(),
        [Relation {
            schema: None,
            name: "t".to_string()
        }]
    );
    let over = format!("{exact} ");
    assert_eq!(
        validate(&over, &policy).unwrap_err(),
        QueryError::TooLong {
            bytes: MIB + 1,
            limit: MIB
        }
    );
    // Checked before parsing: 64 MiB of unbalanced parentheses is refused at once.
    let garbage = "(".repeat(64 * MIB);
    assert!(matches!(
        validate(&garbage, &policy),
        Err(QueryError::TooLong { .. })
    ));
    let small = QueryPolicy::new().with_max_bytes(8);
    assert!(validate("SELECT 1", &small).is_ok());
    assert!(matches!(
        validate("SELECT 12", &small),
        Err(QueryError::TooLong { bytes: 9, limit: 8 })
    ));
}

/// Deep inputs are errors, never a stack overflow, for a caller on a normal 2 MiB stack (a tokio
/// worker's, a test's).
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let run = || {
        let policy = QueryPolicy::new();
        let deep = |prefix: &str, unit: &str, suffix: &str, n: usize| {
            format!("{prefix}{}{suffix}", unit.repeat(n))
        };
        let cases = [
            one_megabyte_chain(),
            deep("SELECT ", "(", "1", 100_000) + &")".repeat(100_000),
            deep("SELECT 1", " UNION SELECT 1", "", 60_000),
            deep("SELECT 1", "::int", "", 150_000),
            deep("SELECT a", " IS NULL", "", 100_000),
            deep("SELECT 1 FROM t WHERE a = 1", " OR a = 1", "", 90_000),
            deep("SELECT ", "- ", "1", 300_000),
            deep("SELECT ", "NOT ", "true", 200_000),
            deep("SELECT ", "lower(", "'x'", 100_000) + &")".repeat(100_000),
            deep("SELECT ", "(SELECT ", "1", 50_000) + &")".repeat(50_000),
            deep("SELECT * FROM ", "(", "t", 100_000) + &")".repeat(100_000),
            deep("SELECT ", "CASE WHEN true THEN ", "1", 40_000) + &" END".repeat(40_000),
        ];
        for sql in &cases {
            assert!(sql.len() <= 1 << 20, "{}", sql.len());
            assert!(validate(sql, &policy).is_err(), "{}...", &sql[..40]);
        }
        // Long but flat (a list in the AST): accepted or not, no crash.
        for sql in [
            deep("SELECT a", "[1]", "", 200_000),
            deep("SELECT a", ".b", "", 200_000),
            deep("SELECT 1 FROM t WHERE a IN (1", ", 1", ")", 200_000),
        ] {
            let _ = validate(&sql, &policy);
        }
        // Both sides of the nesting limit.
        let chain = |n: usize| deep("SELECT 1", "+1", "", n);
        assert!(validate(&chain(MAX_NESTING - 10), &policy).is_ok());
        assert!(matches!(
            validate(&chain(MAX_NESTING), &policy),
            Err(QueryError::Unsupported { what }) if what.contains("nested")
        ));
    };
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn the_fuzz_corpus_holds_the_hostile_list() {
    for (name, sql) in corpus() {
        let path = corpus_dir().join(&name);
        let stored = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run the ignored write_sql_validate_corpus)",
                path.display()
            )
        });
        assert!(
            stored == sql.as_bytes(),
            "{} differs from the list",
            path.display()
        );
    }
}

#[test]
#[ignore = "writes fuzz/corpus/sql_validate/"]
fn write_sql_validate_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, sql) in corpus() {
        std::fs::write(corpus_dir().join(name), sql).unwrap();
    }
}
