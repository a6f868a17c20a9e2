//! What a turn becomes after an edit, a submission or an approval decision: the stage gates and
//! approval routing, decided once. The server's mutation handler writes what these return; the
//! browser shows it at once (its optimistic view), so both sides agree by construction. Pure:
//! the caller supplies the facts (thresholds, the active stages, whether the home is core, the
//! server's date). Checks that need the database (is the vendor active and approved?) stay with
//! the server.
use crate::approval::{ApprovalLevel, ApprovalStatus, Thresholds};
use crate::line_items::{self, LineItem};
use crate::model::{Board, Stage, TurnCard, COMPLETED_VISIBLE_DAYS};
use crate::mutation::{Change, Edit, EditRight, Rejection, TurnEdit};
use crate::policy::{Actor, TurnFacts};
use crate::qc::{self, QcItem, QcResult};
use crate::role::Role;
use crate::Decimal;
use chrono::NaiveDate;

/// How far ahead a move-out may be planned (further is a typo, or not a turn yet).
const MOVE_OUT_AHEAD_DAYS: u64 = 365;

/// The facts a turn's rules depend on.
#[derive(Clone, Copy, Debug)]
pub struct TurnRules<'a> {
    pub thresholds: &'a Thresholds,
    /// The active stages (any order).
    pub stages: &'a [Stage],
    /// The turn's home is core (non-core homes need head office sooner).
    pub is_core: bool,
    /// The server's date: a turn entering the complete stage is completed on it.
    pub today: NaiveDate,
    /// The turn has line items: its amount is their sum, never typed.
    pub scoped: bool,
}

/// A turn may be cancelled until its work is complete (a completed turn is history).
pub fn may_cancel(turn: &TurnCard) -> Result<(), Rejection> {
    match turn.turn_completion_date {
        Some(_) => Err(Rejection::invalid_field(
            "turn_completion_date",
            "A completed turn cannot be cancelled.",
        )),
        None => Ok(()),
    }
}

/// The vendor takes the work on (nothing to do when they already have).
fn accept(before: &TurnCard) -> Result<Option<TurnCard>, Rejection> {
    if before.vendor_id.is_none() {
        return Err(Rejection::invalid_field(
            "vendor_id",
            "This job has no vendor to accept it.",
        ));
    }
    if before.vendor_accepted {
        return Ok(None);
    }
    Ok(Some(TurnCard {
        vendor_accepted: true,
        ..before.clone()
    }))
}

/// The vendor turns the work down: the turn goes back to its managers without a vendor, with
/// who declined and why. Finished work is not declined.
fn decline(before: &TurnCard, reason: &str) -> Result<TurnCard, Rejection> {
    let Some(vendor) = before.vendor_id else {
        return Err(Rejection::invalid_field(
            "vendor_id",
            "This job has no vendor to decline it.",
        ));
    };
    if before.turn_completion_date.is_some() {
        return Err(Rejection::invalid_field(
            "turn_completion_date",
            "Completed work cannot be declined.",
        ));
    }
    Ok(TurnCard {
        vendor_id: None,
        vendor_name: None,
        vendor_accepted: false,
        declined_vendor_id: Some(vendor),
        decline_reason: Some(reason.trim().to_string()),
        ..before.clone()
    })
}

/// Whether the actor may make this edit: the turn's managers make any; the vendor doing the work
/// records progress and completion.
pub fn may_edit(actor: &Actor, turn: &TurnFacts, edit: &TurnEdit) -> Result<(), Rejection> {
    let allowed = actor.can_manage_turn(turn)
        || (edit.right() == EditRight::Progress && actor.can_record_progress(turn));
    if allowed {
        return Ok(());
    }
    Err(Rejection::forbidden(if actor.role == Role::Vendor {
        format!(
            "Vendors record progress and completion only; ask the property manager to change the {}.",
            edit.label()
        )
    } else {
        format!("You may not change the {} of this turn.", edit.label())
    }))
}

