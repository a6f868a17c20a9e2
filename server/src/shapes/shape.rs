//! A shape: a definition (table, where, params, columns) resolved against its table.
use super::catalog::{ColumnInfo, TableInfo};
use super::filter::{self, ColType, Columns, Filter};
use super::{Row, ShapeError, ShapeServer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// What a client asked for (validated), minus the protocol position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShapeDef {
    pub schema: String,
    pub table: String,
    pub where_clause: Option<String>,
    pub params: Vec<String>,
    /// Projection (always includes the primary key); `None` = every column.
    pub columns: Option<Vec<String>>,
    pub replica_full: bool,
}

/// A definition resolved against the table: its columns, compiled filter and projection.
pub struct Shape {
    pub def: ShapeDef,
    pub table: Arc<TableInfo>,
    pub filter: Filter,
    pub selected: Vec<usize>,
    pub(super) types: Vec<ColType>,
    /// `schema.table`, as changes name their relation.
    pub(super) relation: String,
    /// Wakes the live requests waiting on this shape.
    pub(super) changed: super::live::Changed,
    /// Its own changes, once it has had live requests.
    pub(super) log: std::sync::Mutex<super::shape_log::ShapeLog>,
}

impl Shape {
    pub(super) fn matches(&self, row: &Row) -> bool {
        let columns = &self.table.columns;
        self.filter.matches_with(
            &|i| row.get(&columns[i].name).and_then(Value::as_str),
            &self.types,
        )
    }

    pub(super) fn project(&self, row: &Row) -> Row {
        self.selected
            .iter()
            .map(|&i| {
                let name = &self.table.columns[i].name;
                (name.clone(), row.get(name).cloned().unwrap_or(Value::Null))
            })
            .collect()
    }

    /// `"schema"."table"/"pk1"/…` with `/` doubled and NULL as `_`.
    pub(super) fn key(&self, row: &Row) -> String {
        self.key_with(|c| row.get(&c.name).and_then(Value::as_str))
    }

    pub(super) fn key_with<'a>(&self, value_of: impl Fn(&ColumnInfo) -> Option<&'a str>) -> String {
        let mut key = format!("\"{}\".\"{}\"", self.table.schema, self.table.name);
        for c in self.table.pk() {
            match value_of(c) {
                Some(v) => {
                    key.push_str("/\"");
                    key.push_str(&v.replace('/', "//"));
                    key.push('"');
                }
                None => key.push_str("/_"),
            }
        }
        key
    }
}

impl ShapeServer {
    /// Validate a definition against its table.
    pub async fn resolve(&self, def: ShapeDef) -> Result<Arc<Shape>, ShapeError> {
        // Postgres text cannot hold NUL, nor jsonb (where handles keep their definition) \u0000:
        // refuse it here, or the catalog lookup or the stored handle fails as a server error.
        let nul = |s: &str| s.contains('\0');
        if nul(&def.schema) || nul(&def.table) {
            let (schema, name) = (&def.schema, &def.table);
            return Err(ShapeError::invalid(
                "table",
                format!("{schema}.{name} is not a synced table"),
            ));
        }
        if def.where_clause.as_deref().is_some_and(nul) {
            return Err(ShapeError::invalid("where", "must not contain NUL"));
        }
        if def.params.iter().any(|p| nul(p)) {
            return Err(ShapeError::invalid("params", "must not contain NUL"));
        }
        let table = self.table(&def.schema, &def.table).await?;
        let named: Vec<(String, ColType)> = table
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.kind()))
            .collect();
        let filter = match &def.where_clause {
            Some(w) => filter::compile(w, &Columns(&named), &def.params)
                .map_err(|e| ShapeError::invalid("where", e))?,
            None => Filter::Const(true),
        };
        let selected = match &def.columns {
            None => (0..table.columns.len()).collect(),
            Some(cols) => {
                let mut idx = Vec::new();
                for c in cols {
                    let i = table
                        .columns
                        .iter()
                        .position(|x| &x.name == c)
                        .ok_or_else(|| {
                            ShapeError::invalid("columns", format!("unknown column {c:?}"))
                        })?;
                    if !idx.contains(&i) {
                        idx.push(i);
                    }
                }
                if table.pk().iter().any(|pk| !cols.contains(&pk.name)) {
                    return Err(ShapeError::invalid(
                        "columns",
                        "must include the primary key",
                    ));
                }
                idx.sort_unstable();
                idx
            }
        };
        let types = table.columns.iter().map(ColumnInfo::kind).collect();
        Ok(Arc::new(Shape {
            def,
            relation: table.relation(),
            table,
            filter,
            selected,
            types,
            changed: Default::default(),
            log: Default::default(),
        }))
    }
}
