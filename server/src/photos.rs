//! Photos over HTTP: a resumable upload in chunks, and serving a photo (or its thumbnail) only
//! to those who may see its turn.
//!
//! A device uploads a photo it took (perhaps hours ago, offline) as numbered chunks of
//! `field::CHUNK_BYTES`, each its own request, so a connection cut mid-photo costs one chunk:
//! - `GET  /api/turns/{turn}/photos/{photo}/chunks` — which chunks the server has (resume);
//! - `PUT  /api/turns/{turn}/photos/{photo}/chunks/{index}` — one chunk (idempotent);
//! - `POST /api/turns/{turn}/photos/{photo}` — done: the server joins the chunks, checks the
//!   image (type, size, dimensions), makes a thumbnail, stores both, and attaches the photo to
//!   the turn through the mutation path (`Change::AddPhoto`, the photo id as the mutation id:
//!   finishing twice answers the same). The answer is the mutation's outcome, with the txid the
//!   `photos` shape will carry.
//!
//! Chunks are kept in the file store under the uploader (`uploads/<user>/<photo>/<index>`), so
//! any instance can take any chunk, and nobody can add to another user's upload.
use crate::error::ApiError;
use crate::http::signed_in;
use crate::mutations;
use crate::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use turns::field::{CHUNK_BYTES, MAX_CHUNKS, MAX_PHOTO_BYTES};
use turns::mutation::{Change, Mutation, Rejection};
use turns::Actor;
use uuid::Uuid;

/// A thumbnail's longest side, in pixels (three across a phone screen, sharp at 2×–3×).
pub const THUMB_SIZE: u32 = 480;
/// The largest photo side accepted (a 200-megapixel phone photo is 16,320 wide).
const MAX_SIDE: u32 = 20_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/turns/{turn}/photos/{photo}/chunks", get(received))
        .route(
            "/api/turns/{turn}/photos/{photo}/chunks/{index}",
            put(put_chunk),
        )
        .route(
            "/api/turns/{turn}/photos/{photo}",
            axum::routing::post(finish),
        )
        .route("/api/photos/{photo}", get(original))
        .route("/api/photos/{photo}/thumb", get(thumbnail))
}

/// The refusal as an HTTP answer (a 404 does not say whether the turn exists).
fn refused(r: Rejection) -> Response {
    let status = match r {
        Rejection::Forbidden { .. } => StatusCode::FORBIDDEN,
        Rejection::NotFound { .. } => StatusCode::NOT_FOUND,
        Rejection::Invalid { .. } => StatusCode::BAD_REQUEST,
        Rejection::Conflict { .. } => StatusCode::CONFLICT,
    };
    (status, Json(serde_json::json!({ "message": r.message() }))).into_response()
}

/// The actor, if they may add photos to `turn`; otherwise the answer to give. (The request is
/// read before: a body is not `Sync`, so a borrowed request cannot be held across an await.)
async fn uploader(
    state: &AppState,
    actor: Result<Actor, ApiError>,
    turn: Uuid,
) -> Result<Actor, Response> {
    let actor = actor.map_err(IntoResponse::into_response)?;
    match mutations::may_add_field_notes(&state.pool, &actor, turn).await {
        Ok(Ok(())) => Ok(actor),
        Ok(Err(r)) => Err(refused(r)),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

fn staging(actor: &Actor, photo: Uuid) -> String {
    format!("uploads/{}/{photo}", actor.user_id)
}

fn chunk_key(actor: &Actor, photo: Uuid, index: usize) -> String {
    format!("{}/{index:03}", staging(actor, photo))
}

/// Where a photo's files are: `photos/<turn>/<photo>/{original,thumb.jpg}`.
pub fn photo_key(turn: Uuid, photo: Uuid, thumb: bool) -> String {
    let name = if thumb { "thumb.jpg" } else { "original" };
    format!("photos/{turn}/{photo}/{name}")
}

/// The chunks received so far (numbers), in order.
async fn chunks_of(state: &AppState, actor: &Actor, photo: Uuid) -> Result<Vec<usize>, ApiError> {
    let keys = state
        .files
        .list(&staging(actor, photo))
        .await
        .map_err(ApiError::internal)?;
    let mut have: Vec<usize> = keys
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.parse().ok())
        .collect();
    have.sort_unstable();
    Ok(have)
}

#[derive(Serialize)]
struct Received {
    /// The chunk numbers the server has.
    chunks: Vec<usize>,
    /// The photo is attached already (nothing more to send).
    attached: bool,
}

async fn received(
    State(state): State<AppState>,
    Path((turn, photo)): Path<(Uuid, Uuid)>,
    req: Request,
) -> Response {
    let actor = match uploader(&state, signed_in(&req), turn).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let attached = sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM turn_photos WHERE id = $1 AND author_id = $2)",
    )
    .bind(photo)
    .bind(actor.user_id)
    .fetch_one(&state.pool)
    .await;
    match (attached, chunks_of(&state, &actor, photo).await) {
        (Ok(attached), Ok(chunks)) => Json(Received { chunks, attached }).into_response(),
        (Err(e), _) => ApiError::from(e).into_response(),
        (_, Err(e)) => e.into_response(),
    }
}

