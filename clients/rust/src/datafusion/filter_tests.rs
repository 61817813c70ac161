//! Unit tests of `filter.rs`: what is rendered, and the verdict for each kind of filter.

use std::collections::HashMap;

use ::datafusion::common::ScalarValue;
use ::datafusion::logical_expr::cast;
use ::datafusion::prelude::{col, ident, lit};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::{Pushed, translate};

fn field(name: &str, data_type: DataType, redshift: &str) -> Field {
    Field::new(name, data_type, true).with_metadata(HashMap::from([(
        "redshift_flight.type".to_string(),
        redshift.to_string(),
    )]))
}

fn schema() -> Schema {
    Schema::new(vec![
        field("id", DataType::Int32, "integer"),
        field("Big Id", DataType::Int64, "bigint"),
        field("amount", DataType::Decimal128(12, 2), "numeric(12,2)"),
        field("ratio", DataType::Float64, "double precision"),
        field("name", DataType::Utf8, "character varying(20)"),
        field("code", DataType::Utf8, "character(3)"),
        field("doc", DataType::Utf8, "super"),
        field("day", DataType::Date32, "date"),
        field(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            "timestamp without time zone",
        ),
        field(
            "at_tz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "timestamp with time zone",
        ),
        field("flag", DataType::Boolean, "boolean"),
        field("has\"quote", DataType::Int32, "integer"),
    ])
}

fn exact(sql: &str) -> Option<Pushed> {
    Some(Pushed {
        sql: sql.to_string(),
        exact: true,
    })
}

fn inexact(sql: &str) -> Option<Pushed> {
    Some(Pushed {
        sql: sql.to_string(),
        exact: false,
    })
}

#[test]
fn comparisons_of_exact_types_are_exact() {
    let s = schema();
    assert_eq!(translate(&col("id").gt(lit(5)), &s), exact(r#"("id" > 5)"#));
    assert_eq!(translate(&lit(5).gt(col("id")), &s), exact(r#"("id" < 5)"#));
    assert_eq!(
        translate(&ident("Big Id").not_eq(lit(-7i64)), &s),
        exact(r#"("Big Id" <> -7)"#)
    );
    let amount = lit(ScalarValue::Decimal128(Some(-5), 12, 2));
    assert_eq!(
        translate(&col("amount").lt_eq(amount), &s),
        exact(r#"("amount" <= -0.05)"#)
    );
    let day = lit(ScalarValue::Date32(Some(19_782))); // 2024-02-29
    assert_eq!(
        translate(&col("day").eq(day), &s),
        exact(r#"("day" = DATE '2024-02-29')"#)
    );
    let at = lit(ScalarValue::TimestampMicrosecond(
        Some(1_709_210_096_789_012),
        None,
    ));
    assert_eq!(
        translate(&col("at").gt_eq(at), &s),
        exact(r#"("at" >= CAST('2024-02-29 12:34:56.789012' AS TIMESTAMP))"#)
    );
    let at_tz = lit(ScalarValue::TimestampNanosecond(
        Some(1_000),
        Some("UTC".into()),
    ));
    assert_eq!(
        translate(&col("at_tz").lt(at_tz), &s),
        exact(r#"("at_tz" < CAST('1970-01-01 00:00:00.000001+00:00' AS TIMESTAMPTZ))"#)
    );
    assert_eq!(translate(&col("flag"), &s), exact(r#""flag""#));
    assert_eq!(
        translate(&col("flag").eq(lit(false)), &s),
        exact(r#"("flag" = false)"#)
    );
    assert_eq!(
        translate(&col("id").lt(ident("Big Id")), &s),
        exact(r#"("id" < "Big Id")"#)
    );
}

#[test]
fn logic_null_tests_in_and_between() {
    let s = schema();
    let both = col("id").gt(lit(1)).and(col("day").is_null());
    assert_eq!(
        translate(&both, &s),
        exact(r#"(("id" > 1) AND ("day" IS NULL))"#)
    );
    let either = col("id").eq(lit(1)).or(col("name").is_not_null());
    assert_eq!(
        translate(&either, &s),
        exact(r#"(("id" = 1) OR ("name" IS NOT NULL))"#)
    );
    assert_eq!(
        translate(&!col("id").eq(lit(1)), &s),
        exact(r#"(NOT ("id" = 1))"#)
    );
    assert_eq!(
        translate(&col("id").in_list(vec![lit(1), lit(2)], true), &s),
        exact(r#"("id" NOT IN (1, 2))"#)
    );
    assert_eq!(
        translate(&col("id").between(lit(1), lit(9)), &s),
        exact(r#"("id" BETWEEN 1 AND 9)"#)
    );
    // Only one side of an AND can go: the server keeps a superset.
    let half = col("id").gt(lit(1)).and(col("ratio").gt(lit(0.5)));
    assert_eq!(translate(&half, &s), inexact(r#"("id" > 1)"#));
    // ... but an OR needs both sides.
    assert_eq!(
        translate(&col("id").gt(lit(1)).or(col("ratio").gt(lit(0.5))), &s),
        None
    );
}

#[test]
fn strings_are_inexact_or_not_sent() {
    let s = schema();
    assert_eq!(
        translate(&col("name").eq(lit("it's")), &s),
        inexact(r#"("name" = 'it''s')"#)
    );
    assert_eq!(
        translate(&col("code").eq(lit("ab")), &s),
        inexact(r#"("code" = 'ab')"#)
    );
    assert_eq!(
        translate(&col("name").in_list(vec![lit("a"), lit("b")], false), &s),
        inexact(r#"("name" IN ('a', 'b'))"#)
    );
    assert_eq!(
        translate(&col("name").in_list(vec![lit("a")], true), &s),
        None
    );
    assert_eq!(translate(&col("name").lt(lit("m")), &s), None);
    assert_eq!(translate(&col("name").not_eq(lit("m")), &s), None);
    assert_eq!(translate(&!col("name").eq(lit("m")), &s), None);
    assert_eq!(translate(&col("name").eq(lit("a\\b")), &s), None);
    assert_eq!(translate(&col("name").eq(lit("a''b")), &s), None);
    assert_eq!(translate(&col("doc").eq(lit("{}")), &s), None);
}

#[test]
fn what_is_never_sent() {
    let s = schema();
    assert_eq!(translate(&col("ratio").gt(lit(0.5)), &s), None);
    assert_eq!(
        translate(&col("ratio").is_null(), &s),
        exact(r#"("ratio" IS NULL)"#)
    );
    assert_eq!(translate(&col("name").like(lit("a%")), &s), None);
    assert_eq!(translate(&(col("id") + lit(1)).gt(lit(2)), &s), None);
    assert_eq!(translate(&ident("has\"quote").gt(lit(1)), &s), None);
    assert_eq!(
        translate(&col("id").eq(lit(ScalarValue::Int32(None))), &s),
        None
    );
    let day = lit(ScalarValue::Date32(Some(-800_000))); // year -221
    assert_eq!(translate(&col("day").eq(day), &s), None);
    let sub_micro = lit(ScalarValue::TimestampNanosecond(Some(1), None));
    assert_eq!(translate(&col("at").gt(sub_micro), &s), None);
    // A cast that narrows is not the column any more.
    let narrowed = cast(ident("Big Id"), DataType::Int16);
    assert_eq!(translate(&narrowed.eq(lit(1i16)), &s), None);
    let widened = cast(col("id"), DataType::Int64);
    assert_eq!(
        translate(&widened.eq(lit(1i64)), &s),
        exact(r#"("id" = 1)"#)
    );
}
