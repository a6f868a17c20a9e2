//! What people write and photograph on a turn in the field: notes, and photos. The rows are
//! what the shapes carry; a photo's bytes are in the server's file store, uploaded in chunks
//! (resumable from a phone with a poor signal) and attached to the turn by the mutation path.
use crate::mutation::{check_text, FieldError};
use crate::pg_text;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use uuid::Uuid;

/// The longest note, in characters.
pub const MAX_NOTE: usize = 2000;
/// The longest photo caption, in characters.
pub const MAX_CAPTION: usize = 200;
/// The largest photo accepted (phone photos are 2–6 MB).
pub const MAX_PHOTO_BYTES: usize = 15 * 1024 * 1024;
/// A photo is sent in chunks of this size, each its own request: one fits well within the
/// server's time to receive a body on a slow phone connection, and a cut connection costs at
/// most one chunk.
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The most chunks a photo has.
pub const MAX_CHUNKS: usize = MAX_PHOTO_BYTES.div_ceil(CHUNK_BYTES);
/// The photo kinds accepted (what phone cameras and browsers make).
pub const PHOTO_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp"];

/// A `turn_notes` row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Note {
    pub id: Uuid,
    pub turn_id: Uuid,
    pub body: String,
    pub author_id: Uuid,
    pub author_name: String,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub device_time: Option<DateTime<Utc>>,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A `turn_photos` row.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Photo {
    pub id: Uuid,
    pub turn_id: Uuid,
    #[serde(default)]
    pub caption: Option<String>,
    /// The QC checklist item it was taken for.
    #[serde(default)]
    pub qc_item_id: Option<Uuid>,
    pub author_name: String,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub device_time: Option<DateTime<Utc>>,
    #[serde(default, with = "pg_text::opt_timestamp")]
    pub created_at: Option<DateTime<Utc>>,
}

impl Note {
    /// When it was written: by the device's clock when known (offline work keeps its order).
    pub fn written_at(&self) -> Option<DateTime<Utc>> {
        self.device_time.or(self.created_at)
    }
}

impl Photo {
    pub fn taken_at(&self) -> Option<DateTime<Utc>> {
        self.device_time.or(self.created_at)
    }
}

/// Where a photo is served (to those who may see its turn).
pub fn photo_url(photo: Uuid) -> String {
    format!("/api/photos/{photo}")
}

/// Where a photo's thumbnail is served.
pub fn thumb_url(photo: Uuid) -> String {
    format!("/api/photos/{photo}/thumb")
}

/// How many chunks a photo of `bytes` is sent in.
pub fn chunks(bytes: usize) -> usize {
    bytes.div_ceil(CHUNK_BYTES).max(1)
}

/// A turn's notes, oldest first (in the order they were written).
pub fn notes_of(notes: &[Note], turn: Uuid) -> Vec<Note> {
    let mut list: Vec<Note> = notes
        .iter()
        .filter(|n| n.turn_id == turn)
        .cloned()
        .collect();
    list.sort_by_key(|n| (n.written_at(), n.id));
    list
}

/// A turn's photos, oldest first.
pub fn photos_of(photos: &[Photo], turn: Uuid) -> Vec<Photo> {
    let mut list: Vec<Photo> = photos
        .iter()
        .filter(|p| p.turn_id == turn)
        .cloned()
        .collect();
    list.sort_by_key(|p| (p.taken_at(), p.id));
    list
}

pub(crate) fn validate_note(body: &str, errors: &mut Vec<FieldError>) {
    check_text("body", body, MAX_NOTE, true, errors);
}

pub(crate) fn validate_caption(caption: Option<&str>, errors: &mut Vec<FieldError>) {
    check_text(
        "caption",
        caption.unwrap_or_default(),
        MAX_CAPTION,
        false,
        errors,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_photo_is_sent_in_whole_chunks() {
        assert_eq!(chunks(0), 1);
        assert_eq!(chunks(1), 1);
        assert_eq!(chunks(CHUNK_BYTES), 1);
        assert_eq!(chunks(CHUNK_BYTES + 1), 2);
        assert_eq!(chunks(MAX_PHOTO_BYTES), MAX_CHUNKS);
        assert_eq!(MAX_CHUNKS, 30);
    }

    #[test]
    fn notes_read_from_the_shape_in_the_order_they_were_written() {
        let turn = Uuid::new_v4();
        let row = |body: &str, device: &str, created: &str| {
            serde_json::from_str::<Note>(&format!(
                r#"{{"id":"{}","turn_id":"{turn}","body":"{body}","author_id":"{}",
                    "author_name":"Vic Vendor","device_time":{device},"created_at":"{created}"}}"#,
                Uuid::new_v4(),
                Uuid::new_v4()
            ))
            .expect("note row")
        };
        // Written offline at 09:00, arrived at 12:00: it still reads before the 10:00 note.
        let offline = row(
            "tiles",
            r#""2026-12-01 09:00:00+00""#,
            "2026-12-01 12:00:00+00",
        );
        let online = row("paint", "null", "2026-12-01 10:00:00+00");
        let other = Note {
            turn_id: Uuid::new_v4(),
            ..online.clone()
        };
        let list = notes_of(&[online.clone(), other, offline.clone()], turn);
        assert_eq!(list, vec![offline, online]);
    }
}
