//! The stored form of the device's cards: what repeats (properties with their manager, stages,
//! vendors) is kept once in tables, and each card is an array pointing into them — under half
//! the size of the cards as JSON objects (tested), so a large board fits local storage's quota.
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use turns::model::TurnCard;
use turns::{ApprovalStatus, Decimal};
use uuid::Uuid;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cards {
    properties: Vec<Property>,
    stages: Vec<Uuid>,
    /// id, name
    vendors: Vec<(Uuid, Option<String>)>,
    rows: Vec<Row>,
}

/// id, code, name, manager id, manager name
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Property(Uuid, String, String, Option<Uuid>, Option<String>);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Row(
    Uuid,
    String,
    u32,
    u32,
    Option<u32>,
    Option<String>,
    Option<chrono::NaiveDate>,
    Option<chrono::NaiveDate>,
    Option<chrono::NaiveDate>,
    Option<Decimal>,
    Option<Decimal>,
    Option<ApprovalStatus>,
    i32,
    // Added after rows were first stored: rows stored before read as not accepted, not declined.
    #[serde(default)] bool,
    #[serde(default)] Option<Uuid>,
    #[serde(default)] Option<String>,
    // QC (format 2).
    #[serde(default)] bool,
    #[serde(default)] Option<String>,
    // The approver's reason for a rejection (format 3).
    #[serde(default)] Option<String>,
    // Since when it waits for its approver (format 4).
    #[serde(default)] Option<chrono::DateTime<chrono::Utc>>,
);

impl Cards {
    pub fn encode(cards: &[TurnCard]) -> Cards {
        let mut out = Cards::default();
        let (mut props, mut stages, mut vendors) = (HashMap::new(), HashMap::new(), HashMap::new());
        for c in cards {
            let property = *props.entry(c.property_id).or_insert_with(|| {
                out.properties.push(Property(
                    c.property_id,
                    c.property_code.clone(),
                    c.property_name.clone(),
                    c.pm_id,
                    c.pm_name.clone(),
                ));
                out.properties.len() as u32 - 1
            });
            let stage = *stages.entry(c.stage_id).or_insert_with(|| {
                out.stages.push(c.stage_id);
                out.stages.len() as u32 - 1
            });
            let vendor = c.vendor_id.map(|v| {
                *vendors.entry(v).or_insert_with(|| {
                    out.vendors.push((v, c.vendor_name.clone()));
                    out.vendors.len() as u32 - 1
                })
            });
            out.rows.push(Row(
                c.id,
                c.turn_id.clone(),
                property,
                stage,
                vendor,
                c.wo_number.clone(),
                c.move_out_date,
                c.expected_completion_date,
                c.turn_completion_date,
                c.turn_amount,
                c.approved_turn_amount,
                c.approval_status,
                c.version,
                c.vendor_accepted,
                c.declined_vendor_id,
                c.decline_reason.clone(),
                c.qc_passed,
                c.qc_failures.clone(),
                c.rejection_reason.clone(),
                c.awaiting_since,
            ));
        }
        out
    }

    /// The cards back; rows pointing outside the tables (a damaged store) are skipped.
    pub fn decode(&self) -> Vec<TurnCard> {
        self.rows
            .iter()
            .filter_map(|r| {
                let Property(property_id, property_code, property_name, pm_id, pm_name) =
                    self.properties.get(r.2 as usize)?.clone();
                let stage_id = *self.stages.get(r.3 as usize)?;
                let vendor = match r.4 {
                    Some(i) => Some(self.vendors.get(i as usize)?.clone()),
                    None => None,
                };
                Some(TurnCard {
                    id: r.0,
                    turn_id: r.1.clone(),
                    property_id,
                    property_code,
                    property_name,
                    stage_id,
                    pm_id,
                    pm_name,
                    vendor_id: vendor.as_ref().map(|v| v.0),
                    vendor_name: vendor.and_then(|v| v.1),
                    wo_number: r.5.clone(),
                    move_out_date: r.6,
                    expected_completion_date: r.7,
                    turn_completion_date: r.8,
                    turn_amount: r.9,
                    approved_turn_amount: r.10,
                    approval_status: r.11,
                    version: r.12,
                    vendor_accepted: r.13,
                    declined_vendor_id: r.14,
                    decline_reason: r.15.clone(),
                    qc_passed: r.16,
                    qc_failures: r.17.clone(),
                    rejection_reason: r.18.clone(),
                    awaiting_since: r.19,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(i: u128, property: u128, vendor: Option<u128>) -> TurnCard {
        TurnCard {
            id: Uuid::from_u128(i),
            turn_id: format!("T-{i}"),
            property_id: Uuid::from_u128(property),
            property_code: format!("P-{property}"),
            property_name: format!("Home {property}"),
            stage_id: Uuid::from_u128(900 + i % 3),
            pm_id: Some(Uuid::from_u128(800)),
            pm_name: Some("Pat Morgan".into()),
            vendor_id: vendor.map(Uuid::from_u128),
            vendor_name: vendor.map(|v| format!("Vendor {v}")),
            wo_number: i.is_multiple_of(2).then(|| format!("WO-{i}")),
            move_out_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 1),
            expected_completion_date: None,
            turn_completion_date: None,
            turn_amount: Some(Decimal::new(123456, 2)),
            approved_turn_amount: None,
            approval_status: Some(ApprovalStatus::DfoApprovalNeeded),
            version: i as i32,
            vendor_accepted: i.is_multiple_of(5),
            declined_vendor_id: None,
            decline_reason: i.is_multiple_of(7).then(|| "Booked".into()),
            qc_passed: i.is_multiple_of(4),
            qc_failures: i.is_multiple_of(6).then(|| "Floors: stains".into()),
            rejection_reason: i.is_multiple_of(8).then(|| "Quote too high".into()),
            awaiting_since: chrono::DateTime::from_timestamp(1_764_000_000 + i as i64, 0),
        }
    }

    #[test]
    fn round_trips_and_is_smaller_than_plain_json() {
        let cards: Vec<TurnCard> = (0..300)
            .map(|i| card(i, i % 40, (!i.is_multiple_of(3)).then_some(i % 5)))
            .collect();
        let stored = serde_json::to_string(&Cards::encode(&cards)).expect("encodes");
        let back: Cards = serde_json::from_str(&stored).expect("decodes");
        assert_eq!(back.decode(), cards);
        let plain = serde_json::to_string(&cards).expect("encodes").len();
        assert!(stored.len() * 2 < plain, "{} vs {plain}", stored.len());
    }

    #[test]
    fn rows_stored_before_the_vendor_s_answer_was_kept_still_read() {
        let cards = vec![card(1, 1, Some(2))];
        let mut stored: serde_json::Value =
            serde_json::to_value(Cards::encode(&cards)).expect("encodes");
        let row = stored["rows"][0].as_array_mut().expect("row");
        row.truncate(13);
        let back: Cards = serde_json::from_value(stored).expect("decodes");
        assert_eq!(
            back.decode(),
            vec![TurnCard {
                vendor_accepted: false,
                decline_reason: None,
                awaiting_since: None,
                ..cards[0].clone()
            }]
        );
    }
}
