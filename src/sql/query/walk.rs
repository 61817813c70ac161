//! The allowlist walk over the query structure: queries, set operations, SELECT, FROM and joins.
//! Every struct is destructured without `..`, so each field is either checked or refused, and a
//! field added by a newer `sqlparser` does not compile until it is classified here. Expressions
//! are in `expr.rs`.

use std::collections::BTreeSet;

use sqlparser::ast::{
    Cte, Distinct, ExcludeSelectItem, Fetch, GroupByExpr, Join, JoinConstraint, JoinOperator,
    LimitClause, LockType, NamedWindowDefinition, NamedWindowExpr, ObjectName, ObjectNamePart,
    Offset, OrderBy, OrderByExpr, OrderByKind, OrderByOptions, OrderBySort, Query, Select,
    SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SetOperator, SetQuantifier,
    TableAlias, TableAliasColumnDef, TableFactor, TableWithJoins, Top, TopQuantity, Values,
    WildcardAdditionalOptions, With,
};

use super::lexical::{check_ident, refuse_if};
use super::{MAX_NESTING, QueryError, QueryPolicy, Relation, fold, unsupported};

pub(super) type Check = Result<(), QueryError>;

/// Walks one query, collecting the relations it reads and the CTE names it defines.
pub(super) struct Walker<'p> {
    pub(super) policy: &'p QueryPolicy,
    depth: usize,
    /// CTE names in scope, innermost last.
    scope: Vec<String>,
    ctes: BTreeSet<String>,
    relations: BTreeSet<Relation>,
}

/// The relation an object name in FROM denotes: `name` or `schema.name`, folded; a name with
/// three parts (`database.schema.table`, a cross-database read) is refused.
pub(super) fn relation_of(name: &ObjectName) -> Result<Relation, QueryError> {
    let mut parts = Vec::with_capacity(name.0.len());
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => {
                check_ident(ident)?;
                parts.push(fold(ident));
            }
            ObjectNamePart::Function(_) => return Err(unsupported("functions in object names")),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, name]) => Ok(Relation {
            schema: Some(schema),
            name,
        }),
        Err(parts) => match <[String; 1]>::try_from(parts) {
            Ok([name]) => Ok(Relation { schema: None, name }),
            Err(_) => Err(unsupported(
                "names of more than two parts (database.schema.table); name schema.table",
            )),
        },
    }
}

impl<'p> Walker<'p> {
    pub(super) fn new(policy: &'p QueryPolicy) -> Self {
        Self {
            policy,
            depth: 0,
            scope: Vec::new(),
            ctes: BTreeSet::new(),
            relations: BTreeSet::new(),
        }
    }

    /// The relations read and the names of every CTE defined.
    pub(super) fn finish(self) -> (BTreeSet<Relation>, BTreeSet<String>) {
        (self.relations, self.ctes)
    }

