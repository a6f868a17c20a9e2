//! Shape where clauses: a documented subset of SQL, parsed with `sqlparser` (PostgreSQL dialect)
//! and evaluated on rows in Postgres' text format.
//!
//! Supported: column `=`/`<>`/`!=`/`<`/`<=`/`>`/`>=` literal or `$n` (either side), `AND`, `OR`,
//! `NOT`, parentheses, `IN (…)`/`NOT IN (…)`, `IS [NOT] NULL`, `[NOT] LIKE`/`ILIKE` (patterns of
//! at most 256 characters), `[NOT] BETWEEN`, a bare boolean column, `TRUE`/`FALSE`, and
//! `literal::type` casts. Column types: uuid, text/varchar/char, int2/4/8, numeric, bool, date,
//! timestamp(tz), and enums. Anything else is refused with the reason. NULL follows SQL's
//! three-valued logic; a row matches when the clause is TRUE.
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use rust_decimal::Decimal;
use sqlparser::ast::{BinaryOperator, CastKind, Expr, UnaryOperator, Value as SqlValue};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::cmp::Ordering;
use std::str::FromStr;

/// The column types a where clause may compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    Bool,
    Int,
    Numeric,
    Text,
    Uuid,
    Date,
    Timestamp,
    TimestampTz,
    /// Enums compare by label (equality, IN, LIKE); ordering comparisons are refused.
    Enum,
    /// Anything else: may be selected, not filtered on.
    Other,
}

impl ColType {
    pub fn from_pg(type_name: &str, is_enum: bool) -> ColType {
        if is_enum {
            return ColType::Enum;
        }
        match type_name {
            "boolean" => ColType::Bool,
            "smallint" | "integer" | "bigint" => ColType::Int,
            "numeric" => ColType::Numeric,
            "text" | "character varying" | "character" => ColType::Text,
            "uuid" => ColType::Uuid,
            "date" => ColType::Date,
            "timestamp without time zone" => ColType::Timestamp,
            "timestamp with time zone" => ColType::TimestampTz,
            _ => ColType::Other,
        }
    }
}

/// A typed value, parsed from Postgres text or from a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Bool(bool),
    Int(i64),
    Num(Decimal),
    Text(String),
    Date(NaiveDate),
    Ts(NaiveDateTime),
    TsTz(DateTime<Utc>),
}

impl Val {
    fn parse(ty: ColType, text: &str) -> Option<Val> {
        Some(match ty {
            ColType::Bool => Val::Bool(matches!(text, "t" | "true" | "TRUE" | "True")),
            ColType::Int => Val::Int(text.trim().parse().ok()?),
            ColType::Numeric => Val::Num(Decimal::from_str(text.trim()).ok()?),
            ColType::Text | ColType::Enum => Val::Text(text.to_string()),
            ColType::Uuid => Val::Text(uuid::Uuid::parse_str(text.trim()).ok()?.to_string()),
            ColType::Date => Val::Date(NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?),
            ColType::Timestamp => Val::Ts(parse_ts(text)?),
            ColType::TimestampTz => Val::TsTz(parse_tstz(text)?),
            ColType::Other => return None,
        })
    }

