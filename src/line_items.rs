//! A turn's scope as line items: what is to be done, by whom, and what it costs. The turn amount
//! is their sum. The server writes what `apply` returns and the amount `total` gives; the browser
//! shows the same at once (and the sum while the user types), so both agree by construction.
use crate::model::format_usd;
use crate::mutation::{check_amount, check_text, max_amount, Change, Edit, FieldError, Rejection};
use crate::pg_text;
use crate::Decimal;
use rust_decimal::RoundingStrategy;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What operators scope a turn by (offered as suggestions; any other word is kept as typed).
pub const CATEGORIES: &[&str] = &[
    "Paint",
    "Flooring",
    "Cleaning",
    "Appliances",
    "Plumbing",
    "Electrical",
    "HVAC",
    "Doors & hardware",
    "Landscaping",
    "Other",
];

/// The most line items one turn's scope holds (a scope, not a catalogue).
pub const MAX_ITEMS: usize = 200;

/// A line of scope as the user adds it (by hand, or copied from a cost template).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewLineItem {
    /// Made on the device, so later offline edits can refer to it.
    pub id: Uuid,
    pub category: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_cost: Decimal,
    /// The vendor doing this line, when it is not the turn's vendor.
    pub vendor_id: Option<Uuid>,
}

/// One edited field of a line item (with the value the user saw, as for turns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineItemEdit {
    Category(Edit<String>),
    Description(Edit<String>),
    Quantity(Edit<Decimal>),
    UnitCost(Edit<Decimal>),
    Vendor(Edit<Option<Uuid>>),
}

/// A `turn_line_items` row as the shape sends it (a vendor's leaves out the cost).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct LineItem {
    pub id: Uuid,
    pub turn_id: Uuid,
    /// Order in the scope (the order lines were added).
    #[serde(deserialize_with = "pg_text::int::deserialize")]
    pub position: i32,
    pub category: String,
    pub description: String,
    pub quantity: Decimal,
    #[serde(default)]
    pub unit_cost: Option<Decimal>,
    #[serde(default)]
    pub vendor_id: Option<Uuid>,
}

impl LineItem {
    /// Quantity × unit cost, in cents (half a cent rounds up, as Postgres `round` does).
    pub fn amount(&self) -> Option<Decimal> {
        line_amount(self.quantity, self.unit_cost?)
    }

    /// The line as the timeline and the approver read it: "Paint — Walls · 2 × $150.00".
    pub fn describe(&self, with_cost: bool) -> String {
        let quantity = self.quantity.normalize();
        match self.unit_cost.filter(|_| with_cost) {
            Some(cost) => format!(
                "{} — {} · {quantity} × {}",
                self.category,
                self.description,
                format_usd(cost)
            ),
            None => format!("{} — {} · {quantity}", self.category, self.description),
        }
    }
}

/// Quantity × unit cost rounded to cents (`None` if it overflows, which validation prevents).
pub fn line_amount(quantity: Decimal, unit_cost: Decimal) -> Option<Decimal> {
    Some(
        quantity
            .checked_mul(unit_cost)?
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
    )
}

/// The turn amount a scope adds up to (`None` for an empty scope, or lines without costs).
pub fn total<'a>(items: impl IntoIterator<Item = &'a LineItem>) -> Option<Decimal> {
    let mut sum: Option<Decimal> = None;
    for item in items {
        sum = Some(sum.unwrap_or_default().checked_add(item.amount()?)?);
    }
    sum
}

impl NewLineItem {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        check_line(
            &self.category,
            &self.description,
            self.quantity,
            self.unit_cost,
            errors,
        );
    }

    /// The row it becomes, at `position` in `turn`'s scope.
    pub fn item(&self, turn: Uuid, position: i32) -> LineItem {
        LineItem {
            id: self.id,
            turn_id: turn,
            position,
            category: self.category.trim().to_string(),
            description: self.description.trim().to_string(),
            quantity: self.quantity,
            unit_cost: Some(self.unit_cost),
            vendor_id: self.vendor_id,
        }
    }
}

