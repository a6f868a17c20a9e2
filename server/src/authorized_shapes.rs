//! Which shape a signed-in user gets for each named view (`/api/shapes/{name}`): the table,
//! filter and columns come from the policy's scope for the user, never from the request. The
//! shape server (`shapes/`) serves whatever definition it is given; this is where the app decides.
use crate::shapes::ShapeDef;
use chrono::{Datelike, NaiveDate};
use sqlx::PgPool;
use turns::policy::Scope;
use turns::Actor;

/// Why a named view is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotAllowed {
    /// The view exists, not for this role.
    Forbidden,
    NoSuchShape,
}

impl NotAllowed {
    pub fn message(self, name: &str) -> String {
        match self {
            NotAllowed::Forbidden => "You do not have access to this.".into(),
            NotAllowed::NoSuchShape => format!("no shape named {name:?}"),
        }
    }
}

/// The property columns a vendor's shape carries: where the home is and what it is, not how the
/// operator classifies it.
const VENDOR_PROPERTY_COLUMNS: &[&str] = &[
    "id",
    "property_id",
    "name",
    "street_address",
    "city",
    "state",
    "zip_code",
    "bedrooms",
    "bathrooms",
    "area_sqft",
    "access_notes",
    "is_active",
    "property_manager_id",
    "version",
    "updated_at",
];

/// The shape each named view is, for this actor — from the policy's scope. Vendors and
/// approvers see the homes of the turns they may read; a shape's filter cannot join, so those
/// homes are listed, read now. When the list changes the shape does too, and a client following
/// the old one is told to refetch.
pub async fn definition(
    pool: &PgPool,
    name: &str,
    actor: &Actor,
    synced_since: NaiveDate,
) -> Result<Result<ShapeDef, NotAllowed>, sqlx::Error> {
    let homes = match (name, actor.scope()) {
        ("properties", Scope::Vendor(v)) => Some(
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT property_id::text FROM turns
                  WHERE is_active AND vendor_id = $1 ORDER BY 1",
            )
            .bind(v)
            .fetch_all(pool)
            .await?,
        ),
        ("properties", Scope::Awaiting(level)) => Some(
            sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT property_id::text FROM turns
                  WHERE is_active AND approval_status = $1 ORDER BY 1",
            )
            .bind(level.needed_status())
            .fetch_all(pool)
            .await?,
        ),
        _ => None,
    };
    Ok(fixed_definition(name, actor, homes, synced_since))
}

/// The oldest completion date a device keeps: `days` before `today`, moved back to that week's
/// Monday. The turns shape changes when this does (its clients refetch), so weekly, not daily.
pub fn synced_since(today: NaiveDate, days: u32) -> NaiveDate {
    let from = today - chrono::Days::new(u64::from(days));
    from - chrono::Days::new(u64::from(from.weekday().num_days_from_monday()))
}

/// A note's and a photo's columns as a vendor gets them: not which managers the turn has.
const FIELD_NOTE_COLUMNS: &[&str] = &[
    "id",
    "turn_id",
    "body",
    "author_id",
    "author_name",
    "device_time",
    "created_at",
    "turn_vendor_id",
    "turn_is_active",
    "turn_completion_date",
    "version",
    "updated_at",
];

const PHOTO_COLUMNS: &[&str] = &[
    "id",
    "turn_id",
    "caption",
    "qc_item_id",
    "author_id",
    "author_name",
    "device_time",
    "created_at",
    "width",
    "height",
    "turn_vendor_id",
    "turn_is_active",
    "turn_completion_date",
    "version",
    "updated_at",
];

/// The columns a table that follows its turns is scoped by: the turn's own, or a line item's
/// copies of them.
struct TurnScopeColumns {
    active: &'static str,
    vendor: &'static str,
}

const TURN_COLUMNS: TurnScopeColumns = TurnScopeColumns {
    active: "is_active",
    vendor: "vendor_id",
};

