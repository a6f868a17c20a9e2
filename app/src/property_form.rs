//! Adding and editing homes (managers and admins). Like every change, made on the device (offline
//! too), shown at once in the list and offered for new turns, and sent when possible; the server
//! checks who may add, edit or reassign what.
use crate::local::Local;
use leptos::prelude::*;
use turns::mutation::{Change, Edit, FieldError, NewProperty, PropertyEdit};
use turns::rows::PropertyRow;
use turns::{Actor, Decimal, Role};
use uuid::Uuid;

/// What the form is open for.
#[derive(Clone, Debug, PartialEq)]
pub enum Editing {
    New,
    Home(PropertyRow),
    /// A home the server refused to add, to fix and send again (the same id: turns started on it
    /// offline follow it).
    Refused {
        failed: Uuid,
        home: NewProperty,
        reason: String,
    },
}

/// The form, while `editing` says what for.
#[component]
pub fn PropertyForm(local: Local, by: Actor, editing: RwSignal<Option<Editing>>) -> impl IntoView {
    move || {
        editing
            .get()
            .map(|what| view! { <PropertyPanel local by what editing/> })
    }
}

/// A labelled text input bound to a signal.
fn text_field(label: &'static str, testid: &'static str, value: RwSignal<String>) -> impl IntoView {
    view! {
        <label>{label}
            <input type="text" data-testid=testid prop:value=move || value.get()
                on:input=move |ev| value.set(event_target_value(&ev))/>
        </label>
    }
}

/// A number as the form shows it (blank for none; `2.0` shows as `2`).
fn number_text<N: std::fmt::Display>(value: Option<N>) -> String {
    value
        .map(|v| {
            let text = v.to_string();
            match text.split_once('.') {
                Some((whole, tenths)) if tenths.chars().all(|c| c == '0') => whole.to_string(),
                _ => text,
            }
        })
        .unwrap_or_default()
}

/// A number typed in a field (blank: none; `1,200` reads as 1200); what does not read is
/// named in `errors`.
fn read_number<N: std::str::FromStr>(
    value: RwSignal<String>,
    field: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
) -> Option<N> {
    let text = value.get_untracked().replace(',', "");
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let number = text.parse::<N>().ok();
    if number.is_none() {
        errors.push(FieldError::new(field, format!("Enter {what} as a number.")));
    }
    number
}

fn trimmed(value: RwSignal<String>) -> Option<String> {
    Some(value.get_untracked().trim().to_string()).filter(|v| !v.is_empty())
}

