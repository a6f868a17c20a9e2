//! The rows of the shapes a client follows, as the protocol sends them (Postgres text), and what
//! the screens make of them. A new table a client keeps locally is one more row type here and one
//! more shape name; the follower and the stored rows are generic.
use crate::line_items::HomeSize;
use crate::model::{full_name, Named, Stage};
use crate::mutation::{NewProperty, PropertyEdit};
use crate::pg_text;
use crate::Actor;
use serde::Deserialize;
use uuid::Uuid;

/// The `thresholds` row (the approval limits; one row).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ThresholdsRow {
    pub id: Uuid,
    pub pm_self_approve_limit: crate::Decimal,
    pub ho_threshold: crate::Decimal,
    pub non_core_threshold: crate::Decimal,
    pub change_tolerance_pct: crate::Decimal,
}

impl ThresholdsRow {
    pub fn thresholds(&self) -> crate::Thresholds {
        crate::Thresholds {
            pm_self_approve_limit: self.pm_self_approve_limit,
            ho_threshold: self.ho_threshold,
            non_core_threshold: self.non_core_threshold,
            change_tolerance_pct: self.change_tolerance_pct,
        }
    }
}

/// A `stages` row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StageRow {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "pg_text::int")]
    pub display_order: i32,
    #[serde(default)]
    pub color: Option<String>,
    #[serde(with = "pg_text::boolean")]
    pub is_amount_required: bool,
    #[serde(with = "pg_text::boolean")]
    pub is_vendor_required: bool,
    #[serde(with = "pg_text::boolean")]
    pub requires_approval: bool,
    #[serde(with = "pg_text::boolean")]
    pub is_complete_stage: bool,
    #[serde(with = "pg_text::boolean")]
    pub is_active: bool,
    #[serde(default, with = "pg_text::opt_boolean")]
    pub requires_qc: Option<bool>,
}

impl StageRow {
    pub fn stage(&self) -> Stage {
        Stage {
            id: self.id,
            name: self.name.clone(),
            display_order: self.display_order,
            color: self.color.clone().unwrap_or_else(|| "#000000".into()),
            is_amount_required: self.is_amount_required,
            is_vendor_required: self.is_vendor_required,
            requires_approval: self.requires_approval,
            is_complete_stage: self.is_complete_stage,
            requires_qc: self.requires_qc.unwrap_or(false),
        }
    }
}

/// The board's stages: the active ones, in order.
pub fn stages<'a>(rows: impl IntoIterator<Item = &'a StageRow>) -> Vec<Stage> {
    let mut stages: Vec<Stage> = rows
        .into_iter()
        .filter(|r| r.is_active)
        .map(StageRow::stage)
        .collect();
    stages.sort_by_key(|s| (s.display_order, s.id));
    stages
}

/// A `vendors` row (the columns every role's shape carries).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct VendorRow {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub trade: Option<String>,
    #[serde(with = "pg_text::boolean")]
    pub is_active: bool,
    #[serde(with = "pg_text::boolean")]
    pub is_approved: bool,
}

impl VendorRow {
    /// Work may be given to this vendor.
    pub fn is_assignable(&self) -> bool {
        self.is_active && self.is_approved
    }
}

/// A `properties` row. A vendor's shape leaves out how the operator classifies the home
/// (`is_core`) and who oversees its manager.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PropertyRow {
    pub id: Uuid,
    pub property_id: String,
    pub name: String,
    pub street_address: String,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default, with = "pg_text::opt_boolean")]
    pub is_core: Option<bool>,
    #[serde(with = "pg_text::boolean")]
    pub is_active: bool,
    #[serde(default)]
    pub property_manager_id: Option<Uuid>,
    #[serde(default)]
    pub sr_property_manager_id: Option<Uuid>,
    #[serde(default)]
    pub bedrooms: Option<crate::Decimal>,
    #[serde(default)]
    pub bathrooms: Option<crate::Decimal>,
    #[serde(default, with = "pg_text::opt_int")]
    pub area_sqft: Option<i32>,
    /// How a vendor gets in.
    #[serde(default)]
    pub access_notes: Option<String>,
}

