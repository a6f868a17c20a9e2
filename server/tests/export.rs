//! The turns CSV, parsed back and compared with the database: the viewer's turns only, every
//! column as stored, filters applied, no money for vendors, formulas defused, clear 4xx answers.
use std::collections::BTreeMap;
use turns_server::testing::{demo_state, login, plain_router, send};

/// RFC 4180: fields separated by commas, quoted when they hold commas, quotes or line breaks.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let text = text
        .strip_prefix('\u{feff}')
        .expect("a byte-order mark first");
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "the file ends with a line break"
    );
    rows
}

/// The file as (header, rows keyed by turn id).
fn table(text: &str) -> (Vec<String>, BTreeMap<String, BTreeMap<String, String>>) {
    let mut rows = parse_csv(text).into_iter();
    let header = rows.next().expect("a header");
    let by_turn = rows
        .map(|r| {
            assert_eq!(r.len(), header.len(), "every row has every column");
            let row: BTreeMap<String, String> = header.iter().cloned().zip(r).collect();
            (row["Turn ID"].clone(), row)
        })
        .collect();
    (header, by_turn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turns_csv_reads_back_as_the_database_holds_them() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    // A work order someone typed as a formula.
    sqlx::query(
        "UPDATE turns SET wo_number = '=HYPERLINK(\"http://x\",\"y\")'
          WHERE id = (SELECT t.id FROM turns t JOIN properties p ON p.id = t.property_id
                        JOIN users u ON u.id = p.property_manager_id
                       WHERE u.email = 'pm@turns.demo' ORDER BY t.turn_id LIMIT 1)",
    )
    .execute(&pool)
    .await
    .expect("formula");

    let anonymous = send(&router, "GET", "/api/export/turns.csv", None, None).await;
    assert_eq!(anonymous.status, 401);

    let pm = login(&router, "pm@turns.demo").await;
    let reply = send(&router, "GET", "/api/export/turns.csv", Some(&pm), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.headers["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/csv"));
    assert!(reply.headers["content-disposition"]
        .to_str()
        .expect("disposition")
        .starts_with("attachment; filename=\"turns-"));
    let (header, rows) = table(&reply.body);
    assert!(header.contains(&"Approved amount".to_string()));
    // Independently: the PM's active turns, as text the way a spreadsheet shows them.
    let expected: Vec<(String, String, String, String, String, String, String)> = sqlx::query_as(
        "SELECT t.turn_id, p.property_id, coalesce(v.name, ''), coalesce(t.turn_amount::text, ''),
                coalesce(t.approved_turn_amount::text, ''),
                coalesce(t.turn_completion_date::text, ''), coalesce(t.wo_number, '')
           FROM turns t JOIN properties p ON p.id = t.property_id
           JOIN users u ON u.id = p.property_manager_id LEFT JOIN vendors v ON v.id = t.vendor_id
          WHERE t.is_active AND u.email = 'pm@turns.demo' ORDER BY t.turn_id",
    )
    .fetch_all(&pool)
    .await
    .expect("expected");
    assert!(!expected.is_empty());
    assert_eq!(
        rows.keys().cloned().collect::<Vec<_>>(),
        expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        "the PM's turns, and only theirs"
    );
    for (turn, code, vendor, amount, approved, done, wo) in &expected {
        let row = &rows[turn];
        assert_eq!(&row["Property ID"], code);
        assert_eq!(&row["Vendor"], vendor);
        assert_eq!(&row["Amount"], amount, "{turn} amount");
        assert_eq!(&row["Approved amount"], approved, "{turn} approved");
        assert_eq!(&row["Completed"], done);
        if wo.starts_with('=') {
            assert_eq!(
                row["Work order"],
                format!("'{wo}"),
                "a formula is shown, not run"
            );
        } else {
            assert_eq!(&row["Work order"], wo);
        }
    }

    // Filtered: non-core homes, completed in a window (or still open).
    let uri = "/api/export/turns.csv?core=non-core&from=2026-01-01&to=2026-11-30&pm=";
    let (_, filtered) = table(&send(&router, "GET", uri, Some(&pm), None).await.body);
    let want: Vec<String> = sqlx::query_scalar(
        "SELECT t.turn_id FROM turns t JOIN properties p ON p.id = t.property_id
           JOIN users u ON u.id = p.property_manager_id
          WHERE t.is_active AND u.email = 'pm@turns.demo' AND NOT p.is_core
            AND (t.turn_completion_date IS NULL
                 OR t.turn_completion_date BETWEEN '2026-01-01' AND '2026-11-30')
          ORDER BY t.turn_id",
    )
    .fetch_all(&pool)
    .await
    .expect("filtered");
    assert_eq!(filtered.keys().cloned().collect::<Vec<_>>(), want);

    // A vendor's file: their jobs, and no money at all.
    let vendor = login(&router, "vendor@turns.demo").await;
    let (header, jobs) = table(
        &send(&router, "GET", "/api/export/turns.csv", Some(&vendor), None)
            .await
            .body,
    );
    assert!(!header
        .iter()
        .any(|h| h.contains("mount") || h == "Approval"));
    assert!(!jobs.is_empty());
    assert!(jobs.values().all(|r| r["Vendor"] == "Brightline Painting"));

    // A filter that does not parse is refused by name, with nothing sent.
    let bad = send(
        &router,
        "GET",
        "/api/export/turns.csv?from=yesterday",
        Some(&pm),
        None,
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("from"), "{}", bad.body);

    // The audit log: admins only, every row, newest first (the newest: a vendor just added).
    let admin_actor = turns_server::testing::actor(&pool, "admin@turns.demo").await;
    let added = turns::mutation::Mutation {
        id: uuid::Uuid::new_v4(),
        base_version: None,
        device_time: chrono::Utc::now(),
        change: turns::mutation::Change::Admin(turns::admin::AdminChange::CreateVendor(
            turns::admin::NewVendor {
                id: uuid::Uuid::new_v4(),
                name: "Audit, \"Quoted\" & Co".into(),
                trade: None,
                contact_email: None,
                contact_phone: None,
            },
        )),
    };
    turns_server::mutations::apply(&pool, &admin_actor, &added)
        .await
        .expect("a vendor");
    let refused = send(&router, "GET", "/api/export/audit.csv", Some(&pm), None).await;
    assert_eq!(refused.status, 403);
    let admin = login(&router, "admin@turns.demo").await;
    let audit = send(&router, "GET", "/api/export/audit.csv", Some(&admin), None).await;
    assert_eq!(audit.status, 200);
    let rows = parse_csv(&audit.body);
    assert_eq!(
        rows[0][..4],
        ["When", "Done on the device", "Who", "Action"]
    );
    let (count, newest): (i64, String) = sqlx::query_as(
        "SELECT count(*), (SELECT action FROM audit_logs ORDER BY created_at DESC, id DESC LIMIT 1)
           FROM audit_logs",
    )
    .fetch_one(&pool)
    .await
    .expect("audit");
    assert_eq!(rows.len() as i64 - 1, count);
    assert_eq!(rows[1][3], newest);
    assert_eq!(newest, "create_vendor");
    assert_eq!(rows[1][2], "admin@turns.demo");
    let after: serde_json::Value = serde_json::from_str(&rows[1][7]).expect("the row as JSON");
    assert_eq!(after["name"], "Audit, \"Quoted\" & Co");
}
