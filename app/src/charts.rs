//! Charts as SVG drawn by Rust (on the server for the first paint, the same code in the browser
//! after hydration): no chart library. Each chart names itself for screen readers and carries its
//! numbers as a table under "Numbers", so nothing is only in a picture.
use leptos::prelude::*;

/// One bar: its label, its value, the value as people read it, and its colour.
#[derive(Clone, Debug)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub shown: String,
    pub color: String,
}

impl Bar {
    pub fn new(label: impl Into<String>, value: f64, shown: impl Into<String>) -> Bar {
        Bar {
            label: label.into(),
            value,
            shown: shown.into(),
            color: "#1f5fbf".into(),
        }
    }

    pub fn colored(self, color: impl Into<String>) -> Bar {
        Bar {
            color: color.into(),
            ..self
        }
    }
}

/// The numbers a chart draws, as a table.
fn numbers(
    id: &str,
    heading: &'static str,
    value_heading: &'static str,
    bars: &[Bar],
) -> impl IntoView {
    view! {
        <details class="numbers">
            <summary>"Numbers"</summary>
            <table data-testid=format!("{id}-table")>
                <thead><tr><th scope="col">{heading}</th><th scope="col" class="num">{value_heading}</th></tr></thead>
                <tbody>
                    {bars.iter().map(|b| view! {
                        <tr><th scope="row">{b.label.clone()}</th><td class="num">{b.shown.clone()}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </details>
    }
}

const WIDTH: f64 = 640.0;

/// What a chart shows, in words (its accessible name): "Title: label value, …".
fn described(title: &str, bars: &[Bar]) -> String {
    let values: Vec<String> = bars
        .iter()
        .map(|b| format!("{} {}", b.label, b.shown))
        .collect();
    format!("{title}: {}", values.join(", "))
}

/// Vertical columns (a distribution, a trend), labelled under each column.
pub fn columns(
    id: &'static str,
    title: &'static str,
    heading: &'static str,
    value_heading: &'static str,
    bars: Vec<Bar>,
) -> impl IntoView {
    let height = 220.0;
    let (top, bottom) = (22.0, 34.0);
    let max = bars
        .iter()
        .map(|b| b.value)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let slot = WIDTH / bars.len().max(1) as f64;
    let bar_width = (slot * 0.7).min(90.0);
    let plot = height - top - bottom;
    // Few columns keep every label; many (weeks) label every few so they do not overlap.
    let every = (bars.len() / 8).max(1);
    let described = described(title, &bars);
    let drawn = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let h = (b.value / max * plot).max(if b.value > 0.0 { 1.0 } else { 0.0 });
            let x = slot * i as f64 + (slot - bar_width) / 2.0;
            let y = top + plot - h;
            let label = (i % every == 0).then(|| {
                view! {
                    <text x=x + bar_width / 2.0 y=height - bottom + 16.0 text-anchor="middle" class="axis">
                        {b.label.clone()}
                    </text>
                }
            });
            view! {
                <g>
                    <rect x=x y=y width=bar_width height=h rx="3" fill=b.color.clone()></rect>
                    <text x=x + bar_width / 2.0 y=y - 5.0 text-anchor="middle" class="value">{b.shown.clone()}</text>
                    {label}
                </g>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid=id>
            <figcaption>{title}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {height}") role="img" aria-label=described preserveAspectRatio="xMidYMid meet">
                <line x1="0" x2=WIDTH y1=top + plot y2=top + plot class="baseline"></line>
                {drawn}
            </svg>
            {numbers(id, heading, value_heading, &bars)}
        </figure>
    }
}

/// Horizontal bars (one row per stage or vendor), the label at the left, the value at the end.
pub fn rows(
    id: &'static str,
    title: &'static str,
    heading: &'static str,
    value_heading: &'static str,
    bars: Vec<Bar>,
    max: Option<f64>,
) -> impl IntoView {
    let row = 30.0;
    let label_width = 190.0;
    let height = row * bars.len().max(1) as f64 + 8.0;
    let max = max
        .unwrap_or_else(|| bars.iter().map(|b| b.value).fold(0.0_f64, f64::max))
        .max(1e-9);
    let room = WIDTH - label_width - 120.0;
    let described = described(title, &bars);
    let drawn = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let y = 4.0 + row * i as f64;
            let w = (b.value / max * room).max(if b.value > 0.0 { 1.0 } else { 0.0 });
            view! {
                <g>
                    <text x=label_width - 8.0 y=y + row / 2.0 + 4.0 text-anchor="end" class="axis">{b.label.clone()}</text>
                    <rect x=label_width y=y + 5.0 width=w height=row - 10.0 rx="3" fill=b.color.clone()></rect>
                    <text x=label_width + w + 6.0 y=y + row / 2.0 + 4.0 class="value">{b.shown.clone()}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <figure class="chart" data-testid=id>
            <figcaption>{title}</figcaption>
            <svg viewBox=format!("0 0 {WIDTH} {height}") role="img" aria-label=described preserveAspectRatio="xMidYMid meet">
                {drawn}
            </svg>
            {numbers(id, heading, value_heading, &bars)}
        </figure>
    }
}