impl PropertyRow {
    /// What cost templates are matched against.
    pub fn size(&self) -> HomeSize {
        HomeSize {
            bedrooms: self.bedrooms,
            bathrooms: self.bathrooms,
            area_sqft: self.area_sqft,
        }
    }

    /// A home added on this device, as the server will add it.
    pub fn made(p: &NewProperty, by: &Actor) -> PropertyRow {
        let (pm, sr) = p.managers(by).unwrap_or((p.property_manager_id, None));
        let some = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        PropertyRow {
            id: p.id,
            property_id: p.property_id.trim().to_string(),
            name: p.name.trim().to_string(),
            street_address: p.street_address.trim().to_string(),
            city: some(&p.city),
            state: some(&p.state),
            is_core: Some(p.is_core),
            is_active: true,
            property_manager_id: pm,
            sr_property_manager_id: sr,
            bedrooms: p.bedrooms,
            bathrooms: p.bathrooms,
            area_sqft: p.area_sqft,
            access_notes: some(&p.access_notes),
        }
    }

    /// Write an edit's new value (the zip code is not kept in this row).
    pub fn apply(&mut self, edit: &PropertyEdit) {
        match edit {
            PropertyEdit::Name(e) => self.name = e.to.trim().to_string(),
            PropertyEdit::StreetAddress(e) => self.street_address = e.to.trim().to_string(),
            PropertyEdit::City(e) => self.city = e.to.clone(),
            PropertyEdit::State(e) => self.state = e.to.clone(),
            PropertyEdit::ZipCode(_) => {}
            PropertyEdit::IsCore(e) => self.is_core = Some(e.to),
            PropertyEdit::IsActive(e) => self.is_active = e.to,
            PropertyEdit::PropertyManager(e) => self.property_manager_id = e.to,
            PropertyEdit::Bedrooms(e) => self.bedrooms = e.to,
            PropertyEdit::Bathrooms(e) => self.bathrooms = e.to,
            PropertyEdit::AreaSqft(e) => self.area_sqft = e.to,
            PropertyEdit::AccessNotes(e) => self.access_notes = e.to.clone(),
        }
    }
}

/// A `managers` row: a property manager or senior PM, by name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ManagerRow {
    pub id: Uuid,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

impl ManagerRow {
    pub fn named(&self) -> Option<Named> {
        Some(Named {
            id: self.id,
            name: full_name(self.first_name.as_deref(), self.last_name.as_deref())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_as_the_shapes_send_them() {
        let stage: StageRow = serde_json::from_str(
            r##"{"id":"00000000-0000-0000-0000-000000000001","name":"QC","display_order":"6",
                "color":"#10b981","is_amount_required":"f","is_vendor_required":"t",
                "requires_approval":"f","is_complete_stage":"f","is_active":"t","version":"2",
                "created_at":"2026-12-01 10:00:00+00"}"##,
        )
        .expect("stage");
        assert_eq!(stage.stage().display_order, 6);
        assert!(stage.is_vendor_required && !stage.requires_approval);
        let vendor_view: PropertyRow = serde_json::from_str(
            r#"{"id":"00000000-0000-0000-0000-000000000002","property_id":"P-1","name":"Elm",
                "street_address":"1 Elm St","city":null,"is_active":"t","property_manager_id":null}"#,
        )
        .expect("a vendor's property row");
        assert_eq!(vendor_view.is_core, None);
        let sized: PropertyRow = serde_json::from_value(serde_json::json!({
            "id": "00000000-0000-0000-0000-000000000004", "property_id": "P-2", "name": "Oak",
            "street_address": "2 Oak St", "is_active": "t", "bedrooms": "2.0",
            "bathrooms": null, "area_sqft": "937"}))
        .expect("a sized home");
        assert_eq!(
            (sized.bedrooms, sized.bathrooms, sized.area_sqft),
            (Some(crate::Decimal::new(2, 0)), None, Some(937))
        );
        let vendor: VendorRow = serde_json::from_str(
            r#"{"id":"00000000-0000-0000-0000-000000000003","name":"Ace","trade":null,
                "is_active":"t","is_approved":"f"}"#,
        )
        .expect("vendor");
        assert!(!vendor.is_assignable());
        let inactive = StageRow {
            is_active: false,
            ..stage.clone()
        };
        assert_eq!(stages([&inactive, &stage]).len(), 1);
    }
}
