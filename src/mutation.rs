//! Writes: the typed mutations a client makes and the outcomes the server returns.
//!
//! A mutation is made on the device (offline too), applied to the local view at once, queued, and
//! sent later — possibly long after the row changed on the server. So every field edit carries the
//! value the user saw (`from`) next to the new one (`to`): the server applies the edit when each
//! edited field still holds its `from` value (other fields may have changed: they merge), and
//! answers with a conflict otherwise. The same code applies an edit on both sides, so the
//! optimistic view is exactly what the server will write.
use crate::line_items::{LineItemEdit, NewLineItem};
use crate::model::TurnCard;
use crate::qc::QcResult;
use crate::Decimal;
use crate::{Actor, Role};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One write, as queued on the device and sent to the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// Made on the device; the server applies a mutation id once (replays get the stored outcome).
    pub id: Uuid,
    /// The version of the row the user edited (None for creates). Recorded in the audit log and
    /// reported in conflicts; field values decide whether an edit still applies.
    pub base_version: Option<i32>,
    /// When the user made the change, by the device's clock.
    pub device_time: DateTime<Utc>,
    #[serde(deserialize_with = "crate::wire::change")]
    pub change: Change,
}

/// On the wire externally tagged (`{"edit_turn": {…}}`); the older, internally tagged form
/// still reads (see `wire`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    CreateProperty(NewProperty),
    UpdateProperty {
        property: Uuid,
        edits: Vec<PropertyEdit>,
    },
    CreateTurn(NewTurn),
    /// Move stage, assign vendor, set amount, dates, work order; vendor progress and completion.
    EditTurn {
        turn: Uuid,
        edits: Vec<TurnEdit>,
    },
    SubmitForApproval {
        turn: Uuid,
    },
    /// The vendor doing the work takes it on.
    AcceptWork {
        turn: Uuid,
    },
    /// The vendor turns the work down: it goes back to the managers, with the reason.
    DeclineWork {
        turn: Uuid,
        reason: String,
    },
    /// End a turn that will not be done (the resident stayed, the home is sold…): kept with the
    /// reason, off the board.
    CancelTurn {
        turn: Uuid,
        reason: String,
    },
    /// Lines added to a turn's scope, by hand or from a cost template (in one tap).
    AddLineItems {
        turn: Uuid,
        /// The cost template the lines were copied from, for the record.
        template: Option<Uuid>,
        items: Vec<NewLineItem>,
    },
    EditLineItem {
        turn: Uuid,
        item: Uuid,
        edits: Vec<LineItemEdit>,
    },
    RemoveLineItem {
        turn: Uuid,
        item: Uuid,
    },
    /// The inspector's QC of the turn's stage: every checklist item, passed or failed.
    RecordQc {
        turn: Uuid,
        results: Vec<QcResult>,
    },
    /// A note from the field ("tiles ordered, back Thursday").
    AddNote {
        turn: Uuid,
        /// Made on the device, like every id.
        note: Uuid,
        body: String,
    },
    /// Attach an uploaded photo to its turn: the last step of an upload, made by the server once
    /// the bytes are stored and checked (the device time is when it was taken).
    AddPhoto {
        turn: Uuid,
        photo: Uuid,
        caption: Option<String>,
        /// The QC checklist item it shows, when taken for one (absent from older devices).
        #[serde(default)]
        qc_item: Option<Uuid>,
    },
    /// The user read these notifications (their own).
    MarkRead {
        notifications: Vec<Uuid>,
    },
    DecideApproval {
        turn: Uuid,
        approve: bool,
        /// The amount approved (defaults to the turn amount); ignored for a rejection.
        amount: Option<Decimal>,
        /// Required to reject.
        reason: Option<String>,
    },
    /// An admin's change to users, vendors, stages, thresholds, cost templates or checklists.
    Admin(crate::admin::AdminChange),
}