/// Whether a turn shows on the board on `today`: open turns always, completed ones for
/// `COMPLETED_VISIBLE_DAYS` after completion. (`queries::turn_board` says the same in SQL.)
pub fn on_board(turn: &TurnCard, stages: &[Stage], today: NaiveDate) -> bool {
    let complete = stages
        .iter()
        .any(|s| s.id == turn.stage_id && s.is_complete_stage);
    !complete
        || turn
            .turn_completion_date
            .is_none_or(|d| d >= board_cutoff(today))
}

/// The oldest completion date a completed turn stays on the board with; older ones are History.
pub fn board_cutoff(today: NaiveDate) -> NaiveDate {
    today - chrono::Days::new(COMPLETED_VISIBLE_DAYS as u64)
}

impl Board {
    /// The rules for one of the board's turns, with the facts the board carries.
    pub fn rules_for(&self, turn: &TurnCard) -> TurnRules<'_> {
        TurnRules {
            thresholds: &self.thresholds,
            stages: &self.stages,
            is_core: !self.non_core_properties.contains(&turn.property_id),
            today: self.today,
            // The board carries no scopes: callers that hold them say (see `scoped`).
            scoped: false,
        }
    }
}

impl TurnRules<'_> {
    /// The turn after a change to it (`None`: the change leaves it as it is, or is not a change
    /// to an existing turn). Authorization is the caller's: see `may_edit` and the policy.
    pub fn apply(&self, before: &TurnCard, change: &Change) -> Result<Option<TurnCard>, Rejection> {
        match change {
            Change::EditTurn { edits, .. } => {
                let after = self.edit(before, edits)?;
                Ok((after != *before).then_some(after))
            }
            Change::SubmitForApproval { .. } => self.submit(before),
            Change::CancelTurn { .. } => may_cancel(before).map(|()| None),
            Change::AcceptWork { .. } => accept(before),
            Change::DeclineWork { reason, .. } => decline(before, reason).map(Some),
            Change::DecideApproval {
                approve,
                amount,
                reason,
                ..
            } => match before.approval_status.and_then(ApprovalStatus::awaiting) {
                Some(level) => self
                    .decide(before, level, *approve, *amount, reason.as_deref())
                    .map(Some),
                None => Ok(None),
            },
            // The amount follows the scope (`rescope`); QC needs the checklist (`inspect`);
            // notes and photos leave the turn as it is.
            Change::RecordQc { .. }
            | Change::AddNote { .. }
            | Change::AddPhoto { .. }
            | Change::MarkRead { .. }
            | Change::AddLineItems { .. }
            | Change::EditLineItem { .. }
            | Change::RemoveLineItem { .. }
            | Change::CreateTurn(_)
            | Change::CreateProperty(_)
            | Change::UpdateProperty { .. }
            | Change::Admin(_) => Ok(None),
        }
    }

    /// The turn after these edits (already allowed, and based on its current values): an amount
    /// no longer covered by its approval restarts approval; a new stage must pass its gates.
    /// The thresholds and stages are read only when the amount or the stage changes (a caller
    /// may skip loading them otherwise).
    pub fn edit(&self, before: &TurnCard, edits: &[TurnEdit]) -> Result<TurnCard, Rejection> {
        let mut after = before.clone();
        for e in edits {
            e.apply(&mut after);
        }
        if self.scoped && after.turn_amount != before.turn_amount {
            // A scoped turn's amount is its lines' sum (`rescope`), never typed.
            return Err(Rejection::invalid_field(
                "turn_amount",
                "The amount is the sum of the scope's line items: change those instead.",
            ));
        }
        if after == *before {
            return Ok(after);
        }
        if after.turn_amount != before.turn_amount && has_approval(&after) && !self.covers(&after) {
            self.start_approval(&mut after, false);
        }
        if after.stage_id != before.stage_id {
            // Sent back to earlier work: what QC passed no longer holds.
            if self.order_of(after.stage_id) < self.order_of(before.stage_id) {
                after.qc_passed = false;
            }
            self.enter_stage(&mut after)?;
        }
        // After the stage: entering the complete stage dates the turn today.
        self.dates_in_order(before, &after)?;
        Ok(after)
    }

    /// A turn's dates read in order (move-out, then expected completion, then completion) and
    /// are plausible: checked when an edit changes them, so an old row's odd dates do not block
    /// unrelated edits. (Completion is dated by the device's clock, which the page's `today`
    /// may trail: it is not checked against `today`.)
    fn dates_in_order(&self, before: &TurnCard, after: &TurnCard) -> Result<(), Rejection> {
        let changed = |f: fn(&TurnCard) -> Option<NaiveDate>| f(after) != f(before);
        let out = after.move_out_date;
        if let (Some(done), Some(out)) = (after.turn_completion_date, out) {
            if done < out {
                return Err(Rejection::invalid_field(
                    "turn_completion_date",
                    "Completion cannot be before the move-out date.",
                ));
            }
        }
        if changed(|t| t.move_out_date) || changed(|t| t.expected_completion_date) {
            if let (Some(expected), Some(out)) = (after.expected_completion_date, out) {
                if expected < out {
                    return Err(Rejection::invalid_field(
                        "expected_completion_date",
                        "Expected completion cannot be before the move-out date.",
                    ));
                }
            }
        }
        if changed(|t| t.move_out_date)
            && out.is_some_and(|d| d > self.today + chrono::Days::new(MOVE_OUT_AHEAD_DAYS))
        {
            return Err(Rejection::invalid_field(
                "move_out_date",
                "A move-out more than a year ahead is not a turn yet.",
            ));
        }
        Ok(())
    }

    /// The turn after its scope changed (`scope`: its line items now): the amount is their sum,
    /// and a sum no longer covered by the turn's approval restarts approval, as a typed amount
    /// does. `None`: the amount stays.
    pub fn rescope(
        &self,
        before: &TurnCard,
        scope: &[LineItem],
    ) -> Result<Option<TurnCard>, Rejection> {
        let to = line_items::total(scope);
        if to == before.turn_amount {
            return Ok(None);
        }
        let amount = TurnEdit::Amount(Edit {
            from: before.turn_amount,
            to,
        });
        let unscoped = TurnRules {
            scoped: false,
            ..*self
        };
        unscoped.edit(before, &[amount]).map(Some)
    }

    /// The turn after the inspector's QC of its stage (`checklist`: the stage's items, and any
    /// removed since, which the server passes): passed, it may enter a stage that requires QC;
    /// failed, it goes back to the stage before, with what failed. Every active item must be
    /// answered. An answer for an item removed while the inspection waited on a device with no
    /// signal still counts (a failure found is not dropped); an item added since must be checked.
    pub fn inspect(
        &self,
        before: &TurnCard,
        checklist: &[QcItem],
        results: &[QcResult],
    ) -> Result<TurnCard, Rejection> {
        if !checklist.iter().any(|i| i.is_active) {
            return Err(Rejection::invalid_field(
                "stage_id",
                "This stage has no QC checklist.",
            ));
        }
        let answers = |item: &QcItem| results.iter().filter(|r| r.item == item.id).count();
        let known = results
            .iter()
            .all(|r| checklist.iter().any(|i| i.id == r.item));
        // Each active item once; a removed one once at most.
        let each_once = checklist.iter().all(|i| match answers(i) {
            1 => true,
            0 => !i.is_active,
            _ => false,
        });
        if !known || !each_once {
            return Err(Rejection::invalid_field(
                "results",
                "Check every item of this stage's checklist (it may have changed).",
            ));
        }
        let mut after = before.clone();
        after.qc_failures = qc::failures(checklist, results);
        after.qc_passed = after.qc_failures.is_none();
        if !after.qc_passed {
            // Back to the work before this stage.
            let order = self.order_of(before.stage_id);
            if let Some(back) = self
                .stages
                .iter()
                .filter(|s| order.is_some_and(|o| s.display_order < o))
                .max_by_key(|s| s.display_order)
            {
                after.stage_id = back.id;
            }
        }
        Ok(after)
    }

    fn order_of(&self, stage: uuid::Uuid) -> Option<i32> {
        self.stages
            .iter()
            .find(|s| s.id == stage)
            .map(|s| s.display_order)
    }

    /// The turn after its managers submit it for approval (`None`: it already waits).
    pub fn submit(&self, before: &TurnCard) -> Result<Option<TurnCard>, Rejection> {
        if before.turn_amount.is_none() {
            return Err(Rejection::invalid_field(
                "turn_amount",
                "Set the turn amount first.",
            ));
        }
        match before.approval_status {
            Some(ApprovalStatus::DfoApprovalNeeded | ApprovalStatus::HoApprovalNeeded) => {
                return Ok(None)
            }
            _ if self.covers(before) => {
                return Err(Rejection::invalid_field(
                    "approval_status",
                    "This amount is approved already.",
                ))
            }
            _ => {}
        }
        let mut after = before.clone();
        self.start_approval(&mut after, true);
        Ok(Some(after))
    }

    /// The turn after the level it waits for decides: approved (`amount`, or the turn's amount)
    /// goes on to head office when what will be spent needs it; rejected stops, with the
    /// approver's reason on the turn until it is submitted again.
    pub fn decide(
        &self,
        before: &TurnCard,
        level: ApprovalLevel,
        approve: bool,
        amount: Option<Decimal>,
        reason: Option<&str>,
    ) -> Result<TurnCard, Rejection> {
        let mut after = before.clone();
        if !approve {
            after.approval_status = Some(ApprovalStatus::Rejected);
            after.rejection_reason = reason
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            return Ok(after);
        }
        after.rejection_reason = None;
        let Some(a) = amount.or(after.turn_amount) else {
            return Err(Rejection::invalid_field(
                "amount",
                "There is no amount to approve.",
            ));
        };
        after.approved_turn_amount = Some(a);
        after.approval_status =
            Some(
                self.thresholds
                    .after_approval(level, a, after.turn_amount, self.is_core),
            );
        Ok(after)
    }

    /// Approved for what the turn will cost, by every level that needs to.
    pub fn covers(&self, card: &TurnCard) -> bool {
        self.thresholds.covers(
            card.approval_status,
            card.approved_turn_amount,
            card.turn_amount,
            self.is_core,
        )
    }

    /// Start (or restart) approval for the card's amount: self-approve within the PM's limit,
    /// otherwise queue for the level the amount needs (`from_dfo`: always the DFO first).
    fn start_approval(&self, card: &mut TurnCard, from_dfo: bool) {
        let Some(amount) = card.turn_amount else {
            return;
        };
        // A new request: the last rejection's reason was answered by it.
        card.rejection_reason = None;
        match self.thresholds.required_level(amount, self.is_core) {
            None => {
                card.approved_turn_amount = Some(amount);
                card.approval_status = Some(ApprovalStatus::Pending);
            }
            Some(level) => {
                let level = if from_dfo { ApprovalLevel::Dfo } else { level };
                card.approval_status = Some(level.needed_status());
            }
        }
    }

    /// A turn moving into its stage: the stage's gates, approval started on entering the
    /// approval stage (and required beyond it), completion dated on entering the complete stage.
    fn enter_stage(&self, turn: &mut TurnCard) -> Result<(), Rejection> {
        let Some(stage) = self.stages.iter().find(|s| s.id == turn.stage_id) else {
            return Err(Rejection::invalid_field(
                "stage_id",
                "That stage does not exist.",
            ));
        };
        let gate = |message: String| Rejection::invalid_field("stage_id", message);
        if stage.is_amount_required && turn.turn_amount.is_none() {
            return Err(gate(format!(
                "Set the turn amount before moving it to {}.",
                stage.name
            )));
        }
        if stage.requires_qc && !turn.qc_passed {
            return Err(gate(format!("Pass QC before moving it to {}.", stage.name)));
        }
        if stage.is_vendor_required && turn.vendor_id.is_none() {
            return Err(gate(format!(
                "Assign a vendor before moving it to {}.",
                stage.name
            )));
        }
        let approval_before = self
            .stages
            .iter()
            .any(|s| s.requires_approval && s.display_order < stage.display_order);
        let covered = self.covers(turn);
        if stage.requires_approval && !covered {
            // Entering the approval stage starts the approval.
            self.start_approval(turn, true);
        } else if approval_before && !covered {
            return Err(gate(format!(
                "The turn amount must be approved before the turn moves to {}.",
                stage.name
            )));
        }
        if stage.is_complete_stage && turn.turn_completion_date.is_none() {
            turn.turn_completion_date = Some(self.today);
        }
        Ok(())
    }
}