    fn cmp(&self, other: &Val) -> Option<Ordering> {
        match (self, other) {
            (Val::Bool(a), Val::Bool(b)) => Some(a.cmp(b)),
            (Val::Int(a), Val::Int(b)) => Some(a.cmp(b)),
            (Val::Num(a), Val::Num(b)) => Some(a.cmp(b)),
            (Val::Int(a), Val::Num(b)) => Some(Decimal::from(*a).cmp(b)),
            (Val::Num(a), Val::Int(b)) => Some(a.cmp(&Decimal::from(*b))),
            (Val::Text(a), Val::Text(b)) => Some(a.cmp(b)),
            (Val::Date(a), Val::Date(b)) => Some(a.cmp(b)),
            (Val::Ts(a), Val::Ts(b)) => Some(a.cmp(b)),
            (Val::TsTz(a), Val::TsTz(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl Val {
    /// One form for values that compare equal (`7`, `7.0` and `7.00` are one; a uuid in any
    /// case is one), so that equal values can be looked up in a map.
    pub fn lookup_key(&self) -> String {
        match self {
            Val::Bool(b) => b.to_string(),
            Val::Int(i) => Decimal::from(*i).normalize().to_string(),
            Val::Num(n) => n.normalize().to_string(),
            Val::Text(t) => t.clone(),
            Val::Date(d) => d.to_string(),
            Val::Ts(t) => t.to_string(),
            Val::TsTz(t) => t.to_string(),
        }
    }
}

/// The lookup key of a column's value in Postgres text (see [`Val::lookup_key`]); `None` when
/// the text does not parse as the column's type (then no comparison holds).
pub fn lookup_key(ty: ColType, text: &str) -> Option<String> {
    Val::parse(ty, text).map(|v| v.lookup_key())
}

fn parse_ts(text: &str) -> Option<NaiveDateTime> {
    let t = text.trim().replace('T', " ");
    NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                .ok()?
                .and_hms_opt(0, 0, 0)
        })
}

fn parse_tstz(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim().replace('T', " ");
    // Postgres prints offsets as +00 or +05:30; chrono wants +0000 / +05:30.
    let normalized = match t.rfind(['+', '-']) {
        Some(i) if i > 10 && t.len() - i == 3 => format!("{t}00"),
        _ => t.clone(),
    };
    DateTime::parse_from_str(&normalized, "%Y-%m-%d %H:%M:%S%.f%#z")
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| parse_ts(&t).map(|n| n.and_utc()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn flip(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            other => other,
        }
    }
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Ne => o != Ordering::Equal,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Le => o != Ordering::Greater,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Ge => o != Ordering::Less,
        }
    }
}

/// A compiled where clause over a table's columns (by index).
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    Const(bool),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Compare {
        col: usize,
        op: Cmp,
        value: Val,
    },
    In {
        col: usize,
        values: Vec<Val>,
        negated: bool,
    },
    IsNull {
        col: usize,
        negated: bool,
    },
    Like {
        col: usize,
        pattern: Vec<LikeToken>,
        case_insensitive: bool,
        negated: bool,
    },
    Between {
        col: usize,
        low: Val,
        high: Val,
        negated: bool,
    },
    BoolColumn(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum LikeToken {
    Literal(char),
    One,
    Any,
}

/// The columns a filter can see: name and type, in row order.
pub struct Columns<'a>(pub &'a [(String, ColType)]);

impl Columns<'_> {
    fn find(&self, name: &str) -> Result<(usize, ColType), String> {
        self.0
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.0[i].1))
            .ok_or_else(|| format!("unknown column {name:?}"))
    }
}

/// Longest `LIKE`/`ILIKE` pattern, in characters.
const MAX_LIKE_PATTERN: usize = 256;

/// Parse and type-check `where` against the columns, binding `$n` to `params[n-1]`.
pub fn compile(
    where_clause: &str,
    columns: &Columns<'_>,
    params: &[String],
) -> Result<Filter, String> {
    if where_clause.len() > 4096 {
        return Err("where clause is too long (4096 characters at most)".into());
    }
    let expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(where_clause)
        .and_then(|mut p| {
            let e = p.parse_expr()?;
            p.expect_token(&sqlparser::tokenizer::Token::EOF)?;
            Ok(e)
        })
        .map_err(|e| format!("invalid where clause: {e}"))?;
    Compiler {
        columns,
        params,
        depth: 0,
    }
    .expr(&expr)
}

struct Compiler<'a, 'b> {
    columns: &'a Columns<'b>,
    params: &'a [String],
    depth: usize,
}

enum Operand {
    Column(usize, ColType),
    /// A literal's text, or NULL.
    Literal(Option<String>),
}