impl Change {
    /// A short name for the audit log and the UI.
    pub fn action(&self) -> &'static str {
        match self {
            Change::CreateProperty(_) => "create_property",
            Change::UpdateProperty { .. } => "update_property",
            Change::CreateTurn(_) => "create_turn",
            Change::EditTurn { .. } => "edit_turn",
            Change::SubmitForApproval { .. } => "submit_for_approval",
            Change::CancelTurn { .. } => "cancel_turn",
            Change::AcceptWork { .. } => "accept_work",
            Change::DeclineWork { .. } => "decline_work",
            Change::AddLineItems { .. } => "add_line_items",
            Change::EditLineItem { .. } => "edit_line_item",
            Change::RemoveLineItem { .. } => "remove_line_item",
            Change::RecordQc { .. } => "record_qc",
            Change::AddNote { .. } => "add_note",
            Change::AddPhoto { .. } => "add_photo",
            Change::MarkRead { .. } => "mark_read",
            Change::DecideApproval { approve: true, .. } => "approve",
            Change::DecideApproval { approve: false, .. } => "reject",
            Change::Admin(a) => a.action(),
        }
    }

    /// The turn this change is about, if any.
    pub fn turn(&self) -> Option<Uuid> {
        match self {
            Change::CreateTurn(t) => Some(t.id),
            Change::EditTurn { turn, .. }
            | Change::SubmitForApproval { turn }
            | Change::CancelTurn { turn, .. }
            | Change::AcceptWork { turn }
            | Change::DeclineWork { turn, .. }
            | Change::AddLineItems { turn, .. }
            | Change::EditLineItem { turn, .. }
            | Change::RemoveLineItem { turn, .. }
            | Change::RecordQc { turn, .. }
            | Change::AddNote { turn, .. }
            | Change::AddPhoto { turn, .. }
            | Change::DecideApproval { turn, .. } => Some(*turn),
            Change::CreateProperty(_)
            | Change::UpdateProperty { .. }
            | Change::MarkRead { .. }
            | Change::Admin(_) => None,
        }
    }

    /// Check what can be checked without the database; the server repeats this.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        match self {
            Change::CreateProperty(p) => p.validate(&mut errors),
            Change::UpdateProperty { edits, .. } => {
                if edits.is_empty() {
                    errors.push(FieldError::new("edits", "Nothing to change."));
                }
                edits.iter().for_each(|e| e.validate(&mut errors));
            }
            Change::CreateTurn(t) => t.validate(&mut errors),
            Change::EditTurn { edits, .. } => {
                if edits.is_empty() {
                    errors.push(FieldError::new("edits", "Nothing to change."));
                }
                edits.iter().for_each(|e| e.validate(&mut errors));
            }
            Change::SubmitForApproval { .. } => {}
            Change::CancelTurn { reason, .. } => {
                if reason.trim().is_empty() {
                    errors.push(FieldError::new("reason", "Say why the turn is cancelled."));
                }
                check_text("reason", reason, 2000, false, &mut errors);
            }
            Change::AcceptWork { .. } => {}
            Change::AddLineItems { items, .. } => {
                if items.is_empty() {
                    errors.push(FieldError::new("items", "Add at least one line."));
                }
                items.iter().for_each(|i| i.validate(&mut errors));
            }
            Change::EditLineItem { edits, .. } => {
                if edits.is_empty() {
                    errors.push(FieldError::new("edits", "Nothing to change."));
                }
                edits.iter().for_each(|e| e.validate(&mut errors));
            }
            Change::RemoveLineItem { .. } => {}
            Change::RecordQc { results, .. } => crate::qc::validate(results, &mut errors),
            Change::AddNote { body, .. } => crate::field::validate_note(body, &mut errors),
            Change::MarkRead { notifications } => {
                if notifications.is_empty() || notifications.len() > 500 {
                    errors.push(FieldError::new(
                        "notifications",
                        "Mark between 1 and 500 notifications at a time.",
                    ));
                }
            }
            Change::AddPhoto { caption, .. } => {
                crate::field::validate_caption(caption.as_deref(), &mut errors)
            }
            Change::DeclineWork { reason, .. } => {
                if reason.trim().is_empty() {
                    errors.push(FieldError::new("reason", "Say why you decline this job."));
                }
                check_text("reason", reason, 2000, false, &mut errors);
            }
            Change::DecideApproval {
                approve,
                amount,
                reason,
                ..
            } => {
                if *approve {
                    if let Some(a) = amount {
                        check_amount("amount", *a, &mut errors);
                    }
                } else if reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    errors.push(FieldError::new("reason", "Say why the turn is rejected."));
                }
                if let Some(r) = reason {
                    check_text("reason", r, 2000, false, &mut errors);
                }
            }
            Change::Admin(a) => a.validate(&mut errors),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A value as the user saw it and as they want it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit<T> {
    pub from: T,
    pub to: T,
}

