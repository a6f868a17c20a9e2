//! The dashboard (desktop and tablet): how long turns take, how long homes stand empty, what
//! turns cost, how long approvals wait, where work stands and which vendors finish on time, for
//! the viewer's portfolio. Filters are the URL's query (`?pm=&senior=&core=&from=&to=`), so a
//! view can be shared and works without JavaScript; the server computes every number
//! (`turns_server::kpi`) and the charts are drawn in Rust (`crate::charts`).
use crate::api::kpi_dashboard;
use crate::charts::{columns, rows, Bar};
use crate::layout::{ErrorBox, Frame};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use turns::kpi::{Dashboard, KpiFilter, BUCKETS};
use turns::model::{format_usd, Named};
use turns::ApprovalLevel;

/// The filters as the URL says them (what does not parse is ignored).
fn filter_from_query() -> Memo<KpiFilter> {
    let query = use_query_map();
    Memo::new(move |_| {
        query.with(|q| KpiFilter {
            pm: q.get("pm").and_then(|v| v.parse().ok()),
            senior: q.get("senior").and_then(|v| v.parse().ok()),
            core: match q.get("core").as_deref() {
                Some("core") => Some(true),
                Some("non-core") => Some(false),
                _ => None,
            },
            from: q.get("from").and_then(|v| v.parse().ok()),
            to: q.get("to").and_then(|v| v.parse().ok()),
        })
    })
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    let filter = filter_from_query();
    let numbers = Resource::new(move || filter.get(), kpi_dashboard);
    view! {
        <Title text="Dashboard · Turns"/>
        <Frame>
            <Suspense fallback=|| view! { <p class="loading">"Counting…"</p> }>
                {move || Suspend::new(async move {
                    match numbers.await {
                        Ok(d) => view! { <DashboardView d/> }.into_any(),
                        Err(e) => view! { <ErrorBox error=e/> }.into_any(),
                    }
                })}
            </Suspense>
        </Frame>
    }
}

fn days(v: Option<f64>) -> String {
    v.map(|d| format!("{d:.1} days"))
        .unwrap_or_else(|| "—".into())
}

fn hours(v: Option<f64>) -> String {
    match v {
        Some(h) if h >= 48.0 => format!("{:.1} days", h / 24.0),
        Some(h) => format!("{h:.1} h"),
        None => "—".into(),
    }
}

fn tile(
    testid: &'static str,
    label: &'static str,
    value: String,
    note: Option<String>,
) -> impl IntoView {
    view! {
        <div class="tile" data-testid=testid>
            <span class="tile-label">{label}</span>
            <strong class="tile-value">{value}</strong>
            {note.map(|n| view! { <span class="muted small">{n}</span> })}
        </div>
    }
}

