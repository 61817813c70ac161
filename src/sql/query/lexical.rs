//! The leaves of the AST: identifiers, literals, function names, data types and operators. Each
//! check makes sure `sqlparser`'s Display renders the leaf so that Redshift reads it back the same:
//! names double-quoted only, without `""` or `\"` inside (Display would not double them); string
//! literals `'...'` without backslashes (Redshift would read escapes) or `''` inside; plain
//! numbers.

use sqlparser::ast::{
    BinaryOperator, CharacterLength, DataType, DateTimeField, Ident, ObjectName, ObjectNamePart,
    TypeModifier, Value,
};

use super::walk::Check;
use super::{QueryError, QueryPolicy, fold, unsupported};

pub(super) fn refuse_if(condition: bool, what: &str) -> Check {
    if condition {
        Err(unsupported(what))
    } else {
        Ok(())
    }
}

/// An identifier renders safely: unquoted, or double-quoted without the two sequences that
/// `sqlparser`'s Display would not escape (`""` is taken as already escaped, `\"` too).
pub(super) fn check_ident(ident: &Ident) -> Check {
    refuse_if(
        ident.value.contains('\0'),
        "identifiers containing a NUL character",
    )?;
    refuse_if(ident.value.is_empty(), "empty identifiers")?;
    match ident.quote_style {
        None => Ok(()),
        Some('"') => quoted_name(&ident.value),
        Some(_) => Err(unsupported(
            "names quoted with [...], backquotes or single quotes; use double quotes",
        )),
    }
}

pub(super) fn quoted_name(value: &str) -> Check {
    refuse_if(
        value.contains("\"\"") || value.contains("\\\""),
        "quoted names containing two double quotes in a row or a backslash before a double quote",
    )
}

/// [`check_value`], except that placeholders (`?`, `$n`) pass when `policy` accepts parameters.
pub(super) fn check_value_in(policy: &super::QueryPolicy, value: &Value) -> Check {
    match value {
        Value::Placeholder(text) if policy.parameters => super::params::check_placeholder(text),
        other => check_value(other),
    }
}

/// Literals: plain `'...'` strings without backslashes, numbers, booleans and NULL.
pub(super) fn check_value(value: &Value) -> Check {
    match value {
        Value::Number(text, long) => refuse_if(*long || !plain_number(text), "this form of number"),
        Value::SingleQuotedString(s) => {
            refuse_if(
                s.contains('\0'),
                "string literals containing a NUL character",
            )?;
            refuse_if(
                s.contains('\\'),
                "string literals containing a backslash (Redshift reads it as an escape); \
                 write CHR(92) for a backslash",
            )?;
            refuse_if(
                s.contains("''"),
                "string literals with two quotes in a row in their value; write CHR(39) for a \
                 quote",
            )
        }
        Value::Boolean(_) | Value::Null => Ok(()),
        Value::Placeholder(_) => Err(unsupported("parameters ($1, ?) in the query text")),
        Value::DollarQuotedString(_) => Err(unsupported("dollar-quoted strings; use '...'")),
        Value::EscapedStringLiteral(_) => Err(unsupported(
            "E'...' escape strings; use '...' and CHR() for special characters",
        )),
        Value::UnicodeStringLiteral(_) => Err(unsupported("U&'...' strings; use '...'")),
        Value::NationalStringLiteral(_) | Value::NationalQuoteDelimitedStringLiteral(_) => {
            Err(unsupported("N'...' strings; use '...'"))
        }
        Value::HexStringLiteral(_) => Err(unsupported("hex strings (X'..', 0x..)")),
        Value::SingleQuotedByteStringLiteral(_)
        | Value::DoubleQuotedByteStringLiteral(_)
        | Value::TripleSingleQuotedByteStringLiteral(_)
        | Value::TripleDoubleQuotedByteStringLiteral(_) => {
            Err(unsupported("byte strings (B'...')"))
        }
        Value::SingleQuotedRawStringLiteral(_)
        | Value::DoubleQuotedRawStringLiteral(_)
        | Value::TripleSingleQuotedRawStringLiteral(_)
        | Value::TripleDoubleQuotedRawStringLiteral(_)
        | Value::TripleSingleQuotedString(_)
        | Value::TripleDoubleQuotedString(_)
        | Value::QuoteDelimitedStringLiteral(_)
        | Value::DoubleQuotedString(_) => Err(unsupported("this kind of string literal")),
    }
}