    /// Enters one level of nesting; refuses the query past [`MAX_NESTING`].
    pub(super) fn enter(&mut self) -> Check {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(unsupported(format!(
                "expressions or queries nested more than {MAX_NESTING} levels deep (a chain of \
                 AND, OR or arithmetic operators counts one level per operator; use IN (...) \
                 for long lists)"
            )));
        }
        Ok(())
    }

    pub(super) fn leave(&mut self) {
        self.depth -= 1;
    }

    pub(super) fn query(&mut self, query: &Query) -> Check {
        self.enter()?;
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if let Some(lock) = locks.first() {
            return Err(QueryError::NotReadOnly {
                statement: match lock.lock_type {
                    LockType::Update => "SELECT ... FOR UPDATE",
                    LockType::Share => "SELECT ... FOR SHARE",
                }
                .to_string(),
            });
        }
        refuse_if(for_clause.is_some(), "FOR XML / FOR JSON clauses")?;
        refuse_if(settings.is_some(), "SETTINGS clauses")?;
        refuse_if(format_clause.is_some(), "FORMAT clauses")?;
        refuse_if(!pipe_operators.is_empty(), "pipe operators (|>)")?;
        let outer_scope = self.scope.len();
        if let Some(with) = with {
            self.with(with)?;
        }
        self.set_expr(body)?;
        if let Some(order_by) = order_by {
            self.order_by(order_by)?;
        }
        if let Some(limit) = limit_clause {
            self.limit(limit)?;
        }
        if let Some(Fetch {
            with_ties,
            percent,
            quantity,
        }) = fetch
        {
            refuse_if(*with_ties || *percent, "FETCH ... WITH TIES or PERCENT")?;
            self.opt_expr(quantity.as_ref())?;
        }
        self.scope.truncate(outer_scope);
        self.leave();
        Ok(())
    }

    /// Each CTE sees the ones before it (and itself, when recursive); the body sees them all.
    fn with(&mut self, with: &With) -> Check {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        for Cte {
            alias,
            query,
            from,
            materialized,
            closing_paren_token: _,
        } in cte_tables
        {
            refuse_if(from.is_some(), "CTEs with FROM")?;
            refuse_if(materialized.is_some(), "MATERIALIZED in a CTE")?;
            self.table_alias(alias)?;
            let name = fold(&alias.name);
            if *recursive {
                self.scope.push(name.clone());
                self.query(query)?;
            } else {
                self.query(query)?;
                self.scope.push(name.clone());
            }
            self.ctes.insert(name);
        }
        Ok(())
    }

    fn set_expr(&mut self, set_expr: &SetExpr) -> Check {
        self.enter()?;
        match set_expr {
            SetExpr::Select(select) => self.select(select)?,
            SetExpr::Query(query) => self.query(query)?,
            SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                match op {
                    SetOperator::Union
                    | SetOperator::Except
                    | SetOperator::Intersect
                    | SetOperator::Minus => {}
                }
                match set_quantifier {
                    SetQuantifier::All | SetQuantifier::Distinct | SetQuantifier::None => {}
                    SetQuantifier::ByName
                    | SetQuantifier::AllByName
                    | SetQuantifier::DistinctByName => {
                        return Err(unsupported("set operations BY NAME"));
                    }
                }
                self.set_expr(left)?;
                self.set_expr(right)?;
            }
            SetExpr::Values(Values {
                explicit_row,
                value_keyword,
                rows,
            }) => {
                refuse_if(*explicit_row || *value_keyword, "VALUES ROW(...) or VALUE")?;
                for row in rows {
                    self.exprs(&row.content)?;
                }
            }
            SetExpr::Insert(_) => return Err(not_read_only("INSERT")),
            SetExpr::Update(_) => return Err(not_read_only("UPDATE")),
            SetExpr::Delete(_) => return Err(not_read_only("DELETE")),
            SetExpr::Merge(_) => return Err(not_read_only("MERGE")),
            SetExpr::Table(_) => return Err(unsupported("TABLE t; write SELECT * FROM t")),
        }
        self.leave();
        Ok(())
    }

    fn select(&mut self, select: &Select) -> Check {
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor,
        } = select;
        if into.is_some() {
            return Err(not_read_only("SELECT ... INTO"));
        }
        refuse_if(!optimizer_hints.is_empty(), "optimizer hints")?;
        refuse_if(select_modifiers.is_some(), "MySQL SELECT modifiers")?;
        refuse_if(!lateral_views.is_empty(), "LATERAL VIEW")?;
        refuse_if(prewhere.is_some(), "PREWHERE")?;
        refuse_if(!connect_by.is_empty(), "CONNECT BY")?;
        refuse_if(!cluster_by.is_empty(), "CLUSTER BY")?;
        refuse_if(!distribute_by.is_empty(), "DISTRIBUTE BY")?;
        refuse_if(!sort_by.is_empty(), "SORT BY")?;
        refuse_if(value_table_mode.is_some(), "SELECT AS STRUCT / AS VALUE")?;
        match flavor {
            SelectFlavor::Standard => {}
            SelectFlavor::FromFirst | SelectFlavor::FromFirstNoSelect => {
                return Err(unsupported("FROM before SELECT"));
            }
        }
        match distinct {
            None | Some(Distinct::All) | Some(Distinct::Distinct) => {}
            Some(Distinct::On(_)) => return Err(unsupported("DISTINCT ON")),
        }
        if let Some(Top {
            with_ties,
            percent,
            quantity,
        }) = top
        {
            refuse_if(*with_ties || *percent, "TOP ... WITH TIES or PERCENT")?;
            match quantity {
                None | Some(TopQuantity::Constant(_)) => {}
                Some(TopQuantity::Expr(e)) => self.expr(e)?,
            }
        }
        // FROM first: it defines nothing the select list needs, but reads tables.
        for table in from {
            self.table_with_joins(table)?;
        }
        for item in projection {
            self.select_item(item)?;
        }
        if let Some(exclude) = exclude {
            exclude_names(exclude)?;
        }
        self.opt_expr(selection.as_ref())?;
        match group_by {
            GroupByExpr::All(modifiers) => {
                refuse_if(!modifiers.is_empty(), "GROUP BY ... WITH ROLLUP/CUBE")?
            }
            GroupByExpr::Expressions(exprs, modifiers) => {
                refuse_if(!modifiers.is_empty(), "GROUP BY ... WITH ROLLUP/CUBE")?;
                self.exprs(exprs)?;
            }
        }
        self.opt_expr(having.as_ref())?;
        for NamedWindowDefinition(name, window) in named_window {
            check_ident(name)?;
            match window {
                NamedWindowExpr::NamedWindow(other) => check_ident(other)?,
                NamedWindowExpr::WindowSpec(spec) => self.window_spec(spec)?,
            }
        }
        self.opt_expr(qualify.as_ref())
    }

    fn select_item(&mut self, item: &SelectItem) -> Check {
        match item {
            SelectItem::UnnamedExpr(e) => self.expr(e),
            SelectItem::ExprWithAlias { expr, alias } => {
                check_ident(alias)?;
                self.expr(expr)
            }
            SelectItem::ExprWithAliases { .. } => Err(unsupported("several aliases for one item")),
            SelectItem::QualifiedWildcard(kind, options) => {
                match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => object_name(name)?,
                    SelectItemQualifiedWildcardKind::Expr(_) => {
                        return Err(unsupported("expr.* in the select list"));
                    }
                }
                wildcard_options(options)
            }
            SelectItem::Wildcard(options) => wildcard_options(options),
        }
    }

    fn table_with_joins(&mut self, table: &TableWithJoins) -> Check {
        let TableWithJoins { relation, joins } = table;
        self.table_factor(relation)?;
        for Join {
            relation,
            global,
            join_operator,
        } in joins
        {
            refuse_if(*global, "GLOBAL joins")?;
            self.table_factor(relation)?;
            let constraint = match join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c) => c,
                JoinOperator::Semi(_)
                | JoinOperator::LeftSemi(_)
                | JoinOperator::RightSemi(_)
                | JoinOperator::Anti(_)
                | JoinOperator::LeftAnti(_)
                | JoinOperator::RightAnti(_)
                | JoinOperator::CrossApply
                | JoinOperator::OuterApply
                | JoinOperator::AsOf { .. }
                | JoinOperator::StraightJoin(_)
                | JoinOperator::ArrayJoin
                | JoinOperator::LeftArrayJoin
                | JoinOperator::InnerArrayJoin => {
                    return Err(unsupported(
                        "this kind of join (SEMI, ANTI, APPLY, ASOF, STRAIGHT_JOIN, ARRAY JOIN)",
                    ));
                }
            };
            match constraint {
                JoinConstraint::On(e) => self.expr(e)?,
                JoinConstraint::Using(names) => {
                    for name in names {
                        object_name(name)?;
                    }
                }
                JoinConstraint::Natural | JoinConstraint::None => {}
                JoinConstraint::UsingAlias(..) => return Err(unsupported("USING (...) AS alias")),
            }
        }
        Ok(())
    }

    fn table_factor(&mut self, factor: &TableFactor) -> Check {
        self.enter()?;
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_directives,
                inheritance,
            } => {
                refuse_if(args.is_some(), "table functions in FROM")?;
                refuse_if(!with_hints.is_empty(), "table hints")?;
                refuse_if(version.is_some(), "time travel (AS OF)")?;
                refuse_if(*with_ordinality, "WITH ORDINALITY")?;
                refuse_if(!partitions.is_empty(), "PARTITION (...)")?;
                refuse_if(json_path.is_some(), "JSON paths on tables")?;
                refuse_if(sample.is_some(), "TABLESAMPLE")?;
                refuse_if(!index_directives.is_empty(), "index hints")?;
                refuse_if(inheritance.is_some(), "ONLY / inheritance")?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                self.relation(name)?;
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias,
                sample,
            } => {
                refuse_if(sample.is_some(), "TABLESAMPLE")?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                self.query(subquery)?;
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                self.table_with_joins(table_with_joins)?;
            }
            TableFactor::TableFunction { .. }
            | TableFactor::Function { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::OpenJsonTable { .. }
            | TableFactor::Pivot { .. }
            | TableFactor::Unpivot { .. }
            | TableFactor::UnpivotExpr { .. }
            | TableFactor::MatchRecognize { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::SemanticView { .. } => {
                return Err(unsupported(
                    "this FROM item (table functions, UNNEST, PIVOT, UNPIVOT, MATCH_RECOGNIZE, \
                     JSON_TABLE, XMLTABLE)",
                ));
            }
        }
        self.leave();
        Ok(())
    }

    /// A table in FROM: a CTE in scope when unqualified and named like one, else a relation.
    fn relation(&mut self, name: &ObjectName) -> Check {
        let relation = relation_of(name)?;
        if relation.schema.is_none() && self.scope.contains(&relation.name) {
            return Ok(());
        }
        self.relations.insert(relation);
        Ok(())
    }

    fn table_alias(&mut self, alias: &TableAlias) -> Check {
        let TableAlias {
            explicit: _,
            name,
            columns,
            at,
        } = alias;
        check_ident(name)?;
        refuse_if(at.is_some(), "AT in a table alias")?;
        for TableAliasColumnDef { name, data_type } in columns {
            check_ident(name)?;
            refuse_if(data_type.is_some(), "column types in a table alias")?;
        }
        Ok(())
    }

    fn order_by(&mut self, order_by: &OrderBy) -> Check {
        let OrderBy { kind, interpolate } = order_by;
        refuse_if(interpolate.is_some(), "INTERPOLATE")?;
        match kind {
            OrderByKind::Expressions(exprs) => self.order_by_exprs(exprs),
            OrderByKind::All(_) => Err(unsupported("ORDER BY ALL")),
        }
    }

    pub(super) fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Check {
        for OrderByExpr {
            expr,
            options:
                OrderByOptions {
                    sort,
                    nulls_first: _,
                },
            with_fill,
        } in exprs
        {
            refuse_if(with_fill.is_some(), "WITH FILL")?;
            match sort {
                None | Some(OrderBySort::Asc) | Some(OrderBySort::Desc) => {}
                Some(OrderBySort::Using(_)) => return Err(unsupported("ORDER BY ... USING")),
            }
            self.expr(expr)?;
        }
        Ok(())
    }

    fn limit(&mut self, limit: &LimitClause) -> Check {
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                refuse_if(!limit_by.is_empty(), "LIMIT ... BY")?;
                self.opt_expr(limit.as_ref())?;
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
                Ok(())
            }
            LimitClause::OffsetCommaLimit { .. } => Err(unsupported(
                "LIMIT offset, count; write LIMIT count OFFSET offset",
            )),
        }
    }
}

