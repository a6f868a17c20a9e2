//! What an admin changes without SQL: users (added, deactivated, reactivated), vendor companies
//! (added, approved, deactivated), stages, the approval thresholds, cost templates and QC
//! checklists. Each is a [`Change`] like any other (authorized, validated, audited on the
//! server); these are their payloads and rules.
//!
//! [`Change`]: crate::mutation::Change
use crate::line_items::TemplateLine;
use crate::mutation::{check_amount, check_area, check_rooms, check_text, FieldError};
use crate::{Actor, Decimal, Role, Thresholds};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An admin's change (`Change::Admin`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminChange {
    /// Add a user (their first password is made by the server: `turns_server::auth`).
    CreateUser(NewUser),
    /// Deactivate a user (their sessions and live streams end at once) or bring them back.
    SetUserActive {
        user: Uuid,
        active: bool,
    },
    /// Add a vendor company (not approved until an admin approves it).
    CreateVendor(NewVendor),
    /// Approve or deactivate a vendor company.
    SetVendor {
        vendor: Uuid,
        approved: bool,
        active: bool,
    },
    SetThresholds(Thresholds),
    /// Rename a stage, recolour it or change its gates.
    EditStage {
        stage: Uuid,
        settings: StageSettings,
    },
    /// Move a stage one place earlier or later on every board.
    MoveStage {
        stage: Uuid,
        earlier: bool,
    },
    /// Add a cost template (a new id) or change one, its lines replaced whole.
    SaveCostTemplate {
        template: Uuid,
        settings: TemplateSettings,
    },
    /// Add an item to a stage's QC checklist (a new id, at the end) or reword one.
    SaveQcItem {
        item: Uuid,
        stage: Uuid,
        label: String,
    },
    /// Take an item off its checklist (inspections already recorded keep it).
    RemoveQcItem {
        item: Uuid,
    },
    /// Move a checklist item one place earlier or later.
    MoveQcItem {
        item: Uuid,
        earlier: bool,
    },
}

impl AdminChange {
    /// The audit log's name for it.
    pub fn action(&self) -> &'static str {
        match self {
            AdminChange::CreateUser(_) => "create_user",
            AdminChange::SetUserActive { .. } => "set_user_active",
            AdminChange::CreateVendor(_) => "create_vendor",
            AdminChange::SetVendor { .. } => "set_vendor",
            AdminChange::SetThresholds(_) => "set_thresholds",
            AdminChange::EditStage { .. } => "edit_stage",
            AdminChange::MoveStage { .. } => "move_stage",
            AdminChange::SaveCostTemplate { .. } => "save_cost_template",
            AdminChange::SaveQcItem { .. } => "save_qc_item",
            AdminChange::RemoveQcItem { .. } => "remove_qc_item",
            AdminChange::MoveQcItem { .. } => "move_qc_item",
        }
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        match self {
            AdminChange::CreateUser(u) => u.validate(errors),
            AdminChange::CreateVendor(v) => v.validate(errors),
            AdminChange::SetThresholds(t) => validate_thresholds(t, errors),
            AdminChange::EditStage { settings, .. } => settings.validate(errors),
            AdminChange::SaveCostTemplate { settings, .. } => settings.validate(errors),
            AdminChange::SaveQcItem { label, .. } => check_text("label", label, 200, true, errors),
            AdminChange::SetUserActive { .. }
            | AdminChange::SetVendor { .. }
            | AdminChange::MoveStage { .. }
            | AdminChange::RemoveQcItem { .. }
            | AdminChange::MoveQcItem { .. } => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewUser {
    pub id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub role: Role,
    /// The vendor company of a VENDOR user (required for them, refused for anyone else).
    pub vendor_id: Option<Uuid>,
}

impl NewUser {
    /// Emails are kept trimmed and lower-case (`users_email_normalized`).
    pub fn normalized_email(&self) -> String {
        self.email.trim().to_lowercase()
    }

    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        let email = self.normalized_email();
        check_text("email", &email, 255, true, errors);
        let (local, domain) = email.split_once('@').unwrap_or(("", ""));
        if !email.is_empty()
            && (local.is_empty() || !domain.contains('.') || email.contains(char::is_whitespace))
        {
            errors.push(FieldError::new(
                "email",
                "Enter an email address like name@example.com.",
            ));
        }
        for (field, value) in [
            ("first_name", &self.first_name),
            ("last_name", &self.last_name),
        ] {
            if let Some(v) = value {
                check_text(field, v, 100, false, errors);
            }
        }
        match (self.role, self.vendor_id) {
            (Role::Vendor, None) => errors.push(FieldError::new(
                "vendor_id",
                "Choose the vendor company this user works for.",
            )),
            (Role::Vendor, Some(_)) | (_, None) => {}
            (_, Some(_)) => errors.push(FieldError::new(
                "vendor_id",
                "Only vendor users belong to a vendor company.",
            )),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewVendor {
    pub id: Uuid,
    pub name: String,
    pub trade: Option<String>,
    pub contact_email: Option<String>,
    pub contact_phone: Option<String>,
}

impl NewVendor {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text("name", &self.name, 255, true, errors);
        for (field, value, max) in [
            ("trade", &self.trade, 100),
            ("contact_email", &self.contact_email, 255),
            ("contact_phone", &self.contact_phone, 20),
        ] {
            if let Some(v) = value {
                check_text(field, v, max, false, errors);
            }
        }
    }
}

/// A stage as an admin sets it: its name, colour and gates (which stage completes a turn is
/// fixed: the domain's rules lean on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageSettings {
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
    pub is_amount_required: bool,
    pub is_vendor_required: bool,
    pub requires_approval: bool,
    pub requires_qc: bool,
}

impl StageSettings {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text("name", &self.name, 100, true, errors);
        let hex = self.color.len() == 7
            && self.color.starts_with('#')
            && self.color[1..].chars().all(|c| c.is_ascii_hexdigit());
        if !hex {
            errors.push(FieldError::new("color", "Choose a colour like #1f5fbf."));
        }
    }
}

/// The most lines one cost template holds.
pub const MAX_TEMPLATE_LINES: usize = 100;

/// A cost template as an admin sets it: the homes it is for and its lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSettings {
    pub name: String,
    pub bedrooms: Option<Decimal>,
    pub bathrooms: Option<Decimal>,
    pub min_sqft: Option<i32>,
    pub max_sqft: Option<i32>,
    pub items: Vec<TemplateLine>,
    /// Offered to managers scoping a turn (an old template is retired, not deleted).
    pub is_active: bool,
}