impl Compiler<'_, '_> {
    fn expr(&mut self, e: &Expr) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > 64 {
            return Err("where clause is nested too deeply".into());
        }
        let out = self.expr_inner(e);
        self.depth -= 1;
        out
    }

    fn expr_inner(&mut self, e: &Expr) -> Result<Filter, String> {
        Ok(match e {
            Expr::Nested(inner) => self.expr(inner)?,
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => Filter::And(Box::new(self.expr(left)?), Box::new(self.expr(right)?)),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Or,
                right,
            } => Filter::Or(Box::new(self.expr(left)?), Box::new(self.expr(right)?)),
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => Filter::Not(Box::new(self.expr(expr)?)),
            Expr::BinaryOp { left, op, right } => {
                let op = match op {
                    BinaryOperator::Eq => Cmp::Eq,
                    BinaryOperator::NotEq => Cmp::Ne,
                    BinaryOperator::Lt => Cmp::Lt,
                    BinaryOperator::LtEq => Cmp::Le,
                    BinaryOperator::Gt => Cmp::Gt,
                    BinaryOperator::GtEq => Cmp::Ge,
                    other => return Err(format!("operator {other} is not supported")),
                };
                let (col, ty, op, lit) = match (self.operand(left)?, self.operand(right)?) {
                    (Operand::Column(c, t), Operand::Literal(l)) => (c, t, op, l),
                    (Operand::Literal(l), Operand::Column(c, t)) => (c, t, op.flip(), l),
                    _ => return Err("a comparison needs one column and one value".into()),
                };
                if ty == ColType::Enum && !matches!(op, Cmp::Eq | Cmp::Ne) {
                    return Err("enum columns support only = and <>".into());
                }
                match lit {
                    None => Filter::Const(false), // x = NULL is never TRUE
                    Some(text) => Filter::Compare {
                        col,
                        op,
                        value: self.value(ty, &text)?,
                    },
                }
            }
            Expr::InList {
                expr,
                list,
                negated,
            } => {
                let (col, ty) = self.column(expr)?;
                let mut values = Vec::with_capacity(list.len());
                for item in list {
                    match self.operand(item)? {
                        Operand::Literal(Some(t)) => values.push(self.value(ty, &t)?),
                        Operand::Literal(None) => {}
                        Operand::Column(..) => {
                            return Err("IN lists hold values, not columns".into())
                        }
                    }
                }
                Filter::In {
                    col,
                    values,
                    negated: *negated,
                }
            }
            Expr::IsNull(inner) => Filter::IsNull {
                col: self.column(inner)?.0,
                negated: false,
            },
            Expr::IsNotNull(inner) => Filter::IsNull {
                col: self.column(inner)?.0,
                negated: true,
            },
            Expr::Like {
                negated,
                expr,
                pattern,
                escape_char: None,
                any: false,
            } => self.like(expr, pattern, false, *negated)?,
            Expr::ILike {
                negated,
                expr,
                pattern,
                escape_char: None,
                any: false,
            } => self.like(expr, pattern, true, *negated)?,
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (col, ty) = self.column(expr)?;
                let low = self.literal_value(ty, low)?;
                let high = self.literal_value(ty, high)?;
                Filter::Between {
                    col,
                    low,
                    high,
                    negated: *negated,
                }
            }
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                let (col, ty) = self.column(e)?;
                if ty != ColType::Bool {
                    return Err("a bare column must be boolean".into());
                }
                Filter::BoolColumn(col)
            }
            Expr::Value(v) if matches!(v.value, SqlValue::Boolean(_)) => {
                Filter::Const(matches!(v.value, SqlValue::Boolean(true)))
            }
            other => return Err(format!("unsupported expression: {other}")),
        })
    }

    fn like(
        &mut self,
        expr: &Expr,
        pattern: &Expr,
        ci: bool,
        negated: bool,
    ) -> Result<Filter, String> {
        let (col, ty) = self.column(expr)?;
        if !matches!(ty, ColType::Text | ColType::Enum | ColType::Uuid) {
            return Err("LIKE needs a text column".into());
        }
        let Operand::Literal(Some(p)) = self.operand(pattern)? else {
            return Err("LIKE needs a pattern value".into());
        };
        // A `$n` pattern escapes the clause's length limit; matching costs text × pattern length.
        if p.chars().count() > MAX_LIKE_PATTERN {
            return Err(format!(
                "LIKE pattern is too long ({MAX_LIKE_PATTERN} characters at most)"
            ));
        }
        let p = if ci { p.to_lowercase() } else { p };
        let mut tokens = Vec::new();
        let mut chars = p.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '%' => LikeToken::Any,
                '_' => LikeToken::One,
                '\\' => LikeToken::Literal(chars.next().unwrap_or('\\')),
                c => LikeToken::Literal(c),
            });
        }
        Ok(Filter::Like {
            col,
            pattern: tokens,
            case_insensitive: ci,
            negated,
        })
    }

    fn column(&self, e: &Expr) -> Result<(usize, ColType), String> {
        match self.operand(e)? {
            Operand::Column(c, t) if t != ColType::Other => Ok((c, t)),
            Operand::Column(..) => Err("this column's type cannot be filtered on".into()),
            Operand::Literal(_) => Err("expected a column".into()),
        }
    }

    fn operand(&self, e: &Expr) -> Result<Operand, String> {
        Ok(match e {
            Expr::Nested(inner) => self.operand(inner)?,
            Expr::Identifier(id) => {
                let (c, t) = self.columns.find(&id.value)?;
                Operand::Column(c, t)
            }
            Expr::CompoundIdentifier(parts) => {
                let last = parts.last().ok_or("empty identifier")?;
                let (c, t) = self.columns.find(&last.value)?;
                Operand::Column(c, t)
            }
            Expr::Value(v) => Operand::Literal(match &v.value {
                SqlValue::Number(n, _) => Some(n.clone()),
                SqlValue::SingleQuotedString(s) => Some(s.clone()),
                SqlValue::Boolean(b) => Some(b.to_string()),
                SqlValue::Null => None,
                SqlValue::Placeholder(p) => {
                    let n: usize = p
                        .strip_prefix('$')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| format!("unsupported placeholder {p}"))?;
                    Some(
                        self.params
                            .get(n.wrapping_sub(1))
                            .cloned()
                            .ok_or_else(|| format!("no value for parameter ${n}"))?,
                    )
                }
                other => return Err(format!("unsupported value {other}")),
            }),
            Expr::UnaryOp {
                op: UnaryOperator::Minus,
                expr,
            } => match self.operand(expr)? {
                Operand::Literal(Some(n)) => Operand::Literal(Some(format!("-{n}"))),
                _ => return Err("unary minus needs a number".into()),
            },
            // 'text'::type — the column's type decides how the text is read.
            Expr::Cast {
                kind: CastKind::DoubleColon | CastKind::Cast,
                expr,
                ..
            } => match self.operand(expr)? {
                lit @ Operand::Literal(_) => lit,
                Operand::Column(..) => return Err("casting a column is not supported".into()),
            },
            other => return Err(format!("unsupported expression: {other}")),
        })
    }

    fn literal_value(&self, ty: ColType, e: &Expr) -> Result<Val, String> {
        match self.operand(e)? {
            Operand::Literal(Some(t)) => self.value(ty, &t),
            _ => Err("expected a value".into()),
        }
    }

    fn value(&self, ty: ColType, text: &str) -> Result<Val, String> {
        Val::parse(ty, text).ok_or_else(|| format!("{text:?} is not a valid {ty:?} value"))
    }
}