/// One edited turn field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnEdit {
    Stage(Edit<Uuid>),
    Vendor(Edit<Option<Uuid>>),
    Amount(Edit<Option<Decimal>>),
    WoNumber(Edit<Option<String>>),
    MoveOutDate(Edit<Option<NaiveDate>>),
    ExpectedCompletion(Edit<Option<NaiveDate>>),
    Completion(Edit<Option<NaiveDate>>),
}

/// Who may make an edit: the turn's managers, or (also) the vendor doing the work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EditRight {
    Manage,
    Progress,
}

impl TurnEdit {
    /// The column this edit writes.
    pub fn column(&self) -> &'static str {
        match self {
            TurnEdit::Stage(_) => "stage_id",
            TurnEdit::Vendor(_) => "vendor_id",
            TurnEdit::Amount(_) => "turn_amount",
            TurnEdit::WoNumber(_) => "wo_number",
            TurnEdit::MoveOutDate(_) => "move_out_date",
            TurnEdit::ExpectedCompletion(_) => "expected_completion_date",
            TurnEdit::Completion(_) => "turn_completion_date",
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            TurnEdit::Stage(_) => "stage",
            TurnEdit::Vendor(_) => "vendor",
            TurnEdit::Amount(_) => "amount",
            TurnEdit::WoNumber(_) => "work order",
            TurnEdit::MoveOutDate(_) => "move-out date",
            TurnEdit::ExpectedCompletion(_) => "expected completion",
            TurnEdit::Completion(_) => "completion date",
        }
    }

    /// Vendors record progress (expected date) and completion; everything else is the managers'.
    pub fn right(&self) -> EditRight {
        match self {
            TurnEdit::ExpectedCompletion(_) | TurnEdit::Completion(_) => EditRight::Progress,
            _ => EditRight::Manage,
        }
    }

    /// Whether the field still holds the value the user started from.
    pub fn base_holds(&self, turn: &TurnCard) -> bool {
        self.rebased(turn) == *self
    }

    /// Whether the field already holds the new value.
    pub fn is_noop(&self, turn: &TurnCard) -> bool {
        let mut after = turn.clone();
        self.apply(&mut after);
        after == *turn
    }

    /// Write the new value into a card (names shown for ids are the caller's business).
    pub fn apply(&self, turn: &mut TurnCard) {
        match self {
            TurnEdit::Stage(e) => turn.stage_id = e.to,
            TurnEdit::Vendor(e) => {
                if turn.vendor_id != e.to {
                    // A new vendor has yet to accept; once one is assigned, a decline is past.
                    turn.vendor_accepted = false;
                    if e.to.is_some() {
                        turn.declined_vendor_id = None;
                        turn.decline_reason = None;
                    }
                }
                turn.vendor_id = e.to;
            }
            TurnEdit::Amount(e) => turn.turn_amount = e.to,
            TurnEdit::WoNumber(e) => turn.wo_number = e.to.clone(),
            TurnEdit::MoveOutDate(e) => turn.move_out_date = e.to,
            TurnEdit::ExpectedCompletion(e) => turn.expected_completion_date = e.to,
            TurnEdit::Completion(e) => turn.turn_completion_date = e.to,
        }
    }

    /// The same edit starting from the card's current value (the user's "keep mine").
    pub fn rebased(&self, turn: &TurnCard) -> TurnEdit {
        let mut edit = self.clone();
        match &mut edit {
            TurnEdit::Stage(e) => e.from = turn.stage_id,
            TurnEdit::Vendor(e) => e.from = turn.vendor_id,
            TurnEdit::Amount(e) => e.from = turn.turn_amount,
            TurnEdit::WoNumber(e) => e.from = turn.wo_number.clone(),
            TurnEdit::MoveOutDate(e) => e.from = turn.move_out_date,
            TurnEdit::ExpectedCompletion(e) => e.from = turn.expected_completion_date,
            TurnEdit::Completion(e) => e.from = turn.turn_completion_date,
        }
        edit
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        match self {
            TurnEdit::Amount(Edit { to: Some(a), .. }) => check_amount("turn_amount", *a, errors),
            TurnEdit::WoNumber(Edit { to: Some(w), .. }) => {
                check_text("wo_number", w, 50, false, errors)
            }
            TurnEdit::MoveOutDate(Edit { to: Some(d), .. })
            | TurnEdit::ExpectedCompletion(Edit { to: Some(d), .. })
            | TurnEdit::Completion(Edit { to: Some(d), .. }) => {
                check_date(self.column(), *d, errors)
            }
            _ => {}
        }
    }
}

