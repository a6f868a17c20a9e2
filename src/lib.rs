//! Turns core: the domain types and rules every other part shares.
//!
//! Pure code only — no Leptos, no sqlx queries, no tokio — so it builds for the browser (wasm) and
//! the server alike and its tests run in seconds. Database derives sit behind the `ssr` feature.

pub mod admin;
pub mod approval;
pub mod decision;
pub mod field;
pub mod inbox;
pub mod kpi;
pub mod line_items;
pub mod model;
pub mod mutation;
pub mod password;
pub mod pg_text;
pub mod policy;
pub mod qc;
pub mod role;
pub mod rows;
pub mod rules;
pub mod shape_follower;
pub mod shape_protocol;
pub mod shape_rows;
pub mod shape_watch;
pub mod timeline;
pub mod wire;

pub use approval::{ApprovalLevel, ApprovalStatus, Thresholds};
pub use policy::Actor;
pub use role::Role;
pub use rust_decimal::Decimal;