impl Filter {
    /// Values the clause requires: when it holds for a row, the row's value in one of these
    /// columns has one of these lookup keys. `None` when the clause requires no such thing
    /// (a range, a `LIKE`, an `OR` with a branch that is not an equality, …).
    ///
    /// `col = v` gives one; `col IN (…)` one per value; `a AND b` what `a` or `b` requires (the
    /// rest of the clause is still checked on the rows found); `a OR b` both branches' values.
    pub fn required_values(&self) -> Option<Vec<(usize, String)>> {
        match self {
            Filter::Compare {
                col,
                op: Cmp::Eq,
                value,
            } => Some(vec![(*col, value.lookup_key())]),
            Filter::In {
                col,
                values,
                negated: false,
            } => Some(values.iter().map(|v| (*col, v.lookup_key())).collect()),
            Filter::And(a, b) => a.required_values().or_else(|| b.required_values()),
            Filter::Or(a, b) => {
                let mut both = a.required_values()?;
                both.extend(b.required_values()?);
                Some(both)
            }
            _ => None,
        }
    }

    /// Whether the row (text values by column index; `None` = NULL) matches.
    pub fn matches(&self, row: &[Option<&str>], types: &[ColType]) -> bool {
        self.matches_with(&|i| row.get(i).copied().flatten(), types)
    }