impl LineItemEdit {
    /// The column this edit writes.
    pub fn column(&self) -> &'static str {
        match self {
            LineItemEdit::Category(_) => "category",
            LineItemEdit::Description(_) => "description",
            LineItemEdit::Quantity(_) => "quantity",
            LineItemEdit::UnitCost(_) => "unit_cost",
            LineItemEdit::Vendor(_) => "vendor_id",
        }
    }

    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        match self {
            LineItemEdit::Category(e) => check_text("category", &e.to, 50, true, errors),
            LineItemEdit::Description(e) => check_text("description", &e.to, 500, true, errors),
            LineItemEdit::Quantity(e) => check_quantity(e.to, errors),
            LineItemEdit::UnitCost(e) => check_amount("unit_cost", e.to, errors),
            LineItemEdit::Vendor(_) => {}
        }
    }

    /// Whether the field still holds the value the user started from.
    pub fn base_holds(&self, item: &LineItem) -> bool {
        match self {
            LineItemEdit::Category(e) => item.category == e.from.trim(),
            LineItemEdit::Description(e) => item.description == e.from.trim(),
            LineItemEdit::Quantity(e) => item.quantity == e.from,
            LineItemEdit::UnitCost(e) => item.unit_cost == Some(e.from),
            LineItemEdit::Vendor(e) => item.vendor_id == e.from,
        }
    }

    /// The same edit starting from the line's current value (the user's "keep mine").
    pub fn rebased(&self, item: &LineItem) -> LineItemEdit {
        let mut edit = self.clone();
        match &mut edit {
            LineItemEdit::Category(e) => e.from = item.category.clone(),
            LineItemEdit::Description(e) => e.from = item.description.clone(),
            LineItemEdit::Quantity(e) => e.from = item.quantity,
            LineItemEdit::UnitCost(e) => e.from = item.unit_cost.unwrap_or_default(),
            LineItemEdit::Vendor(e) => e.from = item.vendor_id,
        }
        edit
    }

    pub fn apply(&self, item: &mut LineItem) {
        match self {
            LineItemEdit::Category(e) => item.category = e.to.trim().to_string(),
            LineItemEdit::Description(e) => item.description = e.to.trim().to_string(),
            LineItemEdit::Quantity(e) => item.quantity = e.to,
            LineItemEdit::UnitCost(e) => item.unit_cost = Some(e.to),
            LineItemEdit::Vendor(e) => item.vendor_id = e.to,
        }
    }
}

/// A line of scope, in a turn or a template.
fn check_line(
    category: &str,
    description: &str,
    quantity: Decimal,
    unit_cost: Decimal,
    errors: &mut Vec<FieldError>,
) {
    check_text("category", category, 50, true, errors);
    check_text("description", description, 500, true, errors);
    check_quantity(quantity, errors);
    check_amount("unit_cost", unit_cost, errors);
}

fn check_quantity(quantity: Decimal, errors: &mut Vec<FieldError>) {
    if quantity <= Decimal::ZERO {
        errors.push(FieldError::new(
            "quantity",
            "The quantity must be above zero.",
        ));
    } else if quantity > max_amount() {
        errors.push(FieldError::new("quantity", "The quantity is too large."));
    } else if quantity != quantity.round_dp(2) {
        errors.push(FieldError::new("quantity", "Use at most two decimals."));
    }
}

/// A turn's scope after a change to it (`None`: not a scope change, or one that changes
/// nothing). `items` is the turn's scope as it is; the result is what to write, in order.
pub fn apply(items: &[LineItem], change: &Change) -> Result<Option<Vec<LineItem>>, Rejection> {
    let mut after = items.to_vec();
    match change {
        Change::AddLineItems {
            turn, items: new, ..
        } => {
            let mut position = items.iter().map(|i| i.position).max().unwrap_or(0);
            for n in new {
                if after.iter().any(|i| i.id == n.id) {
                    return Err(Rejection::invalid_field(
                        "id",
                        "This line item id is already in use; try again.",
                    ));
                }
                position += 1;
                after.push(n.item(*turn, position));
            }
            if after.len() > MAX_ITEMS {
                return Err(Rejection::invalid_field(
                    "items",
                    format!("A turn's scope holds at most {MAX_ITEMS} lines."),
                ));
            }
        }
        Change::EditLineItem { item, edits, .. } => {
            let Some(line) = after.iter_mut().find(|i| i.id == *item) else {
                return Err(Rejection::NotFound {
                    message: "This line item was removed.".into(),
                });
            };
            let stale: Vec<String> = edits
                .iter()
                .filter(|e| !e.base_holds(line))
                .map(|e| e.column().to_string())
                .collect();
            if !stale.is_empty() {
                return Err(Rejection::Conflict {
                    message: "Someone else changed this line item while you were editing it."
                        .into(),
                    fields: stale,
                    current: None,
                });
            }
            edits.iter().for_each(|e| e.apply(line));
        }
        // Removed already (by someone else, or a replay): what was asked for holds.
        Change::RemoveLineItem { item, .. } => after.retain(|i| i.id != *item),
        _ => return Ok(None),
    }
    if after.iter().any(|i| i.unit_cost.is_some()) && total(&after).is_none_or(|t| t > max_amount())
    {
        return Err(Rejection::invalid_field(
            "turn_amount",
            "The scope adds up to more than a turn amount can be.",
        ));
    }
    Ok((after != items).then_some(after))
}