fn not_read_only(statement: &str) -> QueryError {
    QueryError::NotReadOnly {
        statement: statement.to_string(),
    }
}

/// An object name that is not a relation (a column list, a collation): identifiers only.
pub(super) fn object_name(name: &ObjectName) -> Check {
    for part in &name.0 {
        match part {
            ObjectNamePart::Identifier(ident) => check_ident(ident)?,
            ObjectNamePart::Function(_) => return Err(unsupported("functions in object names")),
        }
    }
    Ok(())
}

fn exclude_names(exclude: &ExcludeSelectItem) -> Check {
    match exclude {
        ExcludeSelectItem::Single(name) => object_name(name),
        ExcludeSelectItem::Multiple(names) => names.iter().try_for_each(object_name),
    }
}

/// `*` and `t.*` accept only `EXCLUDE (...)` among the dialects' wildcard options.
fn wildcard_options(options: &WildcardAdditionalOptions) -> Check {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    refuse_if(
        opt_ilike.is_some()
            || opt_except.is_some()
            || opt_replace.is_some()
            || opt_rename.is_some()
            || opt_alias.is_some(),
        "wildcard options other than EXCLUDE (ILIKE, EXCEPT, REPLACE, RENAME, AS)",
    )?;
    match opt_exclude {
        Some(exclude) => exclude_names(exclude),
        None => Ok(()),
    }
}