async fn put_chunk(
    State(state): State<AppState>,
    Path((turn, photo, index)): Path<(Uuid, Uuid, usize)>,
    req: Request,
) -> Response {
    let actor = match uploader(&state, signed_in(&req), turn).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    if index >= MAX_CHUNKS {
        return too_large();
    }
    let body = match axum::body::to_bytes(req.into_body(), CHUNK_BYTES).await {
        Ok(b) if !b.is_empty() => b,
        Ok(_) => return ApiError::BadRequest("The chunk is empty.".into()).into_response(),
        Err(_) => {
            return ApiError::BadRequest(format!(
                "A chunk is at most {CHUNK_BYTES} bytes; this one was larger or cut off."
            ))
            .into_response()
        }
    };
    match state
        .files
        .put(&chunk_key(&actor, photo, index), body)
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        Json(serde_json::json!({
            "message": format!("A photo is at most {} MB.", MAX_PHOTO_BYTES / (1024 * 1024))
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct Finish {
    /// How many chunks the photo was sent in.
    pub chunks: usize,
    pub caption: Option<String>,
    /// The QC checklist item it was taken for.
    #[serde(default)]
    pub qc_item: Option<Uuid>,
    /// When it was taken, by the device's clock.
    pub taken_at: DateTime<Utc>,
}

async fn finish(
    State(state): State<AppState>,
    Path((turn, photo)): Path<(Uuid, Uuid)>,
    req: Request,
) -> Response {
    let actor = match uploader(&state, signed_in(&req), turn).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), 16 * 1024).await else {
        return ApiError::BadRequest("The request was malformed.".into()).into_response();
    };
    let Ok(done) = serde_json::from_slice::<Finish>(&body) else {
        return ApiError::BadRequest("The request was malformed.".into()).into_response();
    };
    match store(&state, &actor, turn, photo, done.chunks).await {
        Ok(None) => {}
        Ok(Some(refusal)) => return refusal,
        Err(e) => return e.into_response(),
    }
    // The photo id is the mutation id: a second finish gets the first one's outcome.
    let m = Mutation {
        id: photo,
        base_version: None,
        device_time: done.taken_at,
        change: Change::AddPhoto {
            turn,
            photo,
            caption: done.caption,
            qc_item: done.qc_item,
        },
    };
    let outcome = match mutations::apply(&state.pool, &actor, &m).await {
        Ok(o) => o,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Err(e) = state.files.delete_all(&staging(&actor, photo)).await {
        // Only space: the photo is stored.
        tracing::warn!(error = %e, %photo, "could not delete an upload's chunks");
    }
    Json(outcome).into_response()
}

/// Join, check and store the photo and its thumbnail, once (`photo_uploads` says it is done).
/// `Some(answer)`: the upload cannot be stored as it is (chunks missing, not a photo, too big).
async fn store(
    state: &AppState,
    actor: &Actor,
    turn: Uuid,
    photo: Uuid,
    chunks: usize,
) -> Result<Option<Response>, ApiError> {
    let stored: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM photo_uploads
                         WHERE id = $1 AND turn_id = $2 AND uploaded_by = $3)",
    )
    .bind(photo)
    .bind(turn)
    .bind(actor.user_id)
    .fetch_one(&state.pool)
    .await?;
    if stored {
        return Ok(None);
    }
    if chunks == 0 || chunks > MAX_CHUNKS {
        return Ok(Some(too_large()));
    }
    let have = chunks_of(state, actor, photo).await?;
    let missing: Vec<usize> = (0..chunks).filter(|i| !have.contains(i)).collect();
    if !missing.is_empty() {
        return Ok(Some(
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "message": "Some of the photo has not arrived yet.",
                    "missing": missing,
                })),
            )
                .into_response(),
        ));
    }
    let mut whole = BytesMut::new();
    for index in 0..chunks {
        let chunk = state
            .files
            .get(&chunk_key(actor, photo, index))
            .await
            .map_err(ApiError::internal)?
            .unwrap_or_default();
        whole.extend_from_slice(&chunk);
        if whole.len() > MAX_PHOTO_BYTES {
            return Ok(Some(too_large()));
        }
    }
    let whole = whole.freeze();
    let checked = {
        let bytes = whole.clone();
        tokio::task::spawn_blocking(move || check(&bytes))
            .await
            .map_err(ApiError::internal)?
    };
    let checked = match checked {
        Ok(c) => c,
        Err(message) => return Ok(Some(ApiError::BadRequest(message).into_response())),
    };
    let files = &state.files;
    files
        .put(&photo_key(turn, photo, false), whole.clone())
        .await
        .map_err(ApiError::internal)?;
    files
        .put(&photo_key(turn, photo, true), Bytes::from(checked.thumb))
        .await
        .map_err(ApiError::internal)?;
    sqlx::query(
        "INSERT INTO photo_uploads (id, turn_id, uploaded_by, content_type, bytes, width, height)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING",
    )
    .bind(photo)
    .bind(turn)
    .bind(actor.user_id)
    .bind(checked.content_type)
    .bind(i32::try_from(whole.len()).unwrap_or(i32::MAX))
    .bind(i32::try_from(checked.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(checked.height).unwrap_or(i32::MAX))
    .execute(&state.pool)
    .await?;
    Ok(None)
}

