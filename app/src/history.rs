//! Older turns: those completed before what devices keep (the sync bound). Read from the server
//! on demand — they are history, not work — so this page needs a connection; the board and the
//! Properties page do not.
use crate::api::turn_history;
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;
use turns::model::format_usd;

#[component]
pub fn HistoryPage() -> impl IntoView {
    let history = Resource::new(|| (), |_| turn_history());
    let search = RwSignal::new(String::new());
    view! {
        <Title text="History · Turns"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Loading history…"</p> }>
                {move || Suspend::new(async move {
                    match history.await {
                        Ok(h) => {
                            let before = long_date(h.before);
                            let more = h.more;
                            let cancelled = h.cancelled;
                            let turns = StoredValue::new(h.turns);
                            let total = turns.with_value(Vec::len);
                            let visible = Memo::new(move |_| {
                                let q = search.with(|s| s.trim().to_lowercase());
                                turns.with_value(|t| {
                                    t.iter()
                                        .filter(|c| {
                                            q.is_empty()
                                                || [&c.turn_id, &c.property_name, &c.property_code]
                                                    .iter()
                                                    .any(|f| f.to_lowercase().contains(&q))
                                        })
                                        .cloned()
                                        .collect::<Vec<_>>()
                                })
                            });
                            view! {
                                <div class="page-head">
                                    <h1>"History"</h1>
                                    <p class="count" data-testid="visible-count">
                                        {move || format!(
                                            "{} of {}{total} turns completed before {before}",
                                            visible.with(Vec::len),
                                            if more { "the newest " } else { "" },
                                        )}
                                    </p>
                                </div>
                                <p class="muted">"History is read from the server: this page needs a connection."</p>
                                <label class="filter grow">"Search"
                                    <input type="search" placeholder="Turn, property…" data-testid="search"
                                        prop:value=move || search.get()
                                        on:input=move |ev| search.set(event_target_value(&ev))/>
                                </label>
                                <table class="properties">
                                    <thead>
                                        <tr><th>"Turn"</th><th>"Property"</th><th>"Completed"</th><th>"Vendor"</th><th class="num">"Amount"</th></tr>
                                    </thead>
                                    <tbody>
                                        <For each=move || visible.get() key=|c| c.id let:c>
                                            <tr data-testid="history-row" data-turn=c.turn_id.clone()>
                                                <td data-label="Turn">{c.turn_id.clone()}</td>
                                                <td data-label="Property" class="strong">{c.property_name.clone()} " " <span class="muted">{c.property_code.clone()}</span></td>
                                                <td data-label="Completed">{c.turn_completion_date.map(|d| d.to_string()).unwrap_or_default()}</td>
                                                <td data-label="Vendor">{c.vendor_name.clone().unwrap_or_default()}</td>
                                                <td data-label="Amount" class="num">{c.approved_turn_amount.or(c.turn_amount).map(format_usd).unwrap_or_default()}</td>
                                            </tr>
                                        </For>
                                    </tbody>
                                </table>
                                {more.then(|| view! { <p class="more">"Older turns than these exist; the newest are listed."</p> })}
                                <Cancelled cancelled/>
                            }
                            .into_any()
                        }
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

/// Turns cancelled (by date, most recent first) with why.
#[component]
fn Cancelled(cancelled: Vec<crate::api::Cancelled>) -> impl IntoView {
    if cancelled.is_empty() {
        return ().into_any();
    }
    view! {
        <h2>"Cancelled"</h2>
        <table class="properties">
            <thead>
                <tr><th>"Turn"</th><th>"Property"</th><th>"Cancelled"</th><th>"Why"</th></tr>
            </thead>
            <tbody>
                {cancelled.into_iter().map(|c| view! {
                    <tr data-testid="cancelled-row" data-turn=c.card.turn_id.clone()>
                        <td data-label="Turn">{c.card.turn_id.clone()}</td>
                        <td data-label="Property" class="strong">{c.card.property_name.clone()} " " <span class="muted">{c.card.property_code.clone()}</span></td>
                        <td data-label="Cancelled">{long_date(c.at.date_naive())}</td>
                        <td data-label="Why">{c.reason}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// "1 September 2026". (chrono's `format` would bring its whole formatter to the browser.)
fn long_date(d: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    format!("{} {} {}", d.day(), MONTHS[d.month0() as usize], d.year())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_date_reads_as_chrono_writes_it() {
        for (y, m, d) in [(2026, 9, 1), (2025, 12, 31), (2024, 2, 29), (2026, 1, 10)] {
            let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date");
            assert_eq!(super::long_date(date), date.format("%-d %B %Y").to_string());
        }
    }
}