#[component]
fn PropertyPanel(
    local: Local,
    by: Actor,
    what: Editing,
    editing: RwSignal<Option<Editing>>,
) -> impl IntoView {
    let seen = match &what {
        Editing::Home(home) => Some(home.clone()),
        Editing::New | Editing::Refused { .. } => None,
    };
    let f = Fields::new(seen.as_ref());
    let refused = match &what {
        Editing::Refused { failed, home, .. } => {
            f.fill(home);
            Some((*failed, home.id))
        }
        _ => None,
    };
    // A property manager's homes are their own; seniors and admins name (or change) the PM.
    let names_pm = by.role != Role::PropertyManager;
    let managers = local
        .meta
        .with_untracked(|m| m.as_ref().map(|m| m.managers.clone()).unwrap_or_default());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let seen = StoredValue::new(seen);
    let close = move |_| editing.set(None);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let size = match f.size() {
            Ok(size) => size,
            Err(invalid) => return errors.set(invalid),
        };
        if let Some((failed, id)) = refused {
            let fixed = NewProperty {
                id,
                ..f.new_property(names_pm, size)
            };
            if let Err(invalid) = Change::CreateProperty(fixed.clone()).validate() {
                return errors.set(invalid);
            }
            local.resend_home(failed, fixed);
            return editing.set(None);
        }
        let change = match seen.get_value() {
            None => Change::CreateProperty(f.new_property(names_pm, size)),
            Some(home) => {
                let edits = f.edits(&home, names_pm, size);
                if edits.is_empty() {
                    return editing.set(None);
                }
                Change::UpdateProperty {
                    property: home.id,
                    edits,
                }
            }
        };
        if let Err(invalid) = change.validate() {
            return errors.set(invalid);
        }
        local.make(change, None);
        editing.set(None);
    };
    let is_new = !matches!(what, Editing::Home(_));
    let (title, why) = match &what {
        Editing::New => ("New property".to_string(), None),
        Editing::Home(h) => (format!("{} · {}", h.property_id, h.name), None),
        Editing::Refused { reason, .. } => {
            ("Fix and add property".to_string(), Some(reason.clone()))
        }
    };
    view! {
        <div class="drawer-backdrop" on:click=close></div>
        <aside class="drawer" role="dialog" aria-label="Property" data-testid="property-form">
            <button type="button" class="close" aria-label="Close" on:click=close>"×"</button>
            <h2>{title}</h2>
            {why.map(|why| view! { <p class="failure" data-testid="refused-reason">{why}</p> })}
            <form class="drawer-form" on:submit=save>
                {is_new.then(|| text_field("Property ID", "property-code", f.code))}
                {text_field("Name", "property-name", f.name)}
                {text_field("Street address", "property-street", f.street)}
                {text_field("City", "property-city", f.city)}
                {text_field("State", "property-state", f.state)}
                {is_new.then(|| text_field("ZIP code", "property-zip", f.zip))}
                <div class="field-row">
                    {text_field("Bedrooms", "property-bedrooms", f.bedrooms)}
                    {text_field("Bathrooms", "property-bathrooms", f.bathrooms)}
                    {text_field("Area (sq ft)", "property-area", f.area)}
                </div>
                <label>"Access notes (lockbox, gate or alarm code, pets) — vendors see these"
                    <textarea data-testid="property-access" prop:value=move || f.access.get()
                        on:input=move |ev| f.access.set(event_target_value(&ev))></textarea>
                </label>
                <label class="check">
                    <input type="checkbox" data-testid="property-core" prop:checked=move || f.core.get()
                        on:change=move |ev| f.core.set(event_target_checked(&ev))/>
                    "Core property"
                </label>
                {(!is_new).then(|| view! {
                    <label class="check">
                        <input type="checkbox" data-testid="property-active" prop:checked=move || f.active.get()
                            on:change=move |ev| f.active.set(event_target_checked(&ev))/>
                        "Active"
                    </label>
                })}
                {names_pm.then(|| {
                    let chosen = f.pm.get_untracked();
                    view! {
                        <label>"Property manager"
                            <select data-testid="property-pm" on:change=move |ev| f.pm.set(event_target_value(&ev))>
                                <option value="">"Nobody yet"</option>
                                {managers.into_iter().map(|m| {
                                    let value = m.id.to_string();
                                    let selected = value == chosen;
                                    view! { <option value=value selected=selected>{m.name}</option> }
                                }).collect_view()}
                            </select>
                        </label>
                    }
                })}
                <ul class="field-errors" role="alert" data-testid="field-errors">
                    {move || errors.get().into_iter().map(|e| view! { <li>{e.message}</li> }).collect_view()}
                </ul>
                <div class="actions">
                    <button type="submit" class="primary" data-testid="save-property">
                        {if is_new { "Add property" } else { "Save" }}
                    </button>
                </div>
            </form>
        </aside>
    }
}

/// The form's fields.
#[derive(Clone, Copy)]
struct Fields {
    code: RwSignal<String>,
    name: RwSignal<String>,
    street: RwSignal<String>,
    city: RwSignal<String>,
    state: RwSignal<String>,
    zip: RwSignal<String>,
    core: RwSignal<bool>,
    active: RwSignal<bool>,
    pm: RwSignal<String>,
    bedrooms: RwSignal<String>,
    bathrooms: RwSignal<String>,
    area: RwSignal<String>,
    access: RwSignal<String>,
}

/// A home's size as typed: bedrooms, bathrooms, area.
type Size = (Option<Decimal>, Option<Decimal>, Option<i32>);

impl Fields {
    /// Empty for a new home, or as the home is.
    fn new(home: Option<&PropertyRow>) -> Fields {
        let text = |v: Option<&str>| RwSignal::new(v.unwrap_or_default().to_string());
        Fields {
            code: text(home.map(|h| h.property_id.as_str())),
            name: text(home.map(|h| h.name.as_str())),
            street: text(home.map(|h| h.street_address.as_str())),
            city: text(home.and_then(|h| h.city.as_deref())),
            state: text(home.and_then(|h| h.state.as_deref())),
            zip: text(None),
            core: RwSignal::new(home.is_none_or(|h| h.is_core.unwrap_or(true))),
            active: RwSignal::new(home.is_none_or(|h| h.is_active)),
            pm: RwSignal::new(
                home.and_then(|h| h.property_manager_id)
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
            ),
            bedrooms: RwSignal::new(number_text(home.and_then(|h| h.bedrooms))),
            bathrooms: RwSignal::new(number_text(home.and_then(|h| h.bathrooms))),
            area: RwSignal::new(number_text(home.and_then(|h| h.area_sqft))),
            access: text(home.and_then(|h| h.access_notes.as_deref())),
        }
    }