/// A `cost_templates` row: a typical scope for homes of a size.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct CostTemplate {
    pub id: Uuid,
    pub name: String,
    #[serde(default)]
    pub bedrooms: Option<Decimal>,
    #[serde(default)]
    pub bathrooms: Option<Decimal>,
    #[serde(default, deserialize_with = "pg_text::opt_int::deserialize")]
    pub min_sqft: Option<i32>,
    #[serde(default, deserialize_with = "pg_text::opt_int::deserialize")]
    pub max_sqft: Option<i32>,
    #[serde(deserialize_with = "pg_text::json::deserialize")]
    pub items: Vec<TemplateLine>,
    #[serde(deserialize_with = "pg_text::boolean::deserialize")]
    pub is_active: bool,
}

/// One line of a cost template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateLine {
    pub category: String,
    pub description: String,
    #[serde(deserialize_with = "pg_text::number::deserialize")]
    pub quantity: Decimal,
    #[serde(deserialize_with = "pg_text::number::deserialize")]
    pub unit_cost: Decimal,
}

impl TemplateLine {
    pub(crate) fn validate(&self, errors: &mut Vec<FieldError>) {
        check_line(
            &self.category,
            &self.description,
            self.quantity,
            self.unit_cost,
            errors,
        );
    }
}

/// What a template's lines add up to (`None` if it overflows, which validation prevents).
pub fn template_total(items: &[TemplateLine]) -> Option<Decimal> {
    items.iter().try_fold(Decimal::ZERO, |sum, l| {
        sum.checked_add(line_amount(l.quantity, l.unit_cost)?)
    })
}

/// What a template is matched against: a home's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HomeSize {
    pub bedrooms: Option<Decimal>,
    pub bathrooms: Option<Decimal>,
    pub area_sqft: Option<i32>,
}

impl CostTemplate {
    /// Whether the template is for homes like this one: each size the template names, the home
    /// has (a size the home does not record does not rule the template out).
    pub fn fits(&self, home: &HomeSize) -> bool {
        let same =
            |want: Option<Decimal>, has: Option<Decimal>| want.zip(has).is_none_or(|(w, h)| w == h);
        let area = home.area_sqft;
        same(self.bedrooms, home.bedrooms)
            && same(self.bathrooms, home.bathrooms)
            && self.min_sqft.zip(area).is_none_or(|(lo, a)| a >= lo)
            && self.max_sqft.zip(area).is_none_or(|(hi, a)| a <= hi)
    }

    /// The template's lines as new lines of a scope, with ids made on the device (`ids` yields
    /// one per line).
    pub fn lines(&self, mut ids: impl FnMut() -> Uuid) -> Vec<NewLineItem> {
        self.items
            .iter()
            .map(|l| NewLineItem {
                id: ids(),
                category: l.category.clone(),
                description: l.description.clone(),
                quantity: l.quantity,
                unit_cost: l.unit_cost,
                vendor_id: None,
            })
            .collect()
    }

    /// The template's total.
    pub fn total(&self) -> Option<Decimal> {
        template_total(&self.items)
    }
}

