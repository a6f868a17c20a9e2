//! Inspector QC: a checklist per stage (its items are admin data), checked item by item with a
//! note. A turn that fails goes back to the stage before, with what failed; a passed QC is what
//! lets it into a stage that requires one (the complete stage, in the demo set). The rules are
//! `TurnRules::inspect` and the stage gate; this module holds the checklist and the answers.
use crate::mutation::{check_text, FieldError};
use crate::pg_text;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A `qc_checklist_items` row: one thing an inspector checks in a stage.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct QcItem {
    pub id: Uuid,
    pub stage_id: Uuid,
    #[serde(deserialize_with = "pg_text::int::deserialize")]
    pub position: i32,
    pub label: String,
    #[serde(deserialize_with = "pg_text::boolean::deserialize")]
    pub is_active: bool,
}

/// One item as the inspector found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QcResult {
    pub item: Uuid,
    pub passed: bool,
    /// What is wrong (required for a failed item), or anything worth saying.
    pub note: Option<String>,
}

/// A stage's checklist: its active items, in order.
pub fn checklist<'a>(items: impl IntoIterator<Item = &'a QcItem>, stage: Uuid) -> Vec<QcItem> {
    let mut list: Vec<QcItem> = items
        .into_iter()
        .filter(|i| i.stage_id == stage && i.is_active)
        .cloned()
        .collect();
    list.sort_by_key(|i| (i.position, i.id));
    list
}

/// What failed, as the turn keeps it for the vendor and the managers: "Walls: marks in the hall".
pub fn failures(checklist: &[QcItem], results: &[QcResult]) -> Option<String> {
    let failed: Vec<String> = checklist
        .iter()
        .filter_map(|item| {
            let r = results.iter().find(|r| r.item == item.id && !r.passed)?;
            Some(
                match r.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
                    Some(note) => format!("{}: {note}", item.label),
                    None => item.label.clone(),
                },
            )
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

pub(crate) fn validate(results: &[QcResult], errors: &mut Vec<FieldError>) {
    if results.is_empty() {
        errors.push(FieldError::new("results", "Check the items first."));
    }
    for r in results {
        let note = r.note.as_deref().unwrap_or_default();
        if !r.passed && note.trim().is_empty() {
            errors.push(FieldError::new(
                "note",
                "Say what failed for each failed item.",
            ));
        }
        check_text("note", note, 1000, false, errors);
    }
}
