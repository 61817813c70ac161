//! Accepted queries: their exact relation lists, rendering, outer limits, the function policy.

use super::*;

fn ok(sql: &str) -> ValidatedQuery {
    validate(sql, &QueryPolicy::new()).unwrap_or_else(|e| panic!("{sql}\nrefused: {e}"))
}

fn err(sql: &str) -> QueryError {
    match validate(sql, &QueryPolicy::new()) {
        Ok(q) => panic!("{sql}\naccepted as: {}", q.sql()),
        Err(e) => e,
    }
}

/// `"t"` or `"s.t"` (tests with dots or quotes in names build [`Relation`]s by hand).
fn rel(name: &str) -> Relation {
    match name.split_once('.') {
        Some((schema, name)) => Relation {
            schema: Some(schema.to_string()),
            name: name.to_string(),
        },
        None => Relation {
            schema: None,
            name: name.to_string(),
        },
    }
}

fn relations(sql: &str) -> Vec<Relation> {
    ok(sql).relations().to_vec()
}

fn rels(names: &[&str]) -> Vec<Relation> {
    names.iter().map(|n| rel(n)).collect()
}

#[test]
fn joins_read_every_joined_table() {
    assert_eq!(
        relations(
            "SELECT o.id, c.name FROM sales.orders o JOIN sales.customers c ON o.cust = c.id \
             LEFT JOIN public.regions r USING (region_id) CROSS JOIN dims, facts f \
             FULL OUTER JOIN sales.orders o2 ON o2.id = f.id NATURAL JOIN (x JOIN y ON x.a = y.a)"
        ),
        rels(&[
            "dims",
            "facts",
            "x",
            "y",
            "public.regions",
            "sales.customers",
            "sales.orders"
        ])
    );
}

#[test]
fn aggregates_and_unquoted_names_fold_to_lower_case() {
    let q = ok(
        "SELECT Region, COUNT(*), Sum(amount), avg(DISTINCT amount), listagg(name, ',') \
                WITHIN GROUP (ORDER BY name), median(amount), percentile_cont(0.5) WITHIN GROUP \
                (ORDER BY amount) FROM PUBLIC.Sales GROUP BY Region HAVING count(*) > 10",
    );
    assert_eq!(q.relations(), rels(&["public.sales"]));
    assert!(!q.has_outer_limit());
}

#[test]
fn cte_names_are_not_relations_but_their_bodies_are_read() {
    assert_eq!(
        relations(
            "WITH recent AS (SELECT * FROM orders WHERE ts > '2024-01-01'), \
                  big AS (SELECT * FROM recent WHERE amount > 100) \
             SELECT * FROM big JOIN customers USING (id) WHERE id IN (SELECT id FROM recent)"
        ),
        rels(&["customers", "orders"])
    );
    // A qualified name is never a CTE; a CTE is not visible before its definition (non-recursive)
    // nor outside the query that defines it; quoted and unquoted spellings fold alike.
    assert_eq!(
        relations(
            "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS one), \"C\" AS (SELECT 2) \
             SELECT * FROM a, s.a, B, \"C\", c, (WITH x AS (SELECT 1) SELECT * FROM x) sub, x"
        ),
        rels(&["b", "c", "x", "s.a"])
    );
    assert_eq!(
        relations(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) \
             SELECT n FROM r"
        ),
        Vec::<Relation>::new()
    );
}

#[test]
fn window_functions() {
    let q = ok(
        "SELECT id, row_number() OVER (PARTITION BY dept ORDER BY salary DESC NULLS LAST), \
                sum(salary) OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW), \
                lag(salary, 1) OVER (ORDER BY id), first_value(salary IGNORE NULLS) OVER \
                (PARTITION BY dept ORDER BY id ROWS BETWEEN 2 PRECEDING AND 2 FOLLOWING), \
                ratio_to_report(salary) OVER (), ntile(4) OVER (ORDER BY salary) FROM hr.emp \
                QUALIFY rank() OVER (ORDER BY salary) < 5",
    );
    assert_eq!(q.relations(), rels(&["hr.emp"]));
}

#[test]
fn set_operations_and_values() {
    assert_eq!(
        relations(
            "SELECT a FROM t1 UNION ALL SELECT a FROM t2 INTERSECT SELECT a FROM t3 \
             EXCEPT SELECT a FROM s.t4 UNION (SELECT a FROM t1 ORDER BY a LIMIT 3)"
        ),
        rels(&["t1", "t2", "t3", "s.t4"])
    );
    assert_eq!(relations("VALUES (1, 'a'), (2, 'b')"), vec![]);
    assert_eq!(
        relations("SELECT * FROM (VALUES (1), (2)) AS v(x) UNION SELECT 3"),
        vec![]
    );
}