/// Someone approved an amount on this card (it may no longer cover the current amount).
fn has_approval(card: &TurnCard) -> bool {
    card.approved_turn_amount.is_some()
        && matches!(
            card.approval_status,
            Some(
                ApprovalStatus::Pending | ApprovalStatus::DfoApproved | ApprovalStatus::HoApproved
            )
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn d(v: i64) -> Decimal {
        Decimal::new(v, 0)
    }

    fn stage(order: i32, approval: bool, complete: bool) -> Stage {
        Stage {
            id: Uuid::from_u128(order as u128 + 1),
            name: format!("S{order}"),
            display_order: order,
            color: "#000".into(),
            is_amount_required: approval,
            is_vendor_required: order >= 4,
            requires_approval: approval,
            is_complete_stage: complete,
            requires_qc: false,
        }
    }

    fn stages() -> Vec<Stage> {
        (1..=7).map(|o| stage(o, o == 3, o == 7)).collect()
    }

    /// The rules for a core home on 2 December 2026.
    fn core_rules<'a>(limits: &'a Thresholds, stages: &'a [Stage]) -> TurnRules<'a> {
        TurnRules {
            thresholds: limits,
            stages,
            is_core: true,
            today: NaiveDate::from_ymd_opt(2026, 12, 2).expect("date"),
            scoped: false,
        }
    }

    #[test]
    fn a_vendor_accepts_or_declines_and_a_new_vendor_starts_afresh() {
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let (turn, vendor, other) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        let card = TurnCard {
            id: turn,
            vendor_id: Some(vendor),
            ..TurnCard::default()
        };
        let accepted = rules
            .apply(&card, &Change::AcceptWork { turn })
            .expect("allowed")
            .expect("changed");
        assert!(accepted.vendor_accepted);
        assert_eq!(
            rules.apply(&accepted, &Change::AcceptWork { turn }),
            Ok(None)
        );
        let decline = Change::DeclineWork {
            turn,
            reason: " Booked that week ".into(),
        };
        let declined = rules
            .apply(&accepted, &decline)
            .expect("allowed")
            .expect("changed");
        assert_eq!(
            (
                declined.vendor_id,
                declined.vendor_accepted,
                declined.declined_vendor_id
            ),
            (None, false, Some(vendor))
        );
        assert_eq!(declined.decline_reason.as_deref(), Some("Booked that week"));
        // Nothing to accept or decline without a vendor; finished work is not declined.
        assert!(rules
            .apply(&declined, &Change::AcceptWork { turn })
            .is_err());
        let finished = TurnCard {
            turn_completion_date: NaiveDate::from_ymd_opt(2026, 12, 1),
            ..card.clone()
        };
        assert!(rules.apply(&finished, &decline).is_err());
        // The managers assign another vendor: the decline is past, the new one has to accept.
        let reassigned = rules
            .edit(
                &declined,
                &[TurnEdit::Vendor(crate::mutation::Edit {
                    from: None,
                    to: Some(other),
                })],
            )
            .expect("assigned");
        assert_eq!(
            (
                reassigned.vendor_accepted,
                reassigned.declined_vendor_id,
                reassigned.decline_reason
            ),
            (false, None, None)
        );
    }

    #[test]
    fn a_scope_sets_the_amount_and_a_larger_sum_asks_for_approval_again() {
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let turn = Uuid::from_u128(1);
        let line = |n: u128, cost: i64| {
            crate::line_items::NewLineItem {
                id: Uuid::from_u128(n),
                category: "Paint".into(),
                description: "Walls".into(),
                quantity: d(1),
                unit_cost: d(cost),
                vendor_id: None,
            }
            .item(turn, n as i32)
        };
        // Self-approved at 800 (within the PM's limit).
        let approved = TurnCard {
            id: turn,
            turn_amount: Some(d(800)),
            approved_turn_amount: Some(d(800)),
            approval_status: Some(ApprovalStatus::Pending),
            ..TurnCard::default()
        };
        let same = [line(1, 500), line(2, 300)];
        assert_eq!(rules.rescope(&approved, &same), Ok(None));
        let more = [line(1, 500), line(2, 300), line(3, 2000)];
        let after = rules
            .rescope(&approved, &more)
            .expect("allowed")
            .expect("changed");
        assert_eq!(after.turn_amount, Some(d(2800)));
        assert_eq!(
            after.approval_status,
            Some(ApprovalStatus::DfoApprovalNeeded)
        );
        let emptied = rules.rescope(&approved, &[]).expect("allowed");
        assert_eq!(emptied.and_then(|c| c.turn_amount), None);
        // A scoped turn's amount is not typed; its scope still sets it.
        let scoped = TurnRules {
            scoped: true,
            ..rules
        };
        let typed = TurnEdit::Amount(Edit {
            from: approved.turn_amount,
            to: Some(d(5)),
        });
        assert!(scoped
            .edit(&approved, std::slice::from_ref(&typed))
            .is_err());
        assert!(rules.edit(&approved, &[typed]).is_ok());
        assert!(scoped.rescope(&approved, &more).is_ok());
    }

    #[test]
    fn a_failed_qc_sends_the_turn_back_and_only_a_passed_one_lets_it_into_a_qc_gated_stage() {
        let limits = Thresholds::default();
        let mut stages = stages();
        stages[6].requires_qc = true;
        let rules = core_rules(&limits, &stages);
        let item = |n: u128, stage: &Stage| QcItem {
            id: Uuid::from_u128(100 + n),
            stage_id: stage.id,
            position: n as i32,
            label: format!("Item {n}"),
            is_active: true,
        };
        let list = [item(1, &stages[5]), item(2, &stages[5])];
        let at_qc = TurnCard {
            stage_id: stages[5].id,
            turn_amount: Some(d(800)),
            approved_turn_amount: Some(d(800)),
            approval_status: Some(ApprovalStatus::Pending),
            vendor_id: Some(Uuid::from_u128(99)),
            ..TurnCard::default()
        };
        let to_ready = |card: &TurnCard| {
            rules.edit(
                card,
                &[TurnEdit::Stage(Edit {
                    from: card.stage_id,
                    to: stages[6].id,
                })],
            )
        };
        assert!(to_ready(&at_qc).is_err(), "not inspected");
        let result = |n: u128, passed: bool, note: Option<&str>| QcResult {
            item: Uuid::from_u128(100 + n),
            passed,
            note: note.map(str::to_string),
        };
        let failed = rules
            .inspect(
                &at_qc,
                &list,
                &[
                    result(1, true, None),
                    result(2, false, Some("Marks in the hall")),
                ],
            )
            .expect("recorded");
        assert_eq!(failed.stage_id, stages[4].id, "back to the work");
        assert_eq!(
            failed.qc_failures.as_deref(),
            Some("Item 2: Marks in the hall")
        );
        assert!(!failed.qc_passed);
        // Every item, once: a missing one (or one from another checklist) is refused.
        assert!(rules
            .inspect(&at_qc, &list, &[result(1, true, None)])
            .is_err());
        assert!(rules
            .inspect(
                &at_qc,
                &list[..1],
                &[result(1, true, None), result(2, true, None)]
            )
            .is_err());
        let passed = rules
            .inspect(
                &at_qc,
                &list,
                &[result(1, true, None), result(2, true, None)],
            )
            .expect("recorded");
        assert!(passed.qc_passed && passed.qc_failures.is_none());
        // Item 2 removed while the inspection waited offline: its answer still counts (a failure
        // found stands), and without one the rest suffices; an item added since must be checked.
        let removed = [
            list[0].clone(),
            QcItem {
                is_active: false,
                ..list[1].clone()
            },
        ];
        let late = rules
            .inspect(
                &at_qc,
                &removed,
                &[result(1, true, None), result(2, false, Some("Scuffs"))],
            )
            .expect("recorded");
        assert_eq!(late.qc_failures.as_deref(), Some("Item 2: Scuffs"));
        assert!(rules
            .inspect(&at_qc, &removed, &[result(1, true, None)])
            .is_ok_and(|t| t.qc_passed));
        let added = [list[0].clone(), list[1].clone(), item(3, &stages[5])];
        assert!(rules
            .inspect(
                &at_qc,
                &added,
                &[result(1, true, None), result(2, true, None)]
            )
            .is_err());
        let ready = to_ready(&passed).expect("passed QC");
        assert!(ready.turn_completion_date.is_some());
        // Sent back to earlier work, it must pass again.
        let reopened = rules
            .edit(
                &passed,
                &[TurnEdit::Stage(Edit {
                    from: passed.stage_id,
                    to: stages[4].id,
                })],
            )
            .expect("moved back");
        assert!(!reopened.qc_passed);
        // A failed item needs a note.
        let change = Change::RecordQc {
            turn: at_qc.id,
            results: vec![result(1, false, Some("  "))],
        };
        assert_eq!(change.validate().expect_err("no note")[0].field, "note");
    }

    #[test]
    fn a_dfo_approval_above_the_head_office_threshold_goes_on_to_head_office() {
        // The browser once showed "DFO approved" here while the server asked head office.
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let card = TurnCard {
            turn_amount: Some(d(9000)),
            approval_status: Some(ApprovalStatus::DfoApprovalNeeded),
            ..TurnCard::default()
        };
        let after = rules
            .decide(&card, ApprovalLevel::Dfo, true, None, None)
            .expect("decided");
        assert_eq!(
            after.approval_status,
            Some(ApprovalStatus::HoApprovalNeeded)
        );
        assert_eq!(after.approved_turn_amount, Some(d(9000)));
        let after = rules
            .decide(&after, ApprovalLevel::Ho, true, Some(d(8000)), None)
            .expect("decided");
        assert_eq!(after.approval_status, Some(ApprovalStatus::HoApproved));
    }

    #[test]
    fn a_rejection_s_reason_stays_on_the_turn_until_it_is_submitted_again() {
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let card = TurnCard {
            turn_amount: Some(d(3000)),
            approval_status: Some(ApprovalStatus::DfoApprovalNeeded),
            ..TurnCard::default()
        };
        let rejected = rules
            .decide(
                &card,
                ApprovalLevel::Dfo,
                false,
                None,
                Some("  Owner upgrades "),
            )
            .expect("decided");
        assert_eq!(rejected.approval_status, Some(ApprovalStatus::Rejected));
        assert_eq!(rejected.rejection_reason.as_deref(), Some("Owner upgrades"));
        let again = rules
            .submit(&rejected)
            .expect("submitted")
            .expect("changed");
        assert_eq!(again.rejection_reason, None);
        assert_eq!(
            again.approval_status,
            Some(ApprovalStatus::DfoApprovalNeeded)
        );
    }

    #[test]
    fn dates_must_read_in_order_when_an_edit_changes_them() {
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let date = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
        let card = TurnCard {
            move_out_date: Some(date(10)),
            ..TurnCard::default()
        };
        let expected = |d| {
            TurnEdit::ExpectedCompletion(Edit {
                from: None,
                to: Some(d),
            })
        };
        let field = |r: Rejection| match r {
            Rejection::Invalid { fields, .. } => fields[0].field.clone(),
            other => panic!("{other:?}"),
        };
        let refused = rules.edit(&card, &[expected(date(9))]).expect_err("early");
        assert_eq!(field(refused), "expected_completion_date");
        rules
            .edit(&card, &[expected(date(10))])
            .expect("the same day");
        let far = TurnEdit::MoveOutDate(Edit {
            from: card.move_out_date,
            to: Some(rules.today + chrono::Days::new(400)),
        });
        assert_eq!(
            field(rules.edit(&card, &[far]).expect_err("far")),
            "move_out_date"
        );
        // An old row's odd dates do not block an edit of something else.
        let odd = TurnCard {
            expected_completion_date: Some(date(1)),
            ..card.clone()
        };
        let wo = TurnEdit::WoNumber(Edit {
            from: None,
            to: Some("WO-1".into()),
        });
        rules.edit(&odd, &[wo]).expect("unrelated");
    }

    #[test]
    fn stage_gates_hold_and_the_complete_stage_dates_the_turn() {
        let (limits, stages) = (Thresholds::default(), stages());
        let rules = core_rules(&limits, &stages);
        let today = rules.today;
        let card = TurnCard {
            stage_id: stages[0].id,
            ..TurnCard::default()
        };
        let to = |s: &Stage, card: &TurnCard| {
            rules.edit(
                card,
                &[TurnEdit::Stage(crate::mutation::Edit {
                    from: card.stage_id,
                    to: s.id,
                })],
            )
        };
        assert!(to(&stages[2], &card).is_err(), "no amount");
        let with_amount = TurnCard {
            turn_amount: Some(d(800)),
            ..card.clone()
        };
        let approved = to(&stages[2], &with_amount).expect("enters approval");
        assert_eq!(approved.approval_status, Some(ApprovalStatus::Pending));
        assert_eq!(approved.approved_turn_amount, Some(d(800)), "self-approved");
        assert!(to(&stages[4], &approved).is_err(), "no vendor");
        let done = to(
            &stages[6],
            &TurnCard {
                vendor_id: Some(Uuid::from_u128(99)),
                ..approved
            },
        )
        .expect("complete");
        assert_eq!(done.turn_completion_date, Some(today));
        let big = TurnCard {
            turn_amount: Some(d(3000)),
            ..card
        };
        assert_eq!(
            to(&stages[2], &big).expect("queued").approval_status,
            Some(ApprovalStatus::DfoApprovalNeeded)
        );
        assert!(to(&stages[3], &big).is_err(), "not approved");
        let old = TurnCard {
            stage_id: stages[6].id,
            turn_completion_date: Some(today - chrono::Days::new(31)),
            ..TurnCard::default()
        };
        // Entering the complete stage dates the turn today: not before a move-out still to come.
        let future = TurnCard {
            stage_id: stages[5].id,
            turn_amount: Some(d(800)),
            approved_turn_amount: Some(d(800)),
            approval_status: Some(ApprovalStatus::Pending),
            vendor_id: Some(Uuid::from_u128(99)),
            move_out_date: Some(today + chrono::Days::new(3)),
            ..TurnCard::default()
        };
        assert!(
            to(&stages[6], &future).is_err(),
            "completion before move-out"
        );
        assert!(!on_board(&old, &stages, today));
        assert!(on_board(
            &TurnCard {
                turn_completion_date: Some(today - chrono::Days::new(30)),
                ..old
            },
            &stages,
            today
        ));
    }
}