#[component]
fn DashboardView(d: Dashboard) -> impl IntoView {
    let spread_bars = |counts: &[i64]| -> Vec<Bar> {
        BUCKETS
            .iter()
            .zip(counts)
            .map(|((_, _, label), n)| Bar::new(*label, *n as f64, n.to_string()))
            .collect()
    };
    let trend: Vec<Bar> = d
        .trend
        .iter()
        .map(|w| {
            Bar::new(
                w.start.format("%b %-d").to_string(),
                w.average_days,
                format!("{:.1}", w.average_days),
            )
        })
        .collect();
    let stages: Vec<Bar> = d
        .stages
        .iter()
        .map(|s| {
            Bar::new(s.stage.clone(), s.turns as f64, s.turns.to_string()).colored(s.color.clone())
        })
        .collect();
    let vendors: Vec<Bar> = d
        .vendors
        .iter()
        .map(|v| {
            Bar::new(
                v.vendor.clone(),
                v.rate() * 100.0,
                format!("{:.0}% · {}/{}", v.rate() * 100.0, v.on_time, v.completed),
            )
            .colored("#17653a")
        })
        .collect();
    let cycle = |level: ApprovalLevel| d.cycles.iter().find(|c| c.level == level).cloned();
    let (dfo, ho) = (cycle(ApprovalLevel::Dfo), cycle(ApprovalLevel::Ho));
    let cost = d.cost.clone();
    view! {
        <div class="page-head">
            <h1>"Dashboard"</h1>
            <p class="count" data-testid="range">{format!("Completed {} to {}", d.from, d.to)}</p>
            <a class="button" data-testid="export-csv" href=export_href(&d.filter)>"Export turns (CSV)"</a>
        </div>
        {filters(&d)}
        <section class="tiles">
            {tile("tile-completed", "Turns completed", d.turn_days.total().to_string(),
                Some(format!("median {}", days(d.turn_days.median))))}
            {tile("tile-vacant", "Open and vacant", d.vacant.total().to_string(),
                Some(format!("{} overdue · average {}", d.overdue, days(d.vacant.average))))}
            {tile("tile-cost", "Cost per turn", cost.per_turn().map(format_usd).unwrap_or_else(|| "—".into()),
                Some(format!("{} spent · {} approved", format_usd(cost.amount), format_usd(cost.approved))))}
            {tile("tile-variance", "Above approval", format_usd(cost.variance),
                Some(format!("over {} turns", cost.turns)))}
            {tile("tile-dfo", "DFO decides in", hours(dfo.as_ref().and_then(|c| c.median_hours)),
                Some(format!("median of {} decisions", dfo.map_or(0, |c| c.decisions))))}
            {tile("tile-ho", "Head office decides in", hours(ho.as_ref().and_then(|c| c.median_hours)),
                Some(format!("median of {} decisions", ho.map_or(0, |c| c.decisions))))}
        </section>
        <section class="charts">
            {columns("chart-turn-days", "Turn days (move-out to completion)", "Turn days", "Turns",
                spread_bars(&d.turn_days.counts))}
            {columns("chart-trend", "Average turn days by week completed", "Week of", "Average days", trend)}
            {columns("chart-vacant", "Days vacant of open turns", "Days vacant", "Turns",
                spread_bars(&d.vacant.counts))}
            {rows("chart-stages", "Open turns by stage", "Stage", "Turns", stages, None)}
            {rows("chart-vendors", "Vendors finishing by the expected date", "Vendor", "On time",
                vendors, Some(100.0))}
        </section>
    }
}

/// The turns export for the same homes (the CSV takes the same filters).
fn export_href(f: &KpiFilter) -> String {
    format!("/api/export/turns.csv{}", query_of(f))
}

fn query_of(f: &KpiFilter) -> String {
    let parts: Vec<String> = [
        f.pm.map(|v| format!("pm={v}")),
        f.senior.map(|v| format!("senior={v}")),
        f.core
            .map(|c| format!("core={}", if c { "core" } else { "non-core" })),
        f.from.map(|v| format!("from={v}")),
        f.to.map(|v| format!("to={v}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

/// A GET form: the filters land in the URL (shareable, and usable without JavaScript).
fn filters(d: &Dashboard) -> impl IntoView {
    let f = &d.filter;
    let people = |name: &'static str,
                  label: &'static str,
                  all: &'static str,
                  list: &[Named],
                  chosen: Option<uuid::Uuid>| {
        let options = list
            .iter()
            .map(|n| {
                let selected = Some(n.id) == chosen;
                view! { <option value=n.id.to_string() selected=selected>{n.name.clone()}</option> }
            })
            .collect_view();
        view! {
            <label class="filter">{label}
                <select name=name data-testid=format!("filter-{name}")>
                    <option value="">{all}</option>
                    {options}
                </select>
            </label>
        }
    };
    let core = f.core;
    view! {
        <form class="filters" method="get" action="/dashboard" data-testid="dashboard-filters">
            {people("pm", "Property manager", "All managers", &d.managers, f.pm)}
            {(!d.seniors.is_empty()).then(|| people("senior", "Senior PM", "All senior PMs", &d.seniors, f.senior))}
            <label class="filter">"Homes"
                <select name="core" data-testid="filter-core">
                    <option value="" selected=core.is_none()>"Core and non-core"</option>
                    <option value="core" selected=core == Some(true)>"Core only"</option>
                    <option value="non-core" selected=core == Some(false)>"Non-core only"</option>
                </select>
            </label>
            <label class="filter">"Completed from"
                <input type="date" name="from" value=d.from.to_string() data-testid="filter-from"/>
            </label>
            <label class="filter">"to"
                <input type="date" name="to" value=d.to.to_string() data-testid="filter-to"/>
            </label>
            <button type="submit" class="apply always" data-testid="apply-filters">"Apply"</button>
        </form>
    }
}
