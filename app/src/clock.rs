//! Times as the user reads them: in the device's time zone. Stored and sent times are UTC; only
//! what is shown is local. (Written by hand: chrono's formatter and time-zone data are large in
//! the browser; the browser knows the offset.) Rendered in the browser only (the server does not
//! know the user's zone): the sync bar, notes, photos and history are client-side views.
use chrono::{DateTime, Duration, NaiveDateTime, Timelike, Utc};

/// `t` on the device's clock face.
pub fn local(t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc() - Duration::minutes(offset_minutes(t))
}

/// Minutes to add to local time to get UTC at `t` (as JavaScript's `getTimezoneOffset`).
#[cfg(feature = "hydrate")]
fn offset_minutes(t: DateTime<Utc>) -> i64 {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(t.timestamp_millis() as f64));
    date.get_timezone_offset() as i64
}

#[cfg(not(feature = "hydrate"))]
fn offset_minutes(_: DateTime<Utc>) -> i64 {
    0
}

/// A moment: `2026-12-02 14:05`.
pub fn when(t: DateTime<Utc>) -> String {
    let l = local(t);
    format!("{} {:02}:{:02}", l.date(), l.hour(), l.minute())
}

/// A time of day to the second: `14:05:09`.
pub fn time_of_day(ms: u64) -> String {
    let t = DateTime::from_timestamp_millis(ms as i64).unwrap_or_default();
    let l = local(t);
    format!("{:02}:{:02}:{:02}", l.hour(), l.minute(), l.second())
}