#[test]
fn subqueries_in_where_select_from_and_lateral() {
    assert_eq!(
        relations(
            "SELECT (SELECT count(*) FROM counted) AS n, t.* FROM t \
             WHERE a IN (SELECT a FROM u) AND EXISTS (SELECT 1 FROM v WHERE v.id = t.id) \
             AND b > (SELECT max(b) FROM w) AND c = ANY (SELECT c FROM anyt) \
             AND NOT EXISTS (SELECT 1 FROM (SELECT * FROM deep.inner_t) d)"
        ),
        rels(&["anyt", "counted", "t", "u", "v", "w", "deep.inner_t"])
    );
    assert_eq!(
        relations("SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.id = t.id) l"),
        rels(&["t", "u"])
    );
}

#[test]
fn quoted_names_with_dots_and_quotes_are_kept_exactly() {
    let q =
        ok(r#"SELECT "col.x", "a""b" AS "Q""" FROM "My.Schema"."Tab""le" JOIN "UPPER" ON true"#);
    assert_eq!(
        q.relations(),
        [
            Relation {
                schema: None,
                name: "UPPER".to_string(),
            },
            Relation {
                schema: Some("My.Schema".to_string()),
                name: "Tab\"le".to_string(),
            },
        ]
    );
    assert_eq!(
        q.sql().as_str(),
        r#"SELECT "col.x", "a""b" AS "Q""" FROM "My.Schema"."Tab""le" JOIN "UPPER" ON true"#
    );
    // A name that looks like SQL is only a name.
    let q = ok(r#"SELECT * FROM "t"";DROP TABLE x;--""#);
    assert_eq!(q.relations(), rels(&["t\";DROP TABLE x;--"]));
    assert_eq!(q.sql().as_str(), r#"SELECT * FROM "t"";DROP TABLE x;--""#);
}

#[test]
fn the_sql_is_rendered_from_the_ast() {
    let q = ok("select  a -- comment\n, /* c */ b from T where x = 'it''s' and y::int > 2");
    assert_eq!(
        q.sql().as_str(),
        "SELECT a, b FROM T WHERE x = 'it''s' AND y::INT > 2"
    );
    // A backslash-escaped quote is read by the parser and rendered doubled, as Redshift reads it.
    let q = ok(r"SELECT 'a\'; DROP TABLE t; --'");
    assert_eq!(q.sql().as_str(), "SELECT 'a''; DROP TABLE t; --'");
}

#[test]
fn outer_limits() {
    for (sql, limited) in [
        ("SELECT * FROM t", false),
        ("SELECT * FROM t ORDER BY a", true),
        ("SELECT * FROM t LIMIT 10", true),
        ("SELECT * FROM t ORDER BY a LIMIT 10 OFFSET 5", true),
        ("SELECT * FROM t OFFSET 5", true),
        (
            "SELECT * FROM t OFFSET 5 ROWS FETCH FIRST 3 ROWS ONLY",
            true,
        ),
        ("SELECT TOP 5 * FROM t", true),
        ("(SELECT * FROM t LIMIT 1)", true),
        (
            "SELECT * FROM (SELECT * FROM t ORDER BY a LIMIT 5) s",
            false,
        ),
        (
            "SELECT * FROM t WHERE a IN (SELECT a FROM u LIMIT 1)",
            false,
        ),
        ("SELECT 1 UNION SELECT 2 ORDER BY 1", true),
        ("WITH c AS (SELECT 1 LIMIT 1) SELECT * FROM c", false),
    ] {
        assert_eq!(ok(sql).has_outer_limit(), limited, "{sql}");
    }
}

#[test]
fn expressions_redshift_clients_send() {
    let q = ok(
        "SELECT c.orders[0].id, c.data.a.b, CAST(x AS VARCHAR(10)), x::DECIMAL(10,2), \
                x::super, x::timestamptz, CONVERT(INT, z), DATE '2020-01-01', \
                TIMESTAMP '2020-01-01 00:00:00', INTERVAL '1 day', EXTRACT(year FROM ts), \
                date_trunc('month', ts), dateadd(day, 1, ts), datediff(day, ts, getdate()), \
                CURRENT_DATE, sysdate, ts AT TIME ZONE 'UTC', \
                CASE WHEN a IS NULL THEN 'none' WHEN a BETWEEN 1 AND 2 THEN 'low' ELSE 'high' END, \
                coalesce(a, b, 0), nvl(a, 0), nullif(a, 0), decode(a, 1, 'one', 'other'), \
                SUBSTRING(s FROM 2 FOR 3), substring(s, 2, 3), TRIM(BOTH 'x' FROM s), \
                POSITION('a' IN s), upper(s) || lower(s), s LIKE 'a%' ESCAPE '!', s ILIKE 'b%', \
                s SIMILAR TO 'c%', s ~ '^x', -a, +a, NOT b, a % 2, 2 ^ 3, a & 1 | 2, \
                json_extract_path_text(j, 'a', 'b'), json_parse(j), is_valid_json(j), \
                CEIL(a), FLOOR(a), round(a, 2), md5(s), pg_catalog.lower(s), true, NULL, 1e3, .5 \
                FROM db_schema.c",
    );
    assert_eq!(q.relations(), rels(&["db_schema.c"]));
}

#[test]
fn relations_know_system_tables() {
    for (sql, system) in [
        ("SELECT * FROM pg_catalog.pg_class", true),
        ("SELECT * FROM pg_class", true),
        ("SELECT * FROM stv_recents", true),
        ("SELECT * FROM STL_QUERY", true),
        ("SELECT * FROM svv_tables", true),
        ("SELECT * FROM svl_qlog", true),
        ("SELECT * FROM sys_query_history", true),
        ("SELECT * FROM information_schema.tables", true),
        ("SELECT * FROM pg_catalog.anything", true),
        ("SELECT * FROM \"PG_CLASS\"", true),
        ("SELECT * FROM public.orders", false),
        ("SELECT * FROM sales.stlouis", false),
        ("SELECT * FROM pgsql_backup.t", false),
    ] {
        let q = ok(sql);
        assert_eq!(q.relations().len(), 1, "{sql}");
        assert_eq!(q.relations()[0].is_system(), system, "{sql}");
    }
}

#[test]
fn functions_follow_the_policy() {
    let policy = QueryPolicy::new().with_functions(["count".to_string(), "Lower".to_string()]);
    let check = |sql: &str| validate(sql, &policy).map(|q| q.sql().to_string());
    assert!(check("SELECT count(*), COUNT(a), lower(b) FROM t").is_ok());
    assert!(check("SELECT pg_catalog.count(*) FROM t").is_ok());
    assert!(check("SELECT \"count\"(*) FROM t").is_ok());
    for (sql, name) in [
        ("SELECT upper(b) FROM t", "upper"),
        ("SELECT \"COUNT\"(*) FROM t", "\"COUNT\""),
        ("SELECT public.count(*) FROM t", "public.count"),
        ("SELECT a.pg_catalog.count(*) FROM t", "a.pg_catalog.count"),
        ("SELECT count(upper(b)) FROM t", "upper"),
        ("SELECT count(*) OVER (ORDER BY upper(b)) FROM t", "upper"),
        (
            "SELECT 1 FROM t WHERE a = (SELECT upper(b) FROM u)",
            "upper",
        ),
        ("SELECT 1 FROM t GROUP BY upper(b)", "upper"),
        ("SELECT 1 FROM t ORDER BY upper(b)", "upper"),
        ("SELECT 1 FROM t JOIN u ON upper(t.a) = u.a", "upper"),
        (
            "WITH c AS (SELECT upper(b) FROM t) SELECT * FROM c",
            "upper",
        ),
        ("VALUES (upper('x'))", "upper"),
        ("SELECT CASE WHEN true THEN upper('x') END", "upper"),
        ("SELECT 1 LIMIT upper('1')", "upper"),
    ] {
        assert_eq!(
            check(sql),
            Err(QueryError::Function {
                name: name.to_string()
            }),
            "{sql}"
        );
    }
}

#[test]
fn default_allowlist_has_no_function_with_side_effects() {
    let policy = QueryPolicy::default();
    assert!(functions::DEFAULT_FUNCTIONS.len() > 200);
    for name in functions::DEFAULT_FUNCTIONS {
        assert_eq!(name.to_lowercase(), *name);
        for prefix in ["pg_", "lo_", "dblink", "set", "txid"] {
            assert!(!name.starts_with(prefix), "{name}");
        }
    }
    for name in [
        "pg_terminate_backend",
        "pg_cancel_backend",
        "set_config",
        "pg_sleep",
        "pg_read_file",
        "lo_import",
        "lo_export",
        "dblink",
        "dblink_exec",
        "nextval",
        "setval",
        "currval",
        "pg_advisory_lock",
        "pg_notify",
        "current_setting",
        "generate_series",
    ] {
        assert!(!policy.allows_function(name), "{name}");
        let sql = format!("SELECT {name}(1)");
        assert!(matches!(err(&sql), QueryError::Function { .. }), "{sql}");
    }
}

#[test]
fn error_messages_say_what_to_fix() {
    assert_eq!(
        err("DELETE FROM t").to_string(),
        "only read-only queries are accepted (SELECT, WITH ... SELECT, VALUES and their \
         UNION/INTERSECT/EXCEPT); found DELETE"
    );
    assert_eq!(
        err("SELECT 1; SELECT 2").to_string(),
        "expected exactly one SQL statement, found 2"
    );
    assert_eq!(
        err("SELECT pg_sleep(1)").to_string(),
        "function pg_sleep is not allowed: it is not on this server's function allowlist"
    );
    assert_eq!(
        err(r"SELECT 'a\\b'").to_string(),
        "not supported: string literals containing a backslash (Redshift reads it as an \
         escape); write CHR(92) for a backslash"
    );
    assert!(
        err("SELEC 1")
            .to_string()
            .starts_with("cannot parse the query: ")
    );
    assert_eq!(
        validate("SELECT 1", &QueryPolicy::new().with_max_bytes(4))
            .unwrap_err()
            .to_string(),
        "the query is 8 bytes long; the limit is 4 bytes"
    );
}