impl TemplateSettings {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text("name", &self.name, 100, true, errors);
        check_rooms("bedrooms", self.bedrooms, errors);
        check_rooms("bathrooms", self.bathrooms, errors);
        for (field, area) in [("min_sqft", self.min_sqft), ("max_sqft", self.max_sqft)] {
            let mut area_errors = Vec::new();
            check_area(area, &mut area_errors);
            errors.extend(area_errors.into_iter().map(|e| FieldError {
                field: field.into(),
                ..e
            }));
        }
        if self
            .min_sqft
            .zip(self.max_sqft)
            .is_some_and(|(lo, hi)| lo > hi)
        {
            errors.push(FieldError::new(
                "max_sqft",
                "The largest area cannot be below the smallest.",
            ));
        }
        if self.items.is_empty() || self.items.len() > MAX_TEMPLATE_LINES {
            errors.push(FieldError::new(
                "items",
                format!("A template has between 1 and {MAX_TEMPLATE_LINES} lines."),
            ));
        }
        self.items.iter().for_each(|line| line.validate(errors));
    }
}

/// A cost template as the admin page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateRow {
    pub id: Uuid,
    pub settings: TemplateSettings,
}

/// A QC checklist item as the admin page lists it (active items, in checklist order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct QcItemRow {
    pub id: Uuid,
    pub stage_id: Uuid,
    pub label: String,
}

/// The thresholds as an admin may set them: amounts that fit, the PM's limit at most head
/// office's, a tolerance between 0 and 100 % (`approval_thresholds_*` constraints).
pub fn validate_thresholds(t: &Thresholds, errors: &mut Vec<FieldError>) {
    for (field, amount) in [
        ("pm_self_approve_limit", t.pm_self_approve_limit),
        ("ho_threshold", t.ho_threshold),
        ("non_core_threshold", t.non_core_threshold),
    ] {
        check_amount(field, amount, errors);
    }
    if t.pm_self_approve_limit > t.ho_threshold {
        errors.push(FieldError::new(
            "pm_self_approve_limit",
            "The PM's own limit cannot be above the head-office threshold.",
        ));
    }
    if t.change_tolerance_pct < Decimal::ZERO || t.change_tolerance_pct > Decimal::ONE_HUNDRED {
        errors.push(FieldError::new(
            "change_tolerance_pct",
            "The tolerance is a percentage between 0 and 100.",
        ));
    }
}

