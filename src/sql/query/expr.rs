//! The allowlist walk over expressions, functions and windows. Every `Expr` variant is named (no
//! wildcard arm), so a variant added by a newer `sqlparser` does not compile until it is
//! classified; the variants Redshift has no use for are refused. The leaves (names, literals,
//! types, operators) are checked in `lexical.rs`.

use sqlparser::ast::{
    AccessExpr, Array, CaseWhen, CastKind, CeilFloorKind, DateTimeField, Expr, ExtractSyntax,
    Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause, FunctionArgumentList,
    FunctionArguments, InTarget, Interval, JsonPath, JsonPathElem, Subscript, TypedString,
    UnaryOperator, Value, WindowFrame, WindowFrameBound, WindowSpec, WindowType,
};

use super::lexical::{
    binary_operator, check_data_type, check_field, check_function_name, check_ident,
    check_value_in, comparison, quoted_name, refuse_if,
};
use super::unsupported;
use super::walk::{Check, Walker, object_name};

impl Walker<'_> {
    pub(super) fn exprs(&mut self, exprs: &[Expr]) -> Check {
        exprs.iter().try_for_each(|e| self.expr(e))
    }

    pub(super) fn opt_expr(&mut self, expr: Option<&Expr>) -> Check {
        expr.map_or(Ok(()), |e| self.expr(e))
    }

    pub(super) fn expr(&mut self, expr: &Expr) -> Check {
        self.enter()?;
        self.expr_inner(expr)?;
        self.leave();
        Ok(())
    }

    fn expr_inner(&mut self, expr: &Expr) -> Check {
        match expr {
            Expr::Identifier(ident) => check_ident(ident),
            Expr::CompoundIdentifier(idents) => idents.iter().try_for_each(check_ident),
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.expr(root)?;
                for access in access_chain {
                    match access {
                        AccessExpr::Dot(e) => self.expr(e)?,
                        AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index)?,
                        AccessExpr::Subscript(Subscript::Slice { .. }) => {
                            return Err(unsupported("array slices"));
                        }
                    }
                }
                Ok(())
            }
            Expr::JsonAccess { value, path } => {
                self.expr(value)?;
                self.json_path(path)
            }
            Expr::IsFalse(e)
            | Expr::IsNotFalse(e)
            | Expr::IsTrue(e)
            | Expr::IsNotTrue(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::IsUnknown(e)
            | Expr::IsNotUnknown(e)
            | Expr::Nested(e)
            | Expr::OuterJoin(e) => self.expr(e),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::In {
                expr,
                target,
                negated: _,
                global,
            } => {
                refuse_if(*global, "GLOBAL IN")?;
                self.expr(expr)?;
                match target {
                    InTarget::List(list) => self.exprs(list),
                    InTarget::Subquery(query) => self.query(query),
                    InTarget::Unnest(_) | InTarget::Table { .. } => {
                        Err(unsupported("IN UNNEST(...) or IN table"))
                    }
                }
            }
            Expr::Between {
                expr,
                negated: _,
                low,
                high,
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::BinaryOp { left, op, right } => {
                binary_operator(op)?;
                self.expr(left)?;
                self.expr(right)
            }
            Expr::Like {
                negated: _,
                any,
                expr,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated: _,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                refuse_if(*any, "LIKE ANY")?;
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt_expr(escape_char.as_deref())
            }
            Expr::SimilarTo {
                negated: _,
                expr,
                pattern,
                escape_char,
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                self.opt_expr(escape_char.as_deref())
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                is_some: _,
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                comparison(compare_op)?;
                self.expr(left)?;
                self.expr(right)
            }
            Expr::UnaryOp { op, expr } => {
                match op {
                    UnaryOperator::Plus
                    | UnaryOperator::Minus
                    | UnaryOperator::Not
                    | UnaryOperator::BitwiseNot
                    | UnaryOperator::PGAbs
                    | UnaryOperator::PGSquareRoot
                    | UnaryOperator::PGCubeRoot => {}
                    _ => return Err(unsupported("this unary operator")),
                }
                self.expr(expr)
            }
            Expr::Convert {
                is_try,
                expr,
                data_type,
                charset,
                target_before_value,
                styles,
            } => {
                refuse_if(
                    *is_try || charset.is_some() || !styles.is_empty() || !*target_before_value,
                    "this form of CONVERT; write CONVERT(type, value)",
                )?;
                match data_type {
                    Some(t) => check_data_type(t)?,
                    None => return Err(unsupported("CONVERT without a type")),
                }
                self.expr(expr)
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                match kind {
                    CastKind::Cast | CastKind::DoubleColon => {}
                    CastKind::TryCast | CastKind::SafeCast => {
                        return Err(unsupported("TRY_CAST / SAFE_CAST"));
                    }
                }
                refuse_if(format.is_some(), "CAST ... FORMAT")?;
                check_data_type(data_type)?;
                self.expr(expr)
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.expr(timestamp)?;
                self.expr(time_zone)
            }
            Expr::Extract {
                field,
                syntax,
                expr,
            } => {
                refuse_if(
                    matches!(syntax, ExtractSyntax::Comma),
                    "EXTRACT(field, value); write EXTRACT(field FROM value)",
                )?;
                check_field(field)?;
                self.expr(expr)
            }
            Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                refuse_if(
                    !matches!(
                        field,
                        CeilFloorKind::DateTimeField(DateTimeField::NoDateTime)
                    ),
                    "CEIL/FLOOR with a scale or a unit",
                )?;
                self.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                special: _,
                shorthand: _,
            } => {
                self.expr(expr)?;
                self.opt_expr(substring_from.as_deref())?;
                self.opt_expr(substring_for.as_deref())
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr,
                trim_characters,
            } => {
                refuse_if(trim_characters.is_some(), "TRIM(value, characters)")?;
                self.opt_expr(trim_what.as_deref())?;
                self.expr(expr)
            }
            Expr::Collate { expr, collation } => {
                object_name(collation)?;
                self.expr(expr)
            }
            Expr::Value(value) => check_value_in(self.policy, &value.value),
            Expr::TypedString(TypedString {
                data_type,
                value,
                uses_odbc_syntax,
            }) => {
                refuse_if(*uses_odbc_syntax, "ODBC escapes")?;
                check_data_type(data_type)?;
                match &value.value {
                    Value::SingleQuotedString(_) => check_value_in(self.policy, &value.value),
                    _ => Err(unsupported("a typed literal that is not a '...' string")),
                }
            }
            Expr::Function(function) => self.function(function),
            Expr::Case {
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                self.opt_expr(operand.as_deref())?;
                for CaseWhen { condition, result } in conditions {
                    self.expr(condition)?;
                    self.expr(result)?;
                }
                self.opt_expr(else_result.as_deref())
            }
            Expr::Exists {
                subquery,
                negated: _,
            } => self.query(subquery),
            Expr::Subquery(query) => self.query(query),
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                sets.iter().try_for_each(|set| self.exprs(set))
            }
            Expr::Tuple(exprs) => self.exprs(exprs),
            Expr::Interval(Interval {
                value,
                leading_field,
                leading_precision: _,
                last_field,
                fractional_seconds_precision: _,
            }) => {
                if let Some(field) = leading_field {
                    check_field(field)?;
                }
                if let Some(field) = last_field {
                    check_field(field)?;
                }
                self.expr(value)
            }
            Expr::Array(Array { .. }) => Err(unsupported("ARRAY[...]; write ARRAY(...)")),
            Expr::IsJson { .. }
            | Expr::IsNormalized { .. }
            | Expr::RLike { .. }
            | Expr::Overlay { .. }
            | Expr::Prefixed { .. }
            | Expr::Struct { .. }
            | Expr::Named { .. }
            | Expr::Dictionary(_)
            | Expr::Map(_)
            | Expr::MatchAgainst { .. }
            | Expr::Wildcard(_)
            | Expr::QualifiedWildcard(..)
            | Expr::Prior(_)
            | Expr::Lambda(_)
            | Expr::MemberOf(_) => Err(unsupported(
                "this expression (IS JSON, RLIKE, OVERLAY, STRUCT, MAP, MATCH, PRIOR, lambdas, \
                 MEMBER OF, ...)",
            )),
        }
    }

    /// `super_column[0].field`, Redshift's navigation into SUPER: brackets, then dots.
    fn json_path(&mut self, path: &JsonPath) -> Check {
        for (i, element) in path.path.iter().enumerate() {
            match element {
                JsonPathElem::Bracket { key } => self.expr(key)?,
                JsonPathElem::Dot { key, quoted } if i > 0 => {
                    refuse_if(key.contains('\0') || key.is_empty(), "this path element")?;
                    if *quoted {
                        quoted_name(key)?;
                    } else {
                        refuse_if(
                            !key.chars()
                                .all(|c| c.is_alphanumeric() || "_$#".contains(c)),
                            "this path element",
                        )?;
                    }
                }
                JsonPathElem::Dot { .. } | JsonPathElem::ColonBracket { .. } => {
                    return Err(unsupported("value:path access; write value.path"));
                }
            }
        }
        Ok(())
    }

    fn function(&mut self, function: &Function) -> Check {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment: _,
            over,
        } = function;
        check_function_name(self.policy, name)?;
        refuse_if(*uses_odbc_syntax, "ODBC escapes")?;
        refuse_if(
            !matches!(parameters, FunctionArguments::None),
            "parametric functions f(...)(...)",
        )?;
        match args {
            FunctionArguments::None => {}
            FunctionArguments::Subquery(_) => {
                return Err(unsupported("f(SELECT ...); write f((SELECT ...))"));
            }
            FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: _,
                args,
                clauses,
            }) => {
                for arg in args {
                    match arg {
                        FunctionArg::Unnamed(arg) => self.function_arg(arg)?,
                        FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. } => {
                            return Err(unsupported("named function arguments"));
                        }
                    }
                }
                for clause in clauses {
                    match clause {
                        FunctionArgumentClause::IgnoreOrRespectNulls(_) => {}
                        FunctionArgumentClause::OrderBy(exprs) => self.order_by_exprs(exprs)?,
                        _ => return Err(unsupported("this clause in a function's arguments")),
                    }
                }
            }
        }
        self.order_by_exprs(within_group)?;
        self.opt_expr(filter.as_deref())?;
        match over {
            None => Ok(()),
            Some(WindowType::NamedWindow(name)) => check_ident(name),
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec),
        }
    }

    fn function_arg(&mut self, arg: &FunctionArgExpr) -> Check {
        match arg {
            FunctionArgExpr::Expr(e) => self.expr(e),
            FunctionArgExpr::QualifiedWildcard(name) => object_name(name),
            FunctionArgExpr::Wildcard => Ok(()),
            FunctionArgExpr::WildcardWithOptions(_) => {
                Err(unsupported("wildcard options in function arguments"))
            }
        }
    }

    pub(super) fn window_spec(&mut self, spec: &WindowSpec) -> Check {
        let WindowSpec {
            window_name,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        if let Some(name) = window_name {
            check_ident(name)?;
        }
        self.exprs(partition_by)?;
        self.order_by_exprs(order_by)?;
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound) {
                match bound {
                    WindowFrameBound::CurrentRow => {}
                    WindowFrameBound::Preceding(e) | WindowFrameBound::Following(e) => {
                        self.opt_expr(e.as_deref())?
                    }
                }
            }
        }
        Ok(())
    }
}
