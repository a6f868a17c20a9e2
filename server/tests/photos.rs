//! Notes and photos against a real Postgres and the local file store: a photo uploaded in
//! chunks (resumed after a cut), checked, thumbnailed, attached through the mutation path once
//! however often it is finished, and served only to users who may see its turn.
use axum::http::StatusCode;
use chrono::Utc;
use turns::field::CHUNK_BYTES;
use turns::mutation::{Change, Mutation, Outcome};
use turns_server::mutations::apply;
use turns_server::testing::{actor, demo_state, login, plain_router, send};
use uuid::Uuid;

/// A photo-sized JPEG (noise compresses badly, so a few megapixels make a few megabytes).
fn photo(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        image::Rgb([(x % 256) as u8, (y % 256) as u8, (seed & 0xff) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
        .encode_image(&img)
        .expect("encode");
    out
}

/// Send raw bytes (the shared helper sends text).
async fn put(router: &axum::Router, uri: &str, cookie: &str, body: Vec<u8>) -> StatusCode {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("PUT")
        .uri(uri)
        .header("cookie", cookie)
        .header("content-type", "application/octet-stream")
        .body(axum::body::Body::from(body))
        .expect("request");
    router
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| match e {})
        .status()
}

async fn get_bytes(
    router: &axum::Router,
    uri: &str,
    cookie: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    use tower::ServiceExt;
    let mut req = axum::http::Request::builder().uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let res = router
        .clone()
        .oneshot(req.body(axum::body::Body::empty()).expect("request"))
        .await
        .unwrap_or_else(|e| match e {});
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, bytes.to_vec())
}

