//! The admin page's scope settings: cost templates (the typical scope offered for homes of a
//! size) and the QC checklist of each stage that asks for QC. Both are read live by the boards
//! that use them (their tables are in the shapes), so a change here reaches a manager scoping a
//! turn or an inspector at a door without a reload.
use crate::admin::{optional, text_input};
use crate::drawer::parse_money;
use leptos::prelude::*;
use turns::admin::{AdminChange, QcItemRow, TemplateRow, TemplateSettings};
use turns::line_items::{template_total, TemplateLine, CATEGORIES};
use turns::model::{format_usd, Stage};
use turns::mutation::FieldError;
use turns::Decimal;
use uuid::Uuid;

#[component]
pub fn ChecklistsSection(
    stages: Vec<Stage>,
    qc_items: Vec<QcItemRow>,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <section class="admin-section" aria-labelledby="checklists-h">
            <h2 id="checklists-h">"QC checklists"</h2>
            <p class="muted">"What the inspector checks while a turn is in a stage (a later stage can require that QC passed). Removed items stay on the inspections that used them."</p>
            {stages.into_iter().map(|stage| {
                let items: Vec<QcItemRow> = qc_items.iter().filter(|i| i.stage_id == stage.id).cloned().collect();
                checklist(stage, items, send)
            }).collect_view()}
        </section>
    }
}

/// One stage's checklist, open when it has items.
fn checklist(
    stage: Stage,
    items: Vec<QcItemRow>,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let stage_id = stage.id;
    let new_label = RwSignal::new(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(AdminChange::SaveQcItem {
            item: Uuid::new_v4(),
            stage: stage_id,
            label: new_label.get_untracked(),
        });
    };
    let open = !items.is_empty();
    let summary = match items.len() {
        0 => format!("{}: no checklist", stage.name),
        1 => format!("{}: 1 item", stage.name),
        n => format!("{}: {n} items", stage.name),
    };
    view! {
        <details class="template checklist-admin" data-testid="checklist" data-stage=stage.name.clone() open=open>
            <summary>{summary}</summary>
            <ol class="stage-list">
                {items.into_iter().map(|item| checklist_item(item, send)).collect_view()}
            </ol>
            <form class="stage-form" on:submit=add>
                {text_input("New item", "qc-new-label", "text", new_label)}
                <button type="submit" data-testid="qc-add">"Add item"</button>
            </form>
        </details>
    }
}

fn checklist_item(
    item: QcItemRow,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let (id, stage) = (item.id, item.stage_id);
    let label = RwSignal::new(item.label.clone());
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        send(AdminChange::SaveQcItem {
            item: id,
            stage,
            label: label.get_untracked(),
        });
    };
    let name = item.label.clone();
    view! {
        <li class="stage-item" data-testid="qc-item" data-label=item.label.clone()>
            <form class="stage-form" on:submit=save>
                <div class="movers">
                    <button type="button" data-testid="qc-earlier" aria-label=format!("Move {name} earlier")
                        on:click=move |_| send(AdminChange::MoveQcItem { item: id, earlier: true })>"▲"</button>
                    <button type="button" data-testid="qc-later" aria-label=format!("Move {name} later")
                        on:click=move |_| send(AdminChange::MoveQcItem { item: id, earlier: false })>"▼"</button>
                </div>
                {text_input("Item", "qc-label", "text", label)}
                <button type="submit" data-testid="qc-save">"Save"</button>
                <button type="button" data-testid="qc-remove" aria-label=format!("Remove {}", item.label)
                    on:click=move |_| send(AdminChange::RemoveQcItem { item: id })>"Remove"</button>
            </form>
        </li>
    }
}

#[component]
pub fn TemplatesSection(
    templates: Vec<TemplateRow>,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let blank = TemplateRow {
        id: Uuid::new_v4(),
        settings: TemplateSettings {
            name: String::new(),
            bedrooms: None,
            bathrooms: None,
            min_sqft: None,
            max_sqft: None,
            items: Vec::new(),
            is_active: true,
        },
    };
    view! {
        <section class="admin-section" aria-labelledby="templates-h">
            <h2 id="templates-h">"Cost templates"</h2>
            <p class="muted">"The typical scope for homes of a size, offered to managers scoping a turn. A retired template is no longer offered."</p>
            <div class="template-list" data-testid="templates">
                {templates.into_iter().map(|t| {
                    let summary = summary(&t.settings);
                    let name = t.settings.name.clone();
                    view! {
                        <details class="template" data-testid="template" data-name=name>
                            <summary>{summary}</summary>
                            {template_form(t, "Save template", send)}
                        </details>
                    }
                }).collect_view()}
                <details class="template" data-testid="new-template">
                    <summary>"Add a template"</summary>
                    {template_form(blank, "Add template", send)}
                </details>
            </div>
        </section>
    }
}