/// One edited property field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyEdit {
    Name(Edit<String>),
    StreetAddress(Edit<String>),
    City(Edit<Option<String>>),
    State(Edit<Option<String>>),
    ZipCode(Edit<Option<String>>),
    IsCore(Edit<bool>),
    IsActive(Edit<bool>),
    PropertyManager(Edit<Option<Uuid>>),
    Bedrooms(Edit<Option<Decimal>>),
    Bathrooms(Edit<Option<Decimal>>),
    AreaSqft(Edit<Option<i32>>),
    /// How a vendor gets in (lockbox, gate code, pets).
    AccessNotes(Edit<Option<String>>),
}

impl PropertyEdit {
    pub fn column(&self) -> &'static str {
        match self {
            PropertyEdit::Name(_) => "name",
            PropertyEdit::StreetAddress(_) => "street_address",
            PropertyEdit::City(_) => "city",
            PropertyEdit::State(_) => "state",
            PropertyEdit::ZipCode(_) => "zip_code",
            PropertyEdit::IsCore(_) => "is_core",
            PropertyEdit::IsActive(_) => "is_active",
            PropertyEdit::PropertyManager(_) => "property_manager_id",
            PropertyEdit::Bedrooms(_) => "bedrooms",
            PropertyEdit::Bathrooms(_) => "bathrooms",
            PropertyEdit::AreaSqft(_) => "area_sqft",
            PropertyEdit::AccessNotes(_) => "access_notes",
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        match self {
            PropertyEdit::Name(e) => check_text("name", &e.to, 255, true, errors),
            PropertyEdit::StreetAddress(e) => {
                check_text("street_address", &e.to, 255, true, errors)
            }
            PropertyEdit::City(Edit { to: Some(v), .. }) => {
                check_text("city", v, 100, false, errors)
            }
            PropertyEdit::State(Edit { to: Some(v), .. }) => {
                check_text("state", v, 50, false, errors)
            }
            PropertyEdit::ZipCode(Edit { to: Some(v), .. }) => {
                check_text("zip_code", v, 20, false, errors)
            }
            PropertyEdit::Bedrooms(e) => check_rooms("bedrooms", e.to, errors),
            PropertyEdit::Bathrooms(e) => check_rooms("bathrooms", e.to, errors),
            PropertyEdit::AreaSqft(e) => check_area(e.to, errors),
            PropertyEdit::AccessNotes(Edit { to: Some(v), .. }) => {
                check_text("access_notes", v, ACCESS_NOTES_MAX, false, errors)
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewProperty {
    /// Made on the device, so later offline edits can refer to the new row.
    pub id: Uuid,
    pub property_id: String,
    pub name: String,
    pub street_address: String,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip_code: Option<String>,
    pub year_built: Option<i32>,
    pub is_core: bool,
    /// Defaults to the creating PM.
    pub property_manager_id: Option<Uuid>,
    /// The home's size (cost templates are matched to it). Absent from changes queued by app
    /// versions before December 2026.
    #[serde(default)]
    pub bedrooms: Option<Decimal>,
    #[serde(default)]
    pub bathrooms: Option<Decimal>,
    #[serde(default)]
    pub area_sqft: Option<i32>,
    #[serde(default)]
    pub access_notes: Option<String>,
}

/// The longest access notes a home keeps (`properties_access_notes_length`).
pub const ACCESS_NOTES_MAX: usize = 1000;

impl NewProperty {
    /// Who manages the new home, by who adds it: a property manager adds homes for themselves; a
    /// senior PM oversees what they add (for a PM of their choosing); an admin names the PM.
    pub fn managers(&self, by: &Actor) -> Result<(Option<Uuid>, Option<Uuid>), Rejection> {
        match by.role {
            Role::PropertyManager
                if self.property_manager_id.is_some_and(|id| id != by.user_id) =>
            {
                Err(Rejection::forbidden(
                    "A property manager adds properties for themselves.",
                ))
            }
            Role::PropertyManager => Ok((Some(by.user_id), None)),
            Role::SrPropertyManager => Ok((self.property_manager_id, Some(by.user_id))),
            _ => Ok((self.property_manager_id, None)),
        }
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text("property_id", &self.property_id, 50, true, errors);
        check_text("name", &self.name, 255, true, errors);
        check_text("street_address", &self.street_address, 255, true, errors);
        for (field, value, max) in [
            ("city", &self.city, 100),
            ("state", &self.state, 50),
            ("zip_code", &self.zip_code, 20),
            ("access_notes", &self.access_notes, ACCESS_NOTES_MAX),
        ] {
            if let Some(v) = value {
                check_text(field, v, max, false, errors);
            }
        }
        if self.year_built.is_some_and(|y| !(1700..=2200).contains(&y)) {
            errors.push(FieldError::new(
                "year_built",
                "Year built must be between 1700 and 2200.",
            ));
        }
        check_rooms("bedrooms", self.bedrooms, errors);
        check_rooms("bathrooms", self.bathrooms, errors);
        check_area(self.area_sqft, errors);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTurn {
    pub id: Uuid,
    pub turn_id: String,
    pub property_id: Uuid,
    pub move_out_date: Option<NaiveDate>,
    pub wo_number: Option<String>,
}

/// Letters that read out and type without confusion (Crockford's base 32: no I, L, O or U).
const READABLE: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

impl NewTurn {
    /// A turn id people can read out and type: the home's code and five characters drawn from
    /// the turn's random id, e.g. `P-1001-7K3QD`. Made on the device, offline too. Two devices
    /// clash only by drawing the same 25 bits for the same home; the server then numbers the
    /// later one (`P-1001-7K3QD-2`).
    pub fn readable_id(property_code: &str, id: Uuid) -> String {
        let code: String = property_code.trim().chars().take(40).collect();
        let code = if code.is_empty() {
            "T".to_string()
        } else {
            code
        };
        let mut bits = id.as_u128();
        let mut draw = String::with_capacity(5);
        for _ in 0..5 {
            draw.push(char::from(READABLE[(bits & 31) as usize]));
            bits >>= 5;
        }
        format!("{code}-{draw}")
    }

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_text("turn_id", &self.turn_id, 50, true, errors);
        if let Some(w) = &self.wo_number {
            check_text("wo_number", w, 50, false, errors);
        }
        if let Some(d) = self.move_out_date {
            check_date("move_out_date", d, errors);
        }
    }
}

/// What the server did with a mutation. Stored with its id: a replay gets the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written. `txid` is the writing transaction's 32-bit id as shape messages carry it; the
    /// device keeps its optimistic change until the shape stream delivers that transaction.
    /// `None`: nothing changed, nothing to wait for.
    Applied { txid: Option<String> },
    /// Refused for good: the device rolls its optimistic change back and shows why.
    Rejected(Rejection),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    Forbidden {
        message: String,
    },
    NotFound {
        message: String,
    },
    Invalid {
        message: String,
        fields: Vec<FieldError>,
    },
    /// Fields the user edited were changed by someone else since the user saw them.
    Conflict {
        message: String,
        /// The columns in conflict.
        fields: Vec<String>,
        /// The turn as it is now (as this user may see it), to offer "take theirs".
        current: Option<Box<TurnCard>>,
    },
}

impl Rejection {
    pub fn message(&self) -> &str {
        match self {
            Rejection::Forbidden { message }
            | Rejection::NotFound { message }
            | Rejection::Invalid { message, .. }
            | Rejection::Conflict { message, .. } => message,
        }
    }

    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let message = match fields.as_slice() {
            [one] => one.message.clone(),
            _ => "Some fields need fixing.".into(),
        };
        Rejection::Invalid { message, fields }
    }

    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Rejection::invalid(vec![FieldError::new(field, message)])
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Rejection::Forbidden {
            message: message.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The largest amount numeric(10,2) holds.
pub fn max_amount() -> Decimal {
    Decimal::new(9_999_999_999, 2)
}

/// The dates a turn can plausibly have; anything else is a typo (or a device's broken clock).
pub const EARLIEST_DATE: (i32, u32, u32) = (1990, 1, 1);
pub const LATEST_DATE: (i32, u32, u32) = (2100, 12, 31);

fn check_date(field: &str, date: NaiveDate, errors: &mut Vec<FieldError>) {
    let bound = |(y, m, d): (i32, u32, u32)| NaiveDate::from_ymd_opt(y, m, d);
    let within = bound(EARLIEST_DATE).is_some_and(|lo| date >= lo)
        && bound(LATEST_DATE).is_some_and(|hi| date <= hi);
    if !within {
        errors.push(FieldError::new(
            field,
            format!(
                "Enter a date between {} and {}.",
                EARLIEST_DATE.0, LATEST_DATE.0
            ),
        ));
    }
}

pub(crate) fn check_amount(field: &str, amount: Decimal, errors: &mut Vec<FieldError>) {
    if amount.is_sign_negative() && !amount.is_zero() {
        errors.push(FieldError::new(field, "The amount cannot be negative."));
    } else if amount > max_amount() {
        errors.push(FieldError::new(field, "The amount is too large."));
    } else if amount.scale() > 2 && amount != amount.round_dp(2) {
        errors.push(FieldError::new(field, "Use at most two decimals (cents)."));
    }
}

/// Bedrooms and bathrooms: whole or in tenths (a half bath is 0.5), up to 50.
pub(crate) fn check_rooms(field: &str, rooms: Option<Decimal>, errors: &mut Vec<FieldError>) {
    let Some(rooms) = rooms else {
        return;
    };
    let label = field_label(field).to_lowercase();
    if rooms.is_sign_negative() && !rooms.is_zero() || rooms > Decimal::new(50, 0) {
        errors.push(FieldError::new(
            field,
            format!("Enter {label} between 0 and 50."),
        ));
    } else if rooms != rooms.round_dp(1) {
        errors.push(FieldError::new(
            field,
            format!("Enter {label} in halves or tenths, like 1.5."),
        ));
    }
}

pub(crate) fn check_area(area: Option<i32>, errors: &mut Vec<FieldError>) {
    if area.is_some_and(|a| !(1..=100_000).contains(&a)) {
        errors.push(FieldError::new(
            "area_sqft",
            "Enter the area between 1 and 100,000 sq ft.",
        ));
    }
}

pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
    errors: &mut Vec<FieldError>,
) {
    // Messages name the field: a form lists them together.
    let label = field_label(field);
    if required && value.trim().is_empty() {
        errors.push(FieldError::new(field, format!("{label} is required.")));
    } else if value.contains('\0') {
        // Postgres text cannot hold NUL; say so instead of failing the write.
        errors.push(FieldError::new(
            field,
            format!("{label} contains a character that cannot be saved."),
        ));
    } else if value.chars().count() > max {
        errors.push(FieldError::new(
            field,
            format!("Keep {} under {max} characters.", label.to_lowercase()),
        ));
    }
}

/// A field (a column) as the screens call it: in refusals and in a turn's timeline.
pub fn field_label(field: &str) -> String {
    match field {
        "property_id" => "Property ID".into(),
        "turn_id" => "Turn ID".into(),
        "wo_number" => "Work order".into(),
        "zip_code" => "ZIP code".into(),
        "access_notes" => "Access notes".into(),
        "stage_id" => "Stage".into(),
        "vendor_id" => "Vendor".into(),
        "turn_amount" => "Amount".into(),
        "approved_turn_amount" => "Approved amount".into(),
        "approval_status" => "Approval".into(),
        "move_out_date" => "Move-out date".into(),
        "expected_completion_date" => "Expected completion".into(),
        "turn_completion_date" => "Completed".into(),
        "unit_cost" => "Unit cost".into(),
        "area_sqft" => "Area (sq ft)".into(),
        "body" => "Note".into(),
        other => {
            let words = other.replace('_', " ");
            let mut chars = words.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::card;

    fn edit_amount(from: Option<i64>, to: Option<i64>) -> TurnEdit {
        TurnEdit::Amount(Edit {
            from: from.map(|v| Decimal::new(v, 0)),
            to: to.map(|v| Decimal::new(v, 0)),
        })
    }

    #[test]
    fn a_readable_turn_id_is_the_home_s_code_and_five_clear_characters() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let made = NewTurn::readable_id("P-1001", id);
        assert_eq!(
            made,
            NewTurn::readable_id(" P-1001 ", id),
            "stable for a turn"
        );
        let (code, draw) = made.rsplit_once('-').expect("two parts");
        assert_eq!(code, "P-1001");
        assert_eq!(draw.len(), 5);
        assert!(draw.bytes().all(|b| READABLE.contains(&b)), "{draw}");
        assert_eq!(
            NewTurn::readable_id("", id)
                .split_once('-')
                .expect("code")
                .0,
            "T"
        );
        // Fits the column (50) with room for the server's `-n` on a clash.
        let long = NewTurn::readable_id(&"X".repeat(80), id);
        assert!(long.chars().count() <= 46, "{long}");
        // Different turns of one home draw differently (a thousand in a row, no repeat).
        let ids: std::collections::HashSet<String> = (0..1000u128)
            .map(|n| NewTurn::readable_id("P-1", Uuid::from_u128(n * 0x9E37_79B9_7F4A_7C15)))
            .collect();
        assert_eq!(ids.len(), 1000);
        let turn = NewTurn {
            id,
            turn_id: made,
            property_id: Uuid::nil(),
            move_out_date: None,
            wo_number: None,
        };
        assert_eq!(Change::CreateTurn(turn).validate(), Ok(()));
    }

    #[test]
    fn refusals_name_their_field() {
        let blank = NewProperty {
            id: Uuid::nil(),
            property_id: " ".into(),
            name: String::new(),
            street_address: "x".repeat(256),
            city: None,
            state: None,
            zip_code: Some("1\0".into()),
            year_built: None,
            is_core: true,
            property_manager_id: None,
            bedrooms: Some(Decimal::new(25, 2)),
            bathrooms: Some(Decimal::new(15, 1)),
            access_notes: Some("x".repeat(1001)),
            area_sqft: Some(0),
        };
        let messages: Vec<String> = Change::CreateProperty(blank)
            .validate()
            .expect_err("refused")
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(
            messages,
            [
                "Property ID is required.",
                "Name is required.",
                "Keep street address under 255 characters.",
                "ZIP code contains a character that cannot be saved.",
                "Keep access notes under 1000 characters.",
                "Enter bedrooms in halves or tenths, like 1.5.",
                "Enter the area between 1 and 100,000 sq ft.",
            ]
        );
    }

    #[test]
    fn wire_format_is_tagged_and_round_trips() {
        let m = Mutation {
            id: Uuid::nil(),
            base_version: Some(3),
            device_time: DateTime::from_timestamp(1_800_000_000, 0).expect("valid time"),
            change: Change::EditTurn {
                turn: Uuid::nil(),
                edits: vec![edit_amount(None, Some(1200))],
            },
        };
        let json = serde_json::to_value(&m).expect("serializes");
        assert_eq!(
            json["change"]["edit_turn"]["edits"][0]["amount"]["to"],
            "1200"
        );
        let back: Mutation = serde_json::from_value(json).expect("parses");
        assert_eq!(back, m);
        let outcome = Outcome::Rejected(Rejection::forbidden("no"));
        let json = serde_json::to_value(&outcome).expect("serializes");
        assert_eq!(json["rejected"]["forbidden"]["message"], "no");
    }

    #[test]
    fn an_edit_applies_only_from_its_base_value() {
        let mut c = card();
        let e = edit_amount(Some(1500), Some(1800));
        assert!(e.base_holds(&c));
        e.apply(&mut c);
        assert_eq!(c.turn_amount, Some(Decimal::new(1800, 0)));
        assert!(!e.base_holds(&c));
        assert!(e.is_noop(&c));
        let rebased = e.rebased(&c);
        assert!(rebased.base_holds(&c));
    }

    proptest::proptest! {
        /// Edits to different fields merge: each still applies after the other, in either order,
        /// with the same result. A rival edit of the same field applies only if the value it
        /// started from is still there; rebased ("keep mine"), it applies.
        #[test]
        fn disjoint_edits_commute_and_stale_same_field_edits_do_not_apply(
            a in proptest::option::of(0i64..1_000_000),
            b in proptest::option::of(0i64..1_000_000),
            wo in proptest::option::of("[A-Z0-9-]{1,12}"),
        ) {
            let start = card();
            let cents = |v: Option<i64>| v.map(|v| Decimal::new(v, 2));
            let amount = TurnEdit::Amount(Edit { from: start.turn_amount, to: cents(a) });
            let work_order = TurnEdit::WoNumber(Edit { from: start.wo_number.clone(), to: wo });
            let (mut x, mut y) = (start.clone(), start.clone());
            amount.apply(&mut x);
            proptest::prop_assert!(work_order.base_holds(&x));
            work_order.apply(&mut x);
            work_order.apply(&mut y);
            proptest::prop_assert!(amount.base_holds(&y));
            amount.apply(&mut y);
            proptest::prop_assert_eq!(&x, &y);
            let rival = TurnEdit::Amount(Edit { from: start.turn_amount, to: cents(b) });
            proptest::prop_assert_eq!(rival.base_holds(&x), x.turn_amount == start.turn_amount);
            proptest::prop_assert!(rival.rebased(&x).base_holds(&x));
        }
    }

    #[test]
    fn values_postgres_cannot_store_are_refused_by_field() {
        let edit = |edits| Change::EditTurn {
            turn: Uuid::nil(),
            edits,
        };
        let nul = edit(vec![TurnEdit::WoNumber(Edit {
            from: None,
            to: Some("WO\0-1".into()),
        })]);
        assert_eq!(nul.validate().expect_err("refused")[0].field, "wo_number");
        let far = NaiveDate::from_ymd_opt(200_000, 1, 1).expect("chrono date");
        let date = edit(vec![TurnEdit::MoveOutDate(Edit {
            from: None,
            to: Some(far),
        })]);
        assert_eq!(
            date.validate().expect_err("refused")[0].field,
            "move_out_date"
        );
        let new_turn = Change::CreateTurn(NewTurn {
            id: Uuid::nil(),
            turn_id: "T-1".into(),
            property_id: Uuid::nil(),
            move_out_date: NaiveDate::from_ymd_opt(1899, 12, 31),
            wo_number: None,
        });
        assert!(new_turn.validate().is_err());
        let fine = edit(vec![TurnEdit::Completion(Edit {
            from: None,
            to: NaiveDate::from_ymd_opt(2026, 12, 1),
        })]);
        assert!(fine.validate().is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = Change::EditTurn {
            turn: Uuid::nil(),
            edits: vec![edit_amount(None, Some(-5))],
        };
        let errors = bad.validate().expect_err("negative amount");
        assert_eq!(errors[0].field, "turn_amount");
        let cents = Change::EditTurn {
            turn: Uuid::nil(),
            edits: vec![TurnEdit::Amount(Edit {
                from: None,
                to: Some(Decimal::new(12345, 3)),
            })],
        };
        assert!(cents.validate().is_err());
        let reject = Change::DecideApproval {
            turn: Uuid::nil(),
            approve: false,
            amount: None,
            reason: Some("  ".into()),
        };
        assert_eq!(reject.validate().expect_err("reason")[0].field, "reason");
        let empty = Change::EditTurn {
            turn: Uuid::nil(),
            edits: vec![],
        };
        assert!(empty.validate().is_err());
    }
}
