//! What the shape server knows of a published table: columns, types, primary key.
use super::filter::ColType;
use super::{ShapeError, ShapeServer};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    pub ty: String,
    #[serde(skip)]
    pub kind: Option<ColType>,
    pub not_null: bool,
    pub pk_index: Option<usize>,
    pub max_length: Option<i32>,
}

impl ColumnInfo {
    pub(super) fn kind(&self) -> ColType {
        self.kind.unwrap_or(ColType::Other)
    }
}

#[derive(Clone, Debug)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnInfo>,
}

impl TableInfo {
    pub fn relation(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
    pub fn pk(&self) -> Vec<&ColumnInfo> {
        let mut pk: Vec<&ColumnInfo> = self
            .columns
            .iter()
            .filter(|c| c.pk_index.is_some())
            .collect();
        pk.sort_by_key(|c| c.pk_index);
        pk
    }
}

impl ShapeServer {
    /// Column names, types, keys of a table we publish.
    pub(super) async fn table(
        &self,
        schema: &str,
        name: &str,
    ) -> Result<Arc<TableInfo>, ShapeError> {
        let key = (schema.to_string(), name.to_string());
        if let Some(t) = self
            .tables
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(t.clone());
        }
        let published: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_publication_tables
                             WHERE pubname = 'turns_sync' AND schemaname = $1 AND tablename = $2)",
        )
        .bind(schema)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        if !published {
            return Err(ShapeError::invalid(
                "table",
                format!("{schema}.{name} is not a synced table"),
            ));
        }
        let rows: Vec<(String, String, bool, bool, Option<i32>, i32)> = sqlx::query_as(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), t.typtype = 'e', a.attnotnull,
                    array_position(i.indkey::int2[], a.attnum)::int - 1,
                    CASE WHEN a.atttypmod > 4 AND a.atttypid IN (1042, 1043) THEN a.atttypmod - 4 ELSE -1 END
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
              WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
              ORDER BY a.attnum",
        )
        .bind(schema)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let columns = rows
            .into_iter()
            .map(
                |(name, ty, is_enum, not_null, pk_index, max_length)| ColumnInfo {
                    kind: Some(ColType::from_pg(&ty, is_enum)),
                    name,
                    ty,
                    not_null,
                    pk_index: pk_index.map(|i| i as usize),
                    max_length: (max_length > 0).then_some(max_length),
                },
            )
            .collect();
        let info = Arc::new(TableInfo {
            schema: schema.into(),
            name: name.into(),
            columns,
        });
        self.tables
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, info.clone());
        Ok(info)
    }
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}