const LINE_ITEM_COLUMNS: TurnScopeColumns = TurnScopeColumns {
    active: "turn_is_active",
    vendor: "turn_vendor_id",
};

/// A shape of rows that belong to turns (the turns themselves, their line items): those of the
/// user's turns that are open or completed since `synced_since`. `$1` is the bound, `$2` the
/// scope's; a vendor gets `vendor_columns` only.
fn turn_scoped(
    table: &str,
    on: &TurnScopeColumns,
    scope: Scope,
    synced_since: NaiveDate,
    vendor_columns: &[&str],
) -> ShapeDef {
    let (scope_clause, scope_param, columns) = match scope {
        Scope::All => (None, None, None),
        Scope::ManagedBy(u) => (
            Some("property_manager_id = $2".to_string()),
            Some(u.to_string()),
            None,
        ),
        Scope::OverseenBy(u) => (
            Some("property_manager_id = $2 OR sr_property_manager_id = $2".to_string()),
            Some(u.to_string()),
            None,
        ),
        Scope::Vendor(v) => (
            Some(format!("{} = $2", on.vendor)),
            Some(v.to_string()),
            Some(vendor_columns),
        ),
        Scope::Awaiting(level) => (
            Some("approval_status = $2".to_string()),
            Some(level.needed_status().as_str().to_string()),
            None,
        ),
        Scope::Nothing => {
            return ShapeDef {
                schema: "public".into(),
                table: table.into(),
                where_clause: Some("false".into()),
                params: vec![],
                columns: None,
                replica_full: false,
            }
        }
    };
    let mut clause = format!(
        "{} AND (turn_completion_date IS NULL OR turn_completion_date >= $1)",
        on.active
    );
    if let Some(c) = scope_clause {
        clause.push_str(&format!(" AND ({c})"));
    }
    ShapeDef {
        schema: "public".into(),
        table: table.into(),
        where_clause: Some(clause),
        params: std::iter::once(synced_since.to_string())
            .chain(scope_param)
            .collect(),
        columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        replica_full: false,
    }
}

