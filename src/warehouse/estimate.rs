//! Redshift's estimate of a query's result, from `EXPLAIN`: the rows and the average row width
//! (bytes) of the plan's top node. It decides whether a Flight SQL query is small enough to be
//! answered on the connection instead of by UNLOAD (`direct_max_rows`), and is the denominator of
//! a long UNLOAD's progress.
//!
//! Imports: `crate::sql`.

use crate::sql::{Sql, sql};

/// The planner's estimate for a query's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Rows the plan's top node returns.
    pub rows: u64,
    /// Average width of a row, in bytes.
    pub width: u64,
}

/// `EXPLAIN <query>`.
pub fn explain_sql(query: &Sql) -> Sql {
    sql!("EXPLAIN ", query)
}

/// The estimate in the first line of an `EXPLAIN` that names both `rows=` and `width=`: the plan's
/// top node (Redshift: `XN Aggregate  (cost=0.00..0.01 rows=1 width=8)`; PostgreSQL:
/// `Aggregate  (cost=1.06..1.07 rows=1 width=8)`). `None` when no line has one.
pub fn parse_explain<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Estimate> {
    lines.into_iter().find_map(|line| {
        let number = |key: &str| -> Option<u64> {
            let start = line.find(key)? + key.len();
            let digits: String = line[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        Some(Estimate {
            rows: number(" rows=")?,
            width: number(" width=")?,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_top_node_of_redshift_and_postgresql_plans() {
        let redshift = [
            "XN Aggregate  (cost=0.06..0.06 rows=1 width=0)",
            "  ->  XN Seq Scan on sales  (cost=0.00..0.05 rows=5 width=0)",
        ];
        assert_eq!(
            parse_explain(redshift),
            Some(Estimate { rows: 1, width: 0 })
        );
        let postgres = [
            "Hash Join  (cost=1.09..36.93 rows=1250000 width=244)",
            "  Hash Cond: (a.id = b.id)",
        ];
        assert_eq!(
            parse_explain(postgres),
            Some(Estimate {
                rows: 1_250_000,
                width: 244
            })
        );
        // A leading line without an estimate (Redshift's "XN Network" headers have one; notes
        // such as "----- Nested Loop Join in the query plan -----" do not).
        let noted = [
            "----- Tables missing statistics: t -----",
            "XN Seq Scan on t  (cost=0.00..20.00 rows=2000 width=12)",
        ];
        assert_eq!(
            parse_explain(noted),
            Some(Estimate {
                rows: 2000,
                width: 12
            })
        );
        assert_eq!(parse_explain(["no plan here"]), None);
        assert_eq!(parse_explain(["Seq Scan (rows=x width=1)"]), None);
        assert_eq!(parse_explain(Vec::<&str>::new()), None);
    }

    #[test]
    fn explain_prefixes_the_query() {
        assert_eq!(
            explain_sql(&Sql::from("SELECT 1")).as_str(),
            "EXPLAIN SELECT 1"
        );
    }
}
