//! The inbox: what waits for this user (work given to them, approvals to decide, decisions on
//! their turns, reminders), newest first, from the device's copy (the `inbox` shape), live and
//! offline. Tapping one marks it read and opens its turn on the board.
use crate::clock::when;
use crate::layout::Frame;
use crate::local::{use_local, Local};
use leptos::prelude::*;
use leptos_meta::Title;
use turns::inbox::Notification;
use turns::mutation::Change;

#[component]
pub fn InboxPage() -> impl IntoView {
    let local = use_local();
    Effect::new(move |_| {
        if let Some((id, _)) = local.account.get() {
            local.start_as(id);
        }
    });
    let list = Memo::new(move |_| local.notifications());
    let unread = move || {
        list.with(|l| {
            l.iter()
                .filter(|(_, u)| *u)
                .map(|(n, _)| n.id)
                .collect::<Vec<_>>()
        })
    };
    let read_all = move |_| {
        let ids = unread();
        if !ids.is_empty() {
            local.make(Change::MarkRead { notifications: ids }, None);
        }
    };
    view! {
        <Title text="Inbox · Turns"/>
        <Frame>
            <div class="page-head">
                <h1>"Inbox"</h1>
                {move || (!unread().is_empty()).then(|| view! {
                    <button type="button" class="link" data-testid="read-all" on:click=read_all>
                        "Mark all as read"
                    </button>
                })}
            </div>
            {move || list.with(Vec::is_empty).then(|| view! {
                <p class="muted" data-testid="inbox-empty">"Nothing waits for you."</p>
            })}
            <ul class="inbox-list" data-testid="inbox">
                <For each=move || list.get() key=|(n, unread)| (n.id, *unread) let:item>
                    {row(local, item.0, item.1)}
                </For>
            </ul>
        </Frame>
    }
}

fn row(local: Local, n: Notification, unread: bool) -> impl IntoView {
    let href = n
        .turn_id
        .map(|t| format!("/turns/{t}"))
        .unwrap_or_else(|| "/board".into());
    let id = n.id;
    let open = move |_| {
        if unread {
            local.make(
                Change::MarkRead {
                    notifications: vec![id],
                },
                None,
            );
        }
    };
    view! {
        <li class:unread=unread data-testid="notification">
            <a href=href on:click=open>
                <span>{n.message}</span>
                <br/>
                <span class="muted small">{n.created_at.map(when).unwrap_or_default()}</span>
            </a>
        </li>
    }
}