/// `homes`: for vendors and approvers, the homes of the turns they may read.
fn fixed_definition(
    name: &str,
    actor: &Actor,
    homes: Option<Vec<String>>,
    synced_since: NaiveDate,
) -> Result<ShapeDef, NotAllowed> {
    let def = |table: &str,
               where_clause: Option<&str>,
               params: Vec<String>,
               columns: Option<&[&str]>| ShapeDef {
        schema: "public".into(),
        table: table.into(),
        where_clause: where_clause.map(str::to_string),
        params,
        columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        replica_full: false,
    };
    let scope = actor.scope();
    Ok(match name {
        "properties" => match scope {
            Scope::All => def("properties", None, vec![], None),
            Scope::ManagedBy(u) => def(
                "properties",
                Some("property_manager_id = $1"),
                vec![u.to_string()],
                None,
            ),
            Scope::OverseenBy(u) => def(
                "properties",
                Some("property_manager_id = $1 OR sr_property_manager_id = $1"),
                vec![u.to_string()],
                None,
            ),
            Scope::Vendor(_) | Scope::Awaiting(_) => match homes {
                Some(homes) if !homes.is_empty() => {
                    let list: Vec<String> = (1..=homes.len()).map(|i| format!("${i}")).collect();
                    let clause = format!("id IN ({})", list.join(", "));
                    let columns =
                        matches!(scope, Scope::Vendor(_)).then_some(VENDOR_PROPERTY_COLUMNS);
                    def("properties", Some(&clause), homes, columns)
                }
                _ => def("properties", Some("false"), vec![], None),
            },
            Scope::Nothing => def("properties", Some("false"), vec![], None),
        },
        "turns" => turn_scoped(
            "turns",
            &TURN_COLUMNS,
            scope,
            synced_since,
            turns::policy::VENDOR_TURN_COLUMNS,
        ),
        "line_items" => turn_scoped(
            "turn_line_items",
            &LINE_ITEM_COLUMNS,
            scope,
            synced_since,
            turns::policy::VENDOR_LINE_ITEM_COLUMNS,
        ),
        // What was written and photographed in the field, with the turns it belongs to.
        "notes" => turn_scoped(
            "turn_notes",
            &LINE_ITEM_COLUMNS,
            scope,
            synced_since,
            FIELD_NOTE_COLUMNS,
        ),
        "photos" => turn_scoped(
            "turn_photos",
            &LINE_ITEM_COLUMNS,
            scope,
            synced_since,
            PHOTO_COLUMNS,
        ),
        // Each user's own notifications.
        "inbox" => def(
            "notifications",
            Some("user_id = $1"),
            vec![actor.user_id.to_string()],
            Some(&[
                "id",
                "user_id",
                "turn_id",
                "kind",
                "message",
                "created_at",
                "read_at",
                "version",
                "updated_at",
            ]),
        ),
        // Templates carry costs: not for vendors.
        "cost_templates" => match scope {
            Scope::Vendor(_) | Scope::Nothing => def("cost_templates", Some("false"), vec![], None),
            _ => def("cost_templates", Some("is_active"), vec![], None),
        },
        "stages" => def("turn_stages", Some("is_active"), vec![], None),
        // The approval limits, so a board routes an amount as the server will (a threshold an
        // admin changes reaches open boards). Business limits: not for vendors.
        "thresholds" => match scope {
            Scope::Vendor(_) | Scope::Nothing => {
                def("approval_thresholds", Some("false"), vec![], None)
            }
            _ => def("approval_thresholds", None, vec![], None),
        },
        // What inspectors check, per stage (the vendor sees what their work is checked on).
        "qc_items" => def("qc_checklist_items", Some("is_active"), vec![], None),
        "vendors" if actor.role.is_admin() => def("vendors", None, vec![], None),
        "vendors" if actor.sees_vendor_contacts() => {
            def("vendors", Some("is_active AND is_approved"), vec![], None)
        }
        // Vendors, approvers and readers see who a vendor is, not how to reach them (rival
        // vendors must not get each other's contacts).
        "vendors" => def(
            "vendors",
            Some("is_active AND is_approved"),
            vec![],
            Some(&[
                "id",
                "name",
                "trade",
                "is_active",
                "is_approved",
                "version",
                "updated_at",
            ]),
        ),
        // Who manages which homes, by name: the cards and the Properties page show it.
        "managers" => def(
            "users",
            Some("is_active AND role IN ('PROPERTY_MANAGER', 'SR_PROPERTY_MANAGER')"),
            vec![],
            Some(&[
                "id",
                "first_name",
                "last_name",
                "role",
                "is_active",
                "version",
                "updated_at",
            ]),
        ),
        "users" if actor.role.is_admin() => def(
            "users",
            None,
            vec![],
            Some(&[
                "id",
                "email",
                "first_name",
                "last_name",
                "phone",
                "role",
                "is_active",
                "email_verified",
                "last_login",
                "vendor_id",
                "version",
                "updated_at",
            ]),
        ),
        "users" => return Err(NotAllowed::Forbidden),
        _ => return Err(NotAllowed::NoSuchShape),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sync_bound_moves_weekly_and_keeps_at_least_the_days_asked() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 12, d).expect("date");
        // 2026-12-02 is a Wednesday: 90 days back is Thursday 2026-09-03; its Monday is 08-31.
        assert_eq!(
            synced_since(day(2), 90),
            NaiveDate::from_ymd_opt(2026, 8, 31).expect("date")
        );
        for d in 1..=31 {
            let since = synced_since(day(d), 90);
            assert_eq!(since.weekday(), chrono::Weekday::Mon);
            assert!((day(d) - since).num_days() >= 90 && (day(d) - since).num_days() < 97);
        }
    }
}