    /// The size as typed, or which fields do not read as numbers.
    fn size(&self) -> Result<Size, Vec<FieldError>> {
        let mut errors = Vec::new();
        let bedrooms = read_number(self.bedrooms, "bedrooms", "the bedrooms", &mut errors);
        let bathrooms = read_number(self.bathrooms, "bathrooms", "the bathrooms", &mut errors);
        let area = read_number(
            self.area,
            "area_sqft",
            "the area in whole sq ft",
            &mut errors,
        );
        if errors.is_empty() {
            Ok((bedrooms, bathrooms, area))
        } else {
            Err(errors)
        }
    }

    /// As a refused new home was entered.
    fn fill(&self, home: &NewProperty) {
        self.code.set(home.property_id.clone());
        self.name.set(home.name.clone());
        self.street.set(home.street_address.clone());
        self.city.set(home.city.clone().unwrap_or_default());
        self.state.set(home.state.clone().unwrap_or_default());
        self.zip.set(home.zip_code.clone().unwrap_or_default());
        self.core.set(home.is_core);
        self.pm.set(
            home.property_manager_id
                .map(|id| id.to_string())
                .unwrap_or_default(),
        );
        self.bedrooms.set(number_text(home.bedrooms));
        self.bathrooms.set(number_text(home.bathrooms));
        self.area.set(number_text(home.area_sqft));
        self.access
            .set(home.access_notes.clone().unwrap_or_default());
    }

    fn pm(&self) -> Option<Uuid> {
        self.pm.get_untracked().parse().ok()
    }

    fn new_property(&self, names_pm: bool, (bedrooms, bathrooms, area_sqft): Size) -> NewProperty {
        NewProperty {
            id: Uuid::new_v4(),
            property_id: self.code.get_untracked(),
            name: self.name.get_untracked(),
            street_address: self.street.get_untracked(),
            city: trimmed(self.city),
            state: trimmed(self.state),
            zip_code: trimmed(self.zip),
            year_built: None,
            is_core: self.core.get_untracked(),
            property_manager_id: self.pm().filter(|_| names_pm),
            bedrooms,
            bathrooms,
            area_sqft,
            access_notes: trimmed(self.access),
        }
    }

    /// One edit per field the user changed, each with the value they saw.
    fn edits(&self, home: &PropertyRow, names_pm: bool, size: Size) -> Vec<PropertyEdit> {
        let mut edits = Vec::new();
        let (bedrooms, bathrooms, area) = size;
        if bedrooms != home.bedrooms {
            edits.push(PropertyEdit::Bedrooms(Edit {
                from: home.bedrooms,
                to: bedrooms,
            }));
        }
        if bathrooms != home.bathrooms {
            edits.push(PropertyEdit::Bathrooms(Edit {
                from: home.bathrooms,
                to: bathrooms,
            }));
        }
        if area != home.area_sqft {
            edits.push(PropertyEdit::AreaSqft(Edit {
                from: home.area_sqft,
                to: area,
            }));
        }
        let name = self.name.get_untracked().trim().to_string();
        if name != home.name {
            edits.push(PropertyEdit::Name(Edit {
                from: home.name.clone(),
                to: name,
            }));
        }
        let street = self.street.get_untracked().trim().to_string();
        if street != home.street_address {
            edits.push(PropertyEdit::StreetAddress(Edit {
                from: home.street_address.clone(),
                to: street,
            }));
        }
        if trimmed(self.city) != home.city {
            edits.push(PropertyEdit::City(Edit {
                from: home.city.clone(),
                to: trimmed(self.city),
            }));
        }
        if trimmed(self.access) != home.access_notes {
            edits.push(PropertyEdit::AccessNotes(Edit {
                from: home.access_notes.clone(),
                to: trimmed(self.access),
            }));
        }
        if trimmed(self.state) != home.state {
            edits.push(PropertyEdit::State(Edit {
                from: home.state.clone(),
                to: trimmed(self.state),
            }));
        }
        let was_core = home.is_core.unwrap_or(true);
        if self.core.get_untracked() != was_core {
            edits.push(PropertyEdit::IsCore(Edit {
                from: was_core,
                to: self.core.get_untracked(),
            }));
        }
        if self.active.get_untracked() != home.is_active {
            edits.push(PropertyEdit::IsActive(Edit {
                from: home.is_active,
                to: self.active.get_untracked(),
            }));
        }
        if names_pm && self.pm() != home.property_manager_id {
            edits.push(PropertyEdit::PropertyManager(Edit {
                from: home.property_manager_id,
                to: self.pm(),
            }));
        }
        edits
    }
}