/// A user as the admin page lists them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: Option<String>,
    pub role: Role,
    pub vendor: Option<String>,
    pub is_active: bool,
    pub last_login: Option<chrono::DateTime<chrono::Utc>>,
}

/// A vendor company as the admin page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct VendorRow {
    pub id: Uuid,
    pub name: String,
    pub trade: Option<String>,
    pub is_approved: bool,
    pub is_active: bool,
}

/// Everything the admin page shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub users: Vec<UserRow>,
    pub vendors: Vec<VendorRow>,
    pub thresholds: Thresholds,
    /// The active stages, in board order.
    pub stages: Vec<crate::model::Stage>,
    /// Every cost template, retired ones too, by name.
    pub templates: Vec<TemplateRow>,
    /// The QC checklists' active items, by stage and position.
    pub qc_items: Vec<QcItemRow>,
}

/// Who may add a user with this role: an admin adds anyone but admins; a super admin anyone.
pub fn may_grant(actor: &Actor, role: Role) -> bool {
    match role {
        Role::SuperAdmin | Role::Admin => actor.role == Role::SuperAdmin,
        _ => actor.role.is_admin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, role: Role, vendor: Option<Uuid>) -> Vec<String> {
        let mut errors = Vec::new();
        NewUser {
            id: Uuid::nil(),
            email: email.into(),
            first_name: None,
            last_name: None,
            role,
            vendor_id: vendor,
        }
        .validate(&mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn users_need_an_email_and_vendors_their_company() {
        assert!(user(" New.Person@Example.com ", Role::PropertyManager, None).is_empty());
        assert_eq!(user("no-at-sign", Role::User, None), ["email"]);
        assert_eq!(user("", Role::User, None), ["email"]);
        assert_eq!(user("v@x.com", Role::Vendor, None), ["vendor_id"]);
        assert_eq!(
            user("pm@x.com", Role::PropertyManager, Some(Uuid::nil())),
            ["vendor_id"]
        );
        assert!(user("v@x.com", Role::Vendor, Some(Uuid::nil())).is_empty());
    }

    #[test]
    fn only_a_super_admin_makes_admins() {
        let actor = |role| Actor {
            user_id: Uuid::nil(),
            role,
            vendor_id: None,
        };
        assert!(may_grant(&actor(Role::Admin), Role::Vendor));
        assert!(!may_grant(&actor(Role::Admin), Role::Admin));
        assert!(may_grant(&actor(Role::SuperAdmin), Role::Admin));
        assert!(!may_grant(&actor(Role::PropertyManager), Role::User));
    }

    fn template(items: Vec<TemplateLine>, min: Option<i32>, max: Option<i32>) -> Vec<String> {
        let mut errors = Vec::new();
        TemplateSettings {
            name: "2 bed".into(),
            bedrooms: Some(Decimal::new(2, 0)),
            bathrooms: Some(Decimal::new(15, 1)),
            min_sqft: min,
            max_sqft: max,
            items,
            is_active: true,
        }
        .validate(&mut errors);
        errors.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn templates_need_lines_and_a_sensible_size() {
        let line = |quantity: i64, cost: i64| TemplateLine {
            category: "Paint".into(),
            description: "Walls".into(),
            quantity: Decimal::new(quantity, 0),
            unit_cost: Decimal::new(cost, 0),
        };
        assert!(template(vec![line(1, 100)], Some(600), Some(900)).is_empty());
        assert_eq!(template(vec![], None, None), ["items"]);
        assert_eq!(
            template(vec![line(1, 100)], Some(900), Some(600)),
            ["max_sqft"]
        );
        assert_eq!(template(vec![line(1, 100)], Some(0), None), ["min_sqft"]);
        assert_eq!(template(vec![line(0, 100)], None, None), ["quantity"]);
        assert_eq!(template(vec![line(1, -5)], None, None), ["unit_cost"]);
    }

    #[test]
    fn thresholds_stay_in_order() {
        let mut errors = Vec::new();
        validate_thresholds(
            &Thresholds {
                pm_self_approve_limit: Decimal::new(6000, 0),
                change_tolerance_pct: Decimal::new(150, 0),
                ..Thresholds::default()
            },
            &mut errors,
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pm_self_approve_limit", "change_tolerance_pct"]);
    }
}
