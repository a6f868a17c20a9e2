//! A turn's facts as everyone who may see the turn reads them, in its panel and in the
//! approver's decision: the home (code, core or not, size, how to get in), whom to call, the
//! vendor and work order, the dates. Money is not here: the views that show it decide who sees
//! it. Follows the device's copy, so a home's first sync or a change to it shows at once.
use crate::clock::when;
use crate::local::Local;
use leptos::prelude::*;
use turns::model::{Contact, TurnCard};
use turns::rows::PropertyRow;

pub fn turn_facts(local: Local, turn: &TurnCard, today: chrono::NaiveDate) -> impl IntoView {
    let turn = turn.clone();
    move || {
        let home = local
            .properties
            .with(|homes| homes.iter().find(|p| p.id == turn.property_id).cloned());
        let pm = home
            .as_ref()
            .and_then(|h| h.property_manager_id)
            .or(turn.pm_id);
        let contact = pm.and_then(|pm| {
            local.meta.with(|m| {
                m.as_ref()
                    .and_then(|m| m.contacts.iter().find(|c| c.id == pm).cloned())
            })
        });
        facts(&turn, home.as_ref(), contact, today)
    }
}

fn facts(
    turn: &TurnCard,
    home: Option<&PropertyRow>,
    contact: Option<Contact>,
    today: chrono::NaiveDate,
) -> impl IntoView {
    let kind = home
        .and_then(|h| h.is_core)
        .map(|core| if core { " · core" } else { " · non-core" })
        .unwrap_or_default();
    let size = home
        .map(|h| {
            [
                h.bedrooms.map(|b| format!("{} bd", b.normalize())),
                h.bathrooms.map(|b| format!("{} ba", b.normalize())),
                h.area_sqft.map(|a| format!("{a} sq ft")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ")
        })
        .filter(|s| !s.is_empty());
    let vacant = turn.move_out_date.map(|d| match turn.days_vacant(today) {
        Some(n) if turn.turn_completion_date.is_none() => format!("{d} ({n} days vacant)"),
        _ => d.to_string(),
    });
    let text = |label: &'static str, value: Option<String>| {
        value.map(|v| view! { <div><dt>{label}</dt><dd>{v}</dd></div> }.into_any())
    };
    let manager = contact
        .map(|c| {
            let phone = c.phone.clone().map(|p| {
                let dial: String = p
                    .chars()
                    .filter(|c| c.is_ascii_digit() || *c == '+')
                    .collect();
                view! { <a href=format!("tel:{dial}") data-testid="pm-phone">{p}</a> }
            });
            view! {
                <div data-testid="pm-contact">
                    <dt>"Property manager"</dt>
                    <dd>
                        <span>{c.name.clone()}</span>
                        <span class="contact">
                            {phone}
                            <a href=format!("mailto:{}", c.email)>{c.email.clone()}</a>
                        </span>
                    </dd>
                </div>
            }
            .into_any()
        })
        .or_else(|| text("Property manager", turn.pm_name.clone()));
    let access = home.and_then(|h| h.access_notes.clone()).map(|notes| {
        view! {
            <div class="wide" data-testid="access-notes"><dt>"Getting in"</dt><dd>{notes}</dd></div>
        }
        .into_any()
    });
    let rows = [
        text("Home", Some(format!("{}{kind}", turn.property_code))),
        text("Size", size),
        access,
        manager,
        text(
            "Vendor",
            Some(
                turn.vendor_name
                    .clone()
                    .unwrap_or_else(|| "None yet".into()),
            ),
        ),
        text("Work order", turn.wo_number.clone()),
        text("Move-out", vacant),
        text(
            "Expected completion",
            turn.expected_completion_date.map(|d| d.to_string()),
        ),
        text(
            "Completed",
            turn.turn_completion_date.map(|d| d.to_string()),
        ),
        text("Waiting for approval since", turn.awaiting_since.map(when)),
    ];
    view! {
        <dl class="facts" data-testid="facts">{rows.into_iter().flatten().collect_view()}</dl>
    }
}