/// "2 bd · 1 ba · 700–900 sq ft · $1,650.00", and whether it is retired.
fn summary(t: &TemplateSettings) -> String {
    let mut parts = vec![t.name.clone()];
    if let Some(b) = t.bedrooms {
        parts.push(format!("{} bd", b.normalize()));
    }
    if let Some(b) = t.bathrooms {
        parts.push(format!("{} ba", b.normalize()));
    }
    match (t.min_sqft, t.max_sqft) {
        (Some(lo), Some(hi)) => parts.push(format!("{lo}–{hi} sq ft")),
        (Some(lo), None) => parts.push(format!("from {lo} sq ft")),
        (None, Some(hi)) => parts.push(format!("up to {hi} sq ft")),
        (None, None) => {}
    }
    if let Some(total) = template_total(&t.items) {
        parts.push(format_usd(total));
    }
    if !t.is_active {
        parts.push("retired".into());
    }
    parts.join(" · ")
}

/// A line as typed (the four fields as text until saved).
#[derive(Clone, Copy)]
struct LineDraft {
    key: u32,
    category: RwSignal<String>,
    description: RwSignal<String>,
    quantity: RwSignal<String>,
    unit_cost: RwSignal<String>,
}

impl LineDraft {
    fn new(key: u32, line: Option<&TemplateLine>) -> Self {
        let text = |f: fn(&TemplateLine) -> String| RwSignal::new(line.map(f).unwrap_or_default());
        LineDraft {
            key,
            category: text(|l| l.category.clone()),
            description: text(|l| l.description.clone()),
            quantity: RwSignal::new(
                line.map_or("1".into(), |l| l.quantity.normalize().to_string()),
            ),
            unit_cost: text(|l| l.unit_cost.to_string()),
        }
    }