/// Digits with at most one `.` and an optional exponent: `12`, `1.5`, `.5`, `1.`, `1e-3`.
fn plain_number(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

/// `f` or `pg_catalog.f` with `f` on the allowlist (folded when unquoted, exact when quoted).
pub(super) fn check_function_name(policy: &QueryPolicy, name: &ObjectName) -> Check {
    let mut idents = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => {
                check_ident(ident)?;
                idents.push(ident);
            }
            ObjectNamePart::Function(_) => return Err(unsupported("functions in object names")),
        }
    }
    let allowed = match idents.as_slice() {
        [f] => policy.allows_function(&fold(f)),
        [schema, f] => fold(schema) == "pg_catalog" && policy.allows_function(&fold(f)),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(QueryError::Function {
            name: name.to_string(),
        })
    }
}

/// Redshift's types, with their lengths and precisions; arrays, structs and the other dialects'
/// types are refused.
pub(super) fn check_data_type(data_type: &DataType) -> Check {
    match data_type {
        DataType::Character(len)
        | DataType::Char(len)
        | DataType::CharacterVarying(len)
        | DataType::CharVarying(len)
        | DataType::Varchar(len)
        | DataType::Nvarchar(len) => match len {
            None | Some(CharacterLength::Max) => Ok(()),
            Some(CharacterLength::IntegerLength { length: _, unit }) => {
                refuse_if(unit.is_some(), "CHARACTERS/OCTETS in a length")
            }
        },
        DataType::Numeric(_)
        | DataType::Decimal(_)
        | DataType::Dec(_)
        | DataType::Float(_)
        | DataType::Int2(None)
        | DataType::SmallInt(None)
        | DataType::Int(None)
        | DataType::Int4(None)
        | DataType::Integer(None)
        | DataType::Int8(None)
        | DataType::BigInt(None)
        | DataType::Float4
        | DataType::Float8
        | DataType::Real
        | DataType::DoublePrecision
        | DataType::Bool
        | DataType::Boolean
        | DataType::Date
        | DataType::Time(_, _)
        | DataType::Timestamp(_, _)
        | DataType::Interval { .. }
        | DataType::Text
        | DataType::Varbinary(_) => Ok(()),
        DataType::Custom(name, modifiers) => {
            let known = match name.0.as_slice() {
                [ObjectNamePart::Identifier(ident)] if ident.quote_style.is_none() => {
                    CUSTOM_TYPES.contains(&ident.value.to_lowercase().as_str())
                }
                _ => false,
            };
            refuse_if(!known, "this data type")?;
            for modifier in modifiers {
                match modifier {
                    TypeModifier::Number(n, false) if n.bytes().all(|b| b.is_ascii_digit()) => {}
                    _ => return Err(unsupported("this type modifier")),
                }
            }
            Ok(())
        }
        _ => Err(unsupported("this data type")),
    }
}

/// Types that sqlparser reads as custom names.
const CUSTOM_TYPES: [&str; 9] = [
    "super",
    "varbyte",
    "geometry",
    "geography",
    "hllsketch",
    "bpchar",
    "nchar",
    "timetz",
    "timestamptz",
];

pub(super) fn check_field(field: &DateTimeField) -> Check {
    match field {
        DateTimeField::Week(Some(ident)) | DateTimeField::Custom(ident) => check_ident(ident),
        _ => Ok(()),
    }
}

pub(super) fn comparison(op: &BinaryOperator) -> Check {
    match op {
        BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::Lt
        | BinaryOperator::LtEq
        | BinaryOperator::Gt
        | BinaryOperator::GtEq => Ok(()),
        _ => Err(unsupported("this operator with ANY/ALL")),
    }
}

/// Redshift's arithmetic, comparison, logical, string, bitwise and regular-expression operators.
pub(super) fn binary_operator(op: &BinaryOperator) -> Check {
    match op {
        BinaryOperator::Plus
        | BinaryOperator::Minus
        | BinaryOperator::Multiply
        | BinaryOperator::Divide
        | BinaryOperator::Modulo
        | BinaryOperator::StringConcat
        | BinaryOperator::Gt
        | BinaryOperator::Lt
        | BinaryOperator::GtEq
        | BinaryOperator::LtEq
        | BinaryOperator::Eq
        | BinaryOperator::NotEq
        | BinaryOperator::And
        | BinaryOperator::Or
        | BinaryOperator::BitwiseOr
        | BinaryOperator::BitwiseAnd
        | BinaryOperator::BitwiseXor
        | BinaryOperator::PGBitwiseXor
        | BinaryOperator::PGBitwiseShiftLeft
        | BinaryOperator::PGBitwiseShiftRight
        | BinaryOperator::PGExp
        | BinaryOperator::PGRegexMatch
        | BinaryOperator::PGRegexIMatch
        | BinaryOperator::PGRegexNotMatch
        | BinaryOperator::PGRegexNotIMatch
        | BinaryOperator::PGLikeMatch
        | BinaryOperator::PGILikeMatch
        | BinaryOperator::PGNotLikeMatch
        | BinaryOperator::PGNotILikeMatch => Ok(()),
        _ => Err(unsupported("this operator")),
    }
}