    /// The same, reading only the columns the clause uses, on demand.
    pub fn matches_with<'a>(
        &self,
        row: &dyn Fn(usize) -> Option<&'a str>,
        types: &[ColType],
    ) -> bool {
        self.eval(row, types) == Some(true)
    }

    fn eval<'a>(&self, row: &dyn Fn(usize) -> Option<&'a str>, types: &[ColType]) -> Option<bool> {
        let val = |col: usize| -> Option<Val> { Val::parse(types[col], row(col)?) };
        match self {
            Filter::Const(b) => Some(*b),
            Filter::And(a, b) => match (a.eval(row, types), b.eval(row, types)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Filter::Or(a, b) => match (a.eval(row, types), b.eval(row, types)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Filter::Not(a) => a.eval(row, types).map(|b| !b),
            Filter::Compare { col, op, value } => val(*col)?.cmp(value).map(|o| op.holds(o)),
            Filter::In {
                col,
                values,
                negated,
            } => {
                let v = val(*col)?;
                let found = values.iter().any(|x| v.cmp(x) == Some(Ordering::Equal));
                Some(found != *negated)
            }
            Filter::IsNull { col, negated } => Some(row(*col).is_none() != *negated),
            Filter::Like {
                col,
                pattern,
                case_insensitive,
                negated,
            } => {
                let text = row(*col)?;
                let text = if *case_insensitive {
                    text.to_lowercase()
                } else {
                    text.to_string()
                };
                Some(like(&text.chars().collect::<Vec<_>>(), pattern) != *negated)
            }
            Filter::Between {
                col,
                low,
                high,
                negated,
            } => {
                let v = val(*col)?;
                let inside = v.cmp(low)? != Ordering::Less && v.cmp(high)? != Ordering::Greater;
                Some(inside != *negated)
            }
            Filter::BoolColumn(col) => match val(*col)? {
                Val::Bool(b) => Some(b),
                _ => None,
            },
        }
    }
}

fn like(text: &[char], pattern: &[LikeToken]) -> bool {
    like_steps(text, pattern).0
}

/// `LIKE` by the two-pointer wildcard walk, and the number of steps it took (tests bound it).
///
/// A naive recursive matcher retries every split of the text at every `%`, which is exponential
/// in the number of `%` (a crafted pattern held a runtime worker for minutes). Here only the
/// latest `%` is ever retried: everything before it matched at the earliest place it could, and
/// an earliest match leaves the most text for the rest, so earlier `%`s never need another try.
/// Each retry moves that `%`'s start one character on, so the work is at most
/// (text length + 1) × (pattern length + 1).
fn like_steps(text: &[char], pattern: &[LikeToken]) -> (bool, usize) {
    let (mut t, mut p, mut steps) = (0, 0, 0);
    // The latest `%`: the pattern position after it, and the text position it has swallowed to.
    let mut retry: Option<(usize, usize)> = None;
    while t < text.len() {
        steps += 1;
        match pattern.get(p) {
            Some(LikeToken::Any) => {
                p += 1;
                retry = Some((p, t));
            }
            Some(LikeToken::One) => (t, p) = (t + 1, p + 1),
            Some(LikeToken::Literal(c)) if *c == text[t] => (t, p) = (t + 1, p + 1),
            _ => match retry {
                // Let the latest `%` swallow one more character and match the rest again.
                Some((after, swallowed)) => {
                    (t, p) = (swallowed + 1, after);
                    retry = Some((after, t));
                }
                None => return (false, steps),
            },
        }
    }
    // The text is used up: what is left of the pattern must be all `%`.
    while pattern.get(p) == Some(&LikeToken::Any) {
        steps += 1;
        p += 1;
    }
    (p == pattern.len(), steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<(String, ColType)> {
        [
            ("id", ColType::Uuid),
            ("name", ColType::Text),
            ("amount", ColType::Numeric),
            ("is_active", ColType::Bool),
            ("status", ColType::Enum),
            ("move_out_date", ColType::Date),
            ("n", ColType::Int),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect()
    }

    fn check(clause: &str, params: &[&str], row: [Option<&str>; 7]) -> bool {
        let c = cols();
        let types: Vec<ColType> = c.iter().map(|(_, t)| *t).collect();
        let params: Vec<String> = params.iter().map(|s| s.to_string()).collect();
        let f = compile(clause, &Columns(&c), &params).unwrap_or_else(|e| panic!("{clause}: {e}"));
        f.matches(&row, &types)
    }

    const ROW: [Option<&str>; 7] = [
        Some("5f0c9b1e-2b7a-4c1e-9d2f-3a4b5c6d7e8f"),
        Some("Maple Court"),
        Some("1250.50"),
        Some("t"),
        Some("DFO_APPROVAL_NEEDED"),
        Some("2026-11-01"),
        None,
    ];

    #[test]
    fn the_documented_subset_evaluates_like_postgres() {
        assert!(check("is_active", &[], ROW));
        assert!(check("is_active = true AND amount > 1000", &[], ROW));
        assert!(
            check("amount >= $1", &["1250.5"], ROW),
            "numeric compares by value"
        );
        assert!(
            !check("1000 > amount", &[], ROW),
            "literal on the left flips"
        );
        assert!(check(
            "status IN ('DFO_APPROVAL_NEEDED', 'HO_APPROVAL_NEEDED')",
            &[],
            ROW
        ));
        assert!(check("status NOT IN ('PENDING')", &[], ROW));
        assert!(check("name LIKE 'Maple%'", &[], ROW));
        assert!(check("name ILIKE '%court'", &[], ROW));
        assert!(!check("name LIKE 'maple%'", &[], ROW));
        assert!(check("name NOT LIKE '_aple C_urt%x'", &[], ROW));
        assert!(check(
            "move_out_date BETWEEN '2026-10-01' AND '2026-11-30'",
            &[],
            ROW
        ));
        assert!(check("move_out_date < '2026-11-02'::date", &[], ROW));
        assert!(
            check("id = $1", &["5F0C9B1E-2B7A-4C1E-9D2F-3A4B5C6D7E8F"], ROW),
            "uuids compare canonically"
        );
        assert!(check("n IS NULL AND name IS NOT NULL", &[], ROW));
        assert!(check("NOT (status = 'PENDING') OR false", &[], ROW));
        assert!(
            check("\"t\".name = 'Maple Court'", &[], ROW),
            "qualified names use the last part"
        );
    }

    fn tokens(pattern: &str) -> Vec<LikeToken> {
        pattern
            .chars()
            .map(|c| match c {
                '%' => LikeToken::Any,
                '_' => LikeToken::One,
                c => LikeToken::Literal(c),
            })
            .collect()
    }

    /// The textbook table: `dp[i][j]` says whether `text[i..]` matches `pattern[j..]`. Quadratic
    /// in space, obviously right; the reference the matcher is compared with.
    fn like_reference(text: &[char], pattern: &[LikeToken]) -> bool {
        let (n, m) = (text.len(), pattern.len());
        let mut dp = vec![vec![false; m + 1]; n + 1];
        dp[n][m] = true;
        for j in (0..m).rev() {
            for i in (0..=n).rev() {
                let next = i < n && dp[i + 1][j + 1];
                dp[i][j] = match &pattern[j] {
                    LikeToken::Any => dp[i][j + 1] || (i < n && dp[i + 1][j]),
                    LikeToken::One => next,
                    LikeToken::Literal(c) => next && text[i] == *c,
                };
            }
        }
        dp[0][0]
    }

    /// Matches like the reference, within the O(n·m) work bound.
    fn assert_like(text: &[char], pattern: &[LikeToken]) {
        let (matched, steps) = like_steps(text, pattern);
        let case = || format!("{:?} LIKE {pattern:?}", text.iter().collect::<String>());
        assert_eq!(matched, like_reference(text, pattern), "{}", case());
        let bound = (text.len() + 1) * (pattern.len() + 1);
        assert!(steps <= bound, "{}: {steps} steps > {bound}", case());
    }

    #[test]
    fn like_does_bounded_work_on_patterns_made_to_backtrack() {
        let name: Vec<char> = "a".repeat(250).chars().collect();
        for pattern in [
            "%a%a%a%a%a%a%b",
            "%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%b",
            "%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%%b",
            "%_%_%_%_%_%_%_b",
            "a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a%a",
        ] {
            assert_like(&name, &tokens(pattern));
        }
        let long: Vec<char> = "ab".repeat(2000).chars().collect();
        assert_like(&long, &tokens(&"%ab".repeat(80)));
        assert_like(&long, &tokens(&format!("{}c", "%a%b".repeat(60))));
    }

    #[test]
    fn like_agrees_with_the_reference_on_every_small_case() {
        // Every pattern of up to 5 tokens over {a, b, _, %} against every text of up to 6
        // characters over {a, b}.
        fn all(alphabet: &[char], max_len: usize) -> Vec<String> {
            let mut out = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max_len {
                last = last
                    .iter()
                    .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                    .collect();
                out.extend(last.iter().cloned());
            }
            out
        }
        let texts: Vec<Vec<char>> = all(&['a', 'b'], 6)
            .iter()
            .map(|t| t.chars().collect())
            .collect();
        for pattern in all(&['a', 'b', '_', '%'], 5) {
            let pattern = tokens(&pattern);
            for text in &texts {
                assert_like(text, &pattern);
            }
        }
    }

    #[test]
    fn like_agrees_with_the_reference_on_generated_longer_cases() {
        // A fixed xorshift sequence: deterministic, so a failure reproduces.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for _ in 0..20_000 {
            let text: Vec<char> = (0..next(40)).map(|_| ['a', 'b', 'c'][next(3)]).collect();
            let pattern: String = (0..next(16))
                .map(|_| ['a', 'b', 'c', '_', '%', '%'][next(6)])
                .collect();
            assert_like(&text, &tokens(&pattern));
        }
    }

    #[test]
    fn like_patterns_are_capped_in_length() {
        let c = cols();
        let at_most = "%".repeat(256);
        assert!(compile("name LIKE $1", &Columns(&c), &[at_most]).is_ok());
        for clause in ["name LIKE $1", "name NOT ILIKE $1"] {
            let err = compile(clause, &Columns(&c), &["%".repeat(257)]).expect_err(clause);
            assert!(err.contains("LIKE pattern is too long"), "{clause}: {err}");
        }
        let literal = format!("name LIKE '{}'", "a".repeat(300));
        let err = compile(&literal, &Columns(&c), &[]).expect_err("literal");
        assert!(err.contains("LIKE pattern is too long"), "{err}");
    }

    #[test]
    fn null_is_unknown_not_false() {
        assert!(!check("n = 1", &[], ROW));
        assert!(!check("NOT (n = 1)", &[], ROW), "NOT unknown is unknown");
        assert!(check("n = 1 OR is_active", &[], ROW));
        assert!(!check("n = NULL", &[], ROW));
        assert!(!check("n IN (1, 2)", &[], ROW));
        assert!(!check("n NOT IN (1, 2)", &[], ROW));
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let c = cols();
        for (clause, why) in [
            ("1=1) OR (1=1", "invalid where clause"),
            ("name = 'a'; DROP TABLE turns", "invalid where clause"),
            ("nope = 1", "unknown column"),
            ("amount = 'abc'", "not a valid"),
            ("id = $2", "no value for parameter"),
            ("lower(name) = 'a'", "unsupported expression"),
            ("id IN (SELECT id FROM users)", "unsupported"),
            ("status > 'A'", "enum columns"),
            ("name", "bare column must be boolean"),
            ("amount + 1 = 2", "unsupported expression"),
            ("amount % 2 = 0", "unsupported expression"),
        ] {
            let err = compile(clause, &Columns(&c), &["x".to_string()]).expect_err(clause);
            assert!(err.contains(why), "{clause}: {err}");
        }
        let deep = format!("{}is_active{}", "(".repeat(200), ")".repeat(200));
        assert!(compile(&deep, &Columns(&c), &[]).is_err());
    }
}