/// The active templates to offer for a home: those that fit it first, then the rest, each by
/// name.
pub fn templates_for<'a>(
    templates: impl IntoIterator<Item = &'a CostTemplate>,
    home: &HomeSize,
) -> Vec<&'a CostTemplate> {
    let mut offered: Vec<&CostTemplate> = templates.into_iter().filter(|t| t.is_active).collect();
    offered.sort_by(|a, b| (!a.fits(home), &a.name, a.id).cmp(&(!b.fits(home), &b.name, b.id)));
    offered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    fn line(n: u128, quantity: &str, cost: &str) -> NewLineItem {
        NewLineItem {
            id: Uuid::from_u128(n),
            category: " Paint ".into(),
            description: format!("Room {n}"),
            quantity: d(quantity),
            unit_cost: d(cost),
            vendor_id: None,
        }
    }

    fn add(lines: Vec<NewLineItem>) -> Change {
        Change::AddLineItems {
            turn: Uuid::from_u128(99),
            template: None,
            items: lines,
        }
    }

    #[test]
    fn the_amount_is_the_sum_of_the_lines_in_cents() {
        let scope = apply(
            &[],
            &add(vec![line(1, "2", "150"), line(2, "1.5", "33.33")]),
        )
        .expect("valid")
        .expect("changed");
        assert_eq!(scope.iter().map(|i| i.position).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(scope[0].category, "Paint", "trimmed");
        // 1.5 × 33.33 = 49.995 → 50.00 (half a cent up, as Postgres rounds).
        assert_eq!(scope[1].amount(), Some(d("50.00")));
        assert_eq!(total(&scope), Some(d("350.00")));
        assert_eq!(total(&[]), None);
        let edit = Change::EditLineItem {
            turn: Uuid::from_u128(99),
            item: Uuid::from_u128(1),
            edits: vec![LineItemEdit::Quantity(Edit {
                from: d("2"),
                to: d("3"),
            })],
        };
        let edited = apply(&scope, &edit).expect("valid").expect("changed");
        assert_eq!(total(&edited), Some(d("500.00")));
        // The same edit again no longer starts from what the line holds: a conflict; rebased
        // on the line as it is ("keep mine"), it applies.
        assert!(matches!(
            apply(&edited, &edit),
            Err(Rejection::Conflict { .. })
        ));
        let Change::EditLineItem { turn, item, edits } = &edit else {
            unreachable!("an edit")
        };
        let mine = Change::EditLineItem {
            turn: *turn,
            item: *item,
            edits: edits.iter().map(|e| e.rebased(&edited[0])).collect(),
        };
        assert_eq!(apply(&edited, &mine), Ok(None), "already holds it");
        let remove = Change::RemoveLineItem {
            turn: Uuid::from_u128(99),
            item: Uuid::from_u128(1),
        };
        let removed = apply(&edited, &remove).expect("valid").expect("changed");
        assert_eq!(total(&removed), Some(d("50.00")));
        assert_eq!(apply(&removed, &remove), Ok(None), "removed already");
        // A vendor's copy has no costs, so no total.
        let unpriced = LineItem {
            unit_cost: None,
            ..removed[0].clone()
        };
        assert_eq!(total(std::slice::from_ref(&unpriced)), None);
        assert_eq!(unpriced.describe(true), "Paint — Room 2 · 1.5");
        assert_eq!(removed[0].describe(true), "Paint — Room 2 · 1.5 × $33.33");
    }

    #[test]
    fn templates_that_fit_the_home_come_first_and_copy_into_lines() {
        let template: CostTemplate = serde_json::from_str(
            r#"{"id":"00000000-0000-0000-0000-000000000001","name":"2 bed / 1 bath",
                "bedrooms":"2.0","bathrooms":"1.0","min_sqft":null,"max_sqft":"1100",
                "items":"[{\"category\":\"Paint\",\"description\":\"Walls\",\"quantity\":\"2\",\"unit_cost\":\"150.00\"},{\"category\":\"Cleaning\",\"description\":\"Deep clean\",\"quantity\":1,\"unit_cost\":275.5}]",
                "is_active":"t"}"#,
        )
        .expect("template row");
        assert_eq!(template.total(), Some(d("575.50")));
        let other = CostTemplate {
            id: Uuid::from_u128(2),
            name: "1 bed".into(),
            bedrooms: Some(d("1")),
            bathrooms: None,
            min_sqft: None,
            max_sqft: None,
            items: vec![],
            is_active: true,
        };
        let home = HomeSize {
            bedrooms: Some(d("2")),
            bathrooms: Some(d("1")),
            area_sqft: Some(950),
        };
        assert!(template.fits(&home) && !other.fits(&home));
        let all = [other.clone(), template.clone()];
        let offered = templates_for(&all, &home);
        assert_eq!(offered[0].id, template.id);
        let big = HomeSize {
            area_sqft: Some(1500),
            ..home
        };
        assert!(!template.fits(&big));
        assert!(template.fits(&HomeSize::default()), "unknown size");
        let mut n = 10;
        let lines = template.lines(|| {
            n += 1;
            Uuid::from_u128(n)
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].id, Uuid::from_u128(12));
        let scope = apply(&[], &add(lines)).expect("valid").expect("changed");
        assert_eq!(total(&scope), template.total());
    }

    #[test]
    fn bad_lines_are_refused_by_field() {
        let fields = |change: Change| -> Vec<String> {
            change
                .validate()
                .err()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        let mut bad = line(1, "0", "-1");
        bad.description = " ".into();
        assert_eq!(
            fields(add(vec![bad])),
            ["description", "quantity", "unit_cost"]
        );
        assert_eq!(fields(add(vec![line(1, "0.001", "1")])), ["quantity"]);
        assert_eq!(fields(add(vec![])), ["items"]);
        // Lines that each fit but together exceed what a turn amount holds.
        let big = vec![line(1, "1", "99999999.99"), line(2, "1", "1")];
        assert!(apply(&[], &add(big)).is_err());
        let dup = apply(&[], &add(vec![line(1, "1", "1")])).expect("valid");
        assert!(apply(&dup.unwrap_or_default(), &add(vec![line(1, "1", "1")])).is_err());
    }
}