async fn vendor_turn(pool: &sqlx::PgPool) -> Uuid {
    sqlx::query_scalar(
        "SELECT t.id FROM turns t JOIN users u ON u.vendor_id = t.vendor_id
          WHERE u.email = 'vendor@turns.demo' AND t.is_active ORDER BY t.turn_id LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .expect("a turn of the demo vendor's")
}

#[tokio::test]
async fn a_photo_uploads_in_chunks_resumes_attaches_once_and_is_served_only_to_its_readers() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    let vendor = login(&router, "vendor@turns.demo").await;
    let turn = vendor_turn(&pool).await;
    let id = Uuid::new_v4();
    let bytes = photo(2000, 1500);
    assert!(bytes.len() > 2 * CHUNK_BYTES, "{} bytes", bytes.len());
    let chunks: Vec<&[u8]> = bytes.chunks(CHUNK_BYTES).collect();
    let base = format!("/api/turns/{turn}/photos/{id}");

    // The first chunk arrives, then the signal goes: the server says what it has.
    assert_eq!(
        put(
            &router,
            &format!("{base}/chunks/0"),
            &vendor,
            chunks[0].to_vec()
        )
        .await,
        StatusCode::NO_CONTENT
    );
    let have = send(
        &router,
        "GET",
        &format!("{base}/chunks"),
        Some(&vendor),
        None,
    )
    .await;
    assert_eq!(have.json()["chunks"], serde_json::json!([0]));
    assert_eq!(have.json()["attached"], false);
    // Finishing too early names what is missing.
    let done = serde_json::json!({"chunks": chunks.len(), "caption": "Kitchen before",
                                  "taken_at": "2026-12-01T09:00:00Z"})
    .to_string();
    let early = send(
        &router,
        "POST",
        &base,
        Some(&vendor),
        Some(("application/json", done.clone())),
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);
    let missing: Vec<usize> = (1..chunks.len()).collect();
    assert_eq!(early.json()["missing"], serde_json::json!(missing));

    // The rest (and the first again: a resent chunk is harmless).
    for (i, chunk) in chunks.iter().enumerate() {
        let status = put(
            &router,
            &format!("{base}/chunks/{i}"),
            &vendor,
            chunk.to_vec(),
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let finished = send(
        &router,
        "POST",
        &base,
        Some(&vendor),
        Some(("application/json", done.clone())),
    )
    .await;
    assert_eq!(finished.status, StatusCode::OK, "{}", finished.body);
    let outcome: Outcome = serde_json::from_str(&finished.body).expect("outcome");
    let Outcome::Applied { txid: Some(txid) } = &outcome else {
        panic!("attached: {outcome:?}");
    };
    // Finishing again (the answer was lost on the way back) answers the same, stores nothing.
    let again = send(
        &router,
        "POST",
        &base,
        Some(&vendor),
        Some(("application/json", done)),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Outcome>(&again.body).expect("outcome"),
        outcome
    );
    #[derive(sqlx::FromRow)]
    struct Stored {
        rows: i64,
        audits: i64,
        caption: Option<String>,
        bytes: i32,
        width: i32,
        height: i32,
        device_time: chrono::DateTime<Utc>,
    }
    let Stored { rows, audits, caption, bytes: size, width, height, device_time } = sqlx::query_as(
        "SELECT (SELECT count(*) FROM turn_photos WHERE id = $1) AS rows,
                (SELECT count(*) FROM audit_logs WHERE row_id = $1 AND action = 'add_photo') AS audits,
                caption, bytes, width, height, device_time
           FROM turn_photos WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("the photo row");
    let size = (size, width, height);
    assert_eq!((rows, audits), (1, 1), "stored once");
    assert_eq!(caption.as_deref(), Some("Kitchen before"));
    assert_eq!(size, (bytes.len() as i32, 2000, 1500));
    assert_eq!(
        device_time.to_rfc3339(),
        "2026-12-01T09:00:00+00:00",
        "when it was taken"
    );
    let txid_in_audit: String =
        sqlx::query_scalar("SELECT min(xmin::text) FROM audit_logs WHERE row_id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("xmin");
    assert_eq!(&txid_in_audit, txid, "the txid the photos shape carries");
    let after = send(
        &router,
        "GET",
        &format!("{base}/chunks"),
        Some(&vendor),
        None,
    )
    .await;
    assert_eq!(after.json()["attached"], true);
    assert_eq!(
        after.json()["chunks"],
        serde_json::json!([]),
        "the chunks are cleaned up"
    );

    // Served whole and as a thumbnail to who may see the turn: the vendor, its managers.
    let (status, original) = get_bytes(&router, &format!("/api/photos/{id}"), Some(&vendor)).await;
    assert_eq!((status, original == bytes), (StatusCode::OK, true));
    let pm = login(&router, "pm@turns.demo").await;
    let manages: bool = sqlx::query_scalar(
        "SELECT t.property_manager_id = u.id FROM turns t, users u
          WHERE t.id = $1 AND u.email = 'pm@turns.demo'",
    )
    .bind(turn)
    .fetch_one(&pool)
    .await
    .expect("manager");
    let (status, thumb) = get_bytes(&router, &format!("/api/photos/{id}/thumb"), Some(&pm)).await;
    if manages {
        assert_eq!(status, StatusCode::OK);
        let t = image::load_from_memory(&thumb).expect("a thumbnail");
        assert_eq!((t.width(), t.height()), (480, 360));
    } else {
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // Another vendor, and nobody at all, get nothing: the same 404 as a photo that is not there.
    let rival = login(&router, "vendor2@turns.demo").await;
    let (status, _) = get_bytes(&router, &format!("/api/photos/{id}"), Some(&rival)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_bytes(
        &router,
        &format!("/api/photos/{}/thumb", Uuid::new_v4()),
        Some(&vendor),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get_bytes(&router, &format!("/api/photos/{id}/thumb"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Nor may they upload to that turn.
    let status = put(
        &router,
        &format!("/api/turns/{turn}/photos/{}/chunks/0", Uuid::new_v4()),
        &rival,
        vec![1, 2, 3],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn what_is_not_a_photo_or_too_big_is_refused_and_attaching_needs_an_upload() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    let vendor = login(&router, "vendor@turns.demo").await;
    let turn = vendor_turn(&pool).await;

    let id = Uuid::new_v4();
    let base = format!("/api/turns/{turn}/photos/{id}");
    let status = put(
        &router,
        &format!("{base}/chunks/0"),
        &vendor,
        b"%PDF-1.7 an invoice".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let done =
        serde_json::json!({"chunks": 1, "caption": null, "taken_at": Utc::now()}).to_string();
    let refused = send(
        &router,
        "POST",
        &base,
        Some(&vendor),
        Some(("application/json", done)),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.json()["message"]
        .as_str()
        .is_some_and(|m| m.contains("not a photo")));

    let status = put(
        &router,
        &format!("{base}/chunks/0"),
        &vendor,
        vec![0; CHUNK_BYTES + 1],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a chunk over the size");
    let status = put(&router, &format!("{base}/chunks/30"), &vendor, vec![0; 10]).await;
    assert_eq!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "past the largest photo"
    );

    // The mutation endpoint cannot attach bytes that were never uploaded.
    let who = actor(&pool, "vendor@turns.demo").await;
    let m = Mutation {
        id: Uuid::new_v4(),
        base_version: None,
        device_time: Utc::now(),
        change: Change::AddPhoto {
            turn,
            photo: Uuid::new_v4(),
            caption: None,
            qc_item: None,
        },
    };
    let outcome = apply(&pool, &who, &m).await.expect("ran");
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    let photos: i64 = sqlx::query_scalar("SELECT count(*) FROM turn_photos")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(photos, 0);
}

#[tokio::test]
async fn a_note_is_kept_with_its_author_and_the_time_it_was_written() {
    let state = demo_state().await;
    let pool = &state.pool;
    let turn = vendor_turn(pool).await;
    let who = actor(pool, "vendor@turns.demo").await;
    let note = Uuid::new_v4();
    let written = Utc::now() - chrono::Duration::hours(3);
    let m = Mutation {
        id: Uuid::new_v4(),
        base_version: None,
        device_time: written,
        change: Change::AddNote {
            turn,
            note,
            body: "  Tiles ordered, back Thursday  ".into(),
        },
    };
    let first = apply(pool, &who, &m).await.expect("ran");
    assert!(
        matches!(first, Outcome::Applied { txid: Some(_) }),
        "{first:?}"
    );
    assert_eq!(
        apply(pool, &who, &m).await.expect("replay"),
        first,
        "a replay applies once"
    );
    let (body, author, at): (String, String, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT body, author_name, device_time FROM turn_notes WHERE id = $1")
            .bind(note)
            .fetch_one(pool)
            .await
            .expect("note");
    assert_eq!(body, "Tiles ordered, back Thursday");
    assert_eq!(author, "Crew Lead 1");
    assert_eq!(at.timestamp_micros(), written.timestamp_micros());
    // In the turn's history, where it was written.
    let timeline = turns_server::queries::timeline(pool, &who, turn)
        .await
        .expect("timeline")
        .expect("visible");
    let entry = timeline
        .iter()
        .find(|e| e.action == "Added a note")
        .expect("the note in the history");
    assert_eq!(entry.note.as_deref(), Some("Tiles ordered, back Thursday"));
    // A blank note is refused with the field named.
    let blank = Mutation {
        id: Uuid::new_v4(),
        change: Change::AddNote {
            turn,
            note: Uuid::new_v4(),
            body: "   ".into(),
        },
        ..m
    };
    let Outcome::Rejected(r) = apply(pool, &who, &blank).await.expect("ran") else {
        panic!("a blank note is refused");
    };
    assert_eq!(r.message(), "Note is required.");
}

/// Upload one small photo in a single chunk and finish it with `finish` (JSON).
async fn upload_small(
    router: &axum::Router,
    cookie: &str,
    turn: Uuid,
    finish: serde_json::Value,
) -> (Uuid, Outcome) {
    let id = Uuid::new_v4();
    let base = format!("/api/turns/{turn}/photos/{id}");
    let status = put(router, &format!("{base}/chunks/0"), cookie, photo(64, 48)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let done = send(
        router,
        "POST",
        &base,
        Some(cookie),
        Some(("application/json", finish.to_string())),
    )
    .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    (id, serde_json::from_str(&done.body).expect("outcome"))
}

#[tokio::test]
async fn a_qc_photo_says_which_checklist_item_it_shows() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    let inspector = login(&router, "inspector@turns.demo").await;
    let turn = vendor_turn(&pool).await;
    let item: Uuid =
        sqlx::query_scalar("SELECT id FROM qc_checklist_items ORDER BY position LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("a checklist item");

    let (id, outcome) = upload_small(
        &router,
        &inspector,
        turn,
        serde_json::json!({"chunks": 1, "caption": "Stain", "qc_item": item, "taken_at": Utc::now()}),
    )
    .await;
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    let kept: Option<Uuid> = sqlx::query_scalar("SELECT qc_item_id FROM turn_photos WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("attached");
    assert_eq!(kept, Some(item));

    // An item that does not exist is refused by name, and nothing is attached.
    let (id, outcome) = upload_small(
        &router,
        &inspector,
        turn,
        serde_json::json!({"chunks": 1, "qc_item": Uuid::new_v4(), "taken_at": Utc::now()}),
    )
    .await;
    let Outcome::Rejected(turns::mutation::Rejection::Invalid { fields, .. }) = &outcome else {
        panic!("refused: {outcome:?}");
    };
    assert_eq!(fields[0].field, "qc_item", "{fields:?}");
    let attached: i64 = sqlx::query_scalar("SELECT count(*) FROM turn_photos WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(attached, 0);
}
