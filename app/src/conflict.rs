//! What clashed in a conflict, field by field: the value the user saw, theirs (what the user
//! typed) and what the turn holds now, so "Keep mine" and "Take theirs" are choices between
//! values the user can read.
use crate::local::{Failed, Local};
use leptos::prelude::*;
use turns::model::{format_usd, TurnCard};
use turns::mutation::{field_label, Change, Rejection, TurnEdit};
use uuid::Uuid;

/// The clashing fields of a refused turn edit, as a table (nothing for other changes).
pub fn clash_table(local: Local, failed: &Failed) -> Option<impl IntoView> {
    let Rejection::Conflict {
        fields, current, ..
    } = &failed.rejection
    else {
        return None;
    };
    let Change::EditTurn { turn, edits } = &failed.mutation.change else {
        return None;
    };
    // The turn as the server last said it is: with the refusal, else as the stream brought it.
    let now: Option<TurnCard> = current.as_deref().cloned().or_else(|| {
        local
            .base
            .with_untracked(|cards| cards.iter().find(|c| c.id == *turn).cloned())
    });
    let rows: Vec<_> = edits
        .iter()
        .filter(|e| fields.iter().any(|f| f == e.column()))
        .map(|e| {
            let (saw, mine) = edit_values(local, e);
            let theirs = now
                .as_ref()
                .map(|c| card_value(local, c, e.column()))
                .unwrap_or_else(|| "—".into());
            view! {
                <tr data-testid="clash" data-field=e.column()>
                    <th scope="row">{field_label(e.column())}</th>
                    <td data-testid="clash-saw">{saw}</td>
                    <td data-testid="clash-mine">{mine}</td>
                    <td data-testid="clash-theirs">{theirs}</td>
                </tr>
            }
        })
        .collect();
    (!rows.is_empty()).then(|| {
        view! {
            <table class="clashes" data-testid="clashes">
                <thead>
                    <tr><th scope="col">"Field"</th><th scope="col">"You saw"</th>
                        <th scope="col">"Yours"</th><th scope="col">"Now"</th></tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        }
    })
}

/// An edit's starting and new values, as the user reads them.
fn edit_values(local: Local, edit: &TurnEdit) -> (String, String) {
    let pair = |from: Option<String>, to: Option<String>| (shown(from), shown(to));
    match edit {
        TurnEdit::Stage(e) => pair(stage_name(local, e.from), stage_name(local, e.to)),
        TurnEdit::Vendor(e) => pair(
            e.from.and_then(|v| vendor_name(local, v)),
            e.to.and_then(|v| vendor_name(local, v)),
        ),
        TurnEdit::Amount(e) => pair(e.from.map(format_usd), e.to.map(format_usd)),
        TurnEdit::WoNumber(e) => pair(e.from.clone(), e.to.clone()),
        TurnEdit::MoveOutDate(e) | TurnEdit::ExpectedCompletion(e) | TurnEdit::Completion(e) => {
            pair(e.from.map(|d| d.to_string()), e.to.map(|d| d.to_string()))
        }
    }
}

/// A card's value for an edited column, as the user reads it.
fn card_value(local: Local, card: &TurnCard, column: &str) -> String {
    shown(match column {
        "stage_id" => stage_name(local, card.stage_id),
        "vendor_id" => card
            .vendor_name
            .clone()
            .or_else(|| card.vendor_id.and_then(|v| vendor_name(local, v))),
        "turn_amount" => card.turn_amount.map(format_usd),
        "wo_number" => card.wo_number.clone(),
        "move_out_date" => card.move_out_date.map(|d| d.to_string()),
        "expected_completion_date" => card.expected_completion_date.map(|d| d.to_string()),
        "turn_completion_date" => card.turn_completion_date.map(|d| d.to_string()),
        _ => None,
    })
}

fn shown(value: Option<String>) -> String {
    value.unwrap_or_else(|| "—".into())
}

fn stage_name(local: Local, id: Uuid) -> Option<String> {
    local.meta.with_untracked(|m| {
        m.as_ref()
            .and_then(|m| m.stages.iter().find(|s| s.id == id))
            .map(|s| s.name.clone())
    })
}

fn vendor_name(local: Local, id: Uuid) -> Option<String> {
    local
        .meta
        .with_untracked(|m| crate::local::vendor_name(m.as_ref(), id))
}