/// A photo as checked: what it is, and its thumbnail (JPEG).
#[derive(Debug)]
pub struct Checked {
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
    pub thumb: Vec<u8>,
}

/// Check that `bytes` are a photo we take (JPEG, PNG or WebP, by content, not by name), decode
/// it upright (phones store the camera's orientation apart from the pixels), and make its
/// thumbnail. The error is the message for the user.
pub fn check(bytes: &[u8]) -> Result<Checked, String> {
    let not_a_photo = || "This file is not a photo we can take (JPEG, PNG or WebP).".to_string();
    let format = image::guess_format(bytes).map_err(|_| not_a_photo())?;
    let content_type = match format {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::WebP => "image/webp",
        _ => return Err(not_a_photo()),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let unreadable = |e: image::ImageError| {
        tracing::info!(error = %e, "refused an unreadable photo");
        "This photo could not be read (it may be damaged or cut off).".to_string()
    };
    let mut decoder = reader.into_decoder().map_err(unreadable)?;
    let orientation = decoder.orientation().map_err(unreadable)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(unreadable)?;
    image.apply_orientation(orientation);
    let thumb = image.thumbnail(THUMB_SIZE, THUMB_SIZE).into_rgb8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode_image(&thumb)
        .map_err(unreadable)?;
    Ok(Checked {
        content_type,
        width: image.width(),
        height: image.height(),
        thumb: out,
    })
}

async fn original(state: State<AppState>, path: Path<Uuid>, req: Request) -> Response {
    serve(state, path, req, false).await
}

async fn thumbnail(state: State<AppState>, path: Path<Uuid>, req: Request) -> Response {
    serve(state, path, req, true).await
}

/// A photo, to a user who may see its turn; to anyone else the same 404 as a photo that does
/// not exist.
async fn serve(
    State(state): State<AppState>,
    Path(photo): Path<Uuid>,
    req: Request,
    thumb: bool,
) -> Response {
    let actor = match signed_in(&req) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let found = match crate::queries::photo(&state.pool, &actor, photo).await {
        Ok(f) => f,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some((turn, content_type)) = found else {
        return ApiError::NotFound.into_response();
    };
    let bytes = match state.files.get(&photo_key(turn, photo, thumb)).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            tracing::error!(%photo, thumb, "a photo's file is missing from the file store");
            return ApiError::NotFound.into_response();
        }
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let content_type = if thumb { "image/jpeg" } else { &content_type };
    let mut res = bytes.into_response();
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // A photo never changes under its id; only this user's browser keeps it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode_image(&img)
            .expect("encode");
        out
    }

    #[test]
    fn a_photo_is_checked_by_its_content_and_gets_a_small_thumbnail() {
        let checked = check(&jpeg(1200, 900)).expect("a jpeg");
        assert_eq!(
            (checked.content_type, checked.width, checked.height),
            ("image/jpeg", 1200, 900)
        );
        let thumb = image::load_from_memory(&checked.thumb).expect("thumb decodes");
        assert_eq!((thumb.width(), thumb.height()), (THUMB_SIZE, 360));
        assert!(check(b"%PDF-1.7 not a photo").is_err());
        // Looks like a PNG by its first bytes, and is not one.
        let mut fake = b"\x89PNG\r\n\x1a\n".to_vec();
        fake.extend_from_slice(&[7; 200]);
        assert!(check(&fake).is_err(), "a damaged photo");
    }
}