    fn read(&self, errors: &mut Vec<FieldError>) -> Option<TemplateLine> {
        let number =
            |s: RwSignal<String>, field: &str, errors: &mut Vec<FieldError>| match parse_money(
                &s.get_untracked(),
                field,
            ) {
                Ok(Some(v)) => Some(v),
                Ok(None) => {
                    errors.push(FieldError::new(
                        field,
                        "Enter a quantity and a unit cost on every line.",
                    ));
                    None
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            };
        let quantity = number(self.quantity, "quantity", errors);
        let unit_cost = number(self.unit_cost, "unit_cost", errors);
        Some(TemplateLine {
            category: self.category.get_untracked().trim().to_string(),
            description: self.description.get_untracked().trim().to_string(),
            quantity: quantity?,
            unit_cost: unit_cost?,
        })
    }
}

fn template_form(
    row: TemplateRow,
    submit: &'static str,
    send: impl Fn(AdminChange) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let TemplateRow { id, settings: t } = row;
    let show = |d: Option<Decimal>| d.map(|d| d.normalize().to_string()).unwrap_or_default();
    let name = RwSignal::new(t.name.clone());
    let bedrooms = RwSignal::new(show(t.bedrooms));
    let bathrooms = RwSignal::new(show(t.bathrooms));
    let min_sqft = RwSignal::new(t.min_sqft.map(|v| v.to_string()).unwrap_or_default());
    let max_sqft = RwSignal::new(t.max_sqft.map(|v| v.to_string()).unwrap_or_default());
    let active = RwSignal::new(t.is_active);
    let next_key = StoredValue::new(t.items.len().max(1) as u32);
    let lines = RwSignal::new(if t.items.is_empty() {
        vec![LineDraft::new(0, None)]
    } else {
        t.items
            .iter()
            .enumerate()
            .map(|(i, l)| LineDraft::new(i as u32, Some(l)))
            .collect()
    });
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let add_line = move |_| {
        let key = next_key.get_value();
        next_key.set_value(key + 1);
        lines.update(|l| l.push(LineDraft::new(key, None)));
    };
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let mut found = Vec::new();
        let rooms = |s: RwSignal<String>, field: &str, found: &mut Vec<FieldError>| {
            parse_money(&s.get_untracked(), field).unwrap_or_else(|e| {
                found.push(e);
                None
            })
        };
        let area = |s: RwSignal<String>, field: &str, found: &mut Vec<FieldError>| {
            optional(s).and_then(|v| {
                v.replace(',', "")
                    .parse::<i32>()
                    .map_err(|_| {
                        found.push(FieldError::new(
                            field,
                            "Enter the area as a whole number of sq ft.",
                        ))
                    })
                    .ok()
            })
        };
        let settings = TemplateSettings {
            name: name.get_untracked(),
            bedrooms: rooms(bedrooms, "bedrooms", &mut found),
            bathrooms: rooms(bathrooms, "bathrooms", &mut found),
            min_sqft: area(min_sqft, "min_sqft", &mut found),
            max_sqft: area(max_sqft, "max_sqft", &mut found),
            items: lines
                .get_untracked()
                .iter()
                .filter_map(|l| l.read(&mut found))
                .collect(),
            is_active: active.get_untracked(),
        };
        // The core's checks, here too: the admin sees every problem before anything is sent.
        settings.validate(&mut found);
        errors.set(found.clone());
        if found.is_empty() {
            send(AdminChange::SaveCostTemplate {
                template: id,
                settings,
            });
        }
    };
    let list_id = format!("categories-{id}");
    view! {
        <form class="drawer-form admin-form" on:submit=save data-testid="template-form">
            <div class="field-row">
                {text_input("Name", "template-name", "text", name)}
                {text_input("Bedrooms", "template-bedrooms", "text", bedrooms)}
                {text_input("Bathrooms", "template-bathrooms", "text", bathrooms)}
                {text_input("From (sq ft)", "template-min", "text", min_sqft)}
                {text_input("To (sq ft)", "template-max", "text", max_sqft)}
            </div>
            <datalist id=list_id.clone()>
                {CATEGORIES.iter().map(|c| view! { <option value=*c/> }).collect_view()}
            </datalist>
            <table class="properties template-lines">
                <thead><tr><th>"Category"</th><th>"Description"</th><th>"Quantity"</th><th>"Unit cost (USD)"</th><th></th></tr></thead>
                <tbody>
                    <For each=move || lines.get() key=|l| l.key let:line>
                        {line_row(line, list_id.clone(), lines)}
                    </For>
                </tbody>
            </table>
            <div class="actions">
                <button type="button" data-testid="template-add-line" on:click=add_line>"Add line"</button>
                <label class="check">
                    <input type="checkbox" data-testid="template-active" prop:checked=move || active.get()
                        on:change=move |ev| active.set(event_target_checked(&ev))/>
                    "Offered to managers"
                </label>
            </div>
            <ul class="field-errors" role="alert">
                {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
            </ul>
            <div class="actions"><button type="submit" class="primary" data-testid="save-template">{submit}</button></div>
        </form>
    }
}

fn line_row(line: LineDraft, list: String, lines: RwSignal<Vec<LineDraft>>) -> impl IntoView {
    let cell = |label: &'static str,
                testid: &'static str,
                value: RwSignal<String>,
                list: Option<String>| {
        view! {
            <td data-label=label>
                <input type="text" aria-label=label data-testid=testid list=list prop:value=move || value.get()
                    on:input=move |ev| value.set(event_target_value(&ev))/>
            </td>
        }
    };
    let remove = move |_| lines.update(|l| l.retain(|d| d.key != line.key));
    view! {
        <tr data-testid="template-line">
            {cell("Category", "line-category", line.category, Some(list))}
            {cell("Description", "line-description", line.description, None)}
            {cell("Quantity", "line-quantity", line.quantity, None)}
            {cell("Unit cost (USD)", "line-unit-cost", line.unit_cost, None)}
            <td class="actions">
                <button type="button" data-testid="line-remove" on:click=remove
                    aria-label="Remove this line">"Remove"</button>
            </td>
        </tr>
    }
}
