//! Migrations from zero on a real PostgreSQL, and what the schema promises.
use turns_server::testing::fresh_database;

#[tokio::test]
async fn migrations_create_every_table_with_named_constraints() {
    let (pool, _) = fresh_database().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    for t in [
        "approval_decisions",
        "approval_thresholds",
        "audit_logs",
        "mutation_receipts",
        "properties",
        "sessions",
        "turn_stages",
        "turns",
        "users",
        "vendors",
    ] {
        assert!(
            tables.iter().any(|x| x == t),
            "missing table {t} in {tables:?}"
        );
    }
    let constraints: Vec<String> = sqlx::query_scalar("SELECT conname::text FROM pg_constraint")
        .fetch_all(&pool)
        .await
        .expect("constraints");
    for c in [
        "users_vendor_matches_role",
        "users_email_normalized",
        "turns_amount_non_negative",
        "turn_stages_display_order_key",
        "approval_decisions_reason_required",
        "vendors_name_key",
    ] {
        assert!(constraints.iter().any(|x| x == c), "missing constraint {c}");
    }
}

#[tokio::test]
async fn updates_bump_version_and_updated_at_whoever_writes() {
    let (pool, _) = fresh_database().await;
    let (id, v1, t1): (uuid::Uuid, i32, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "INSERT INTO vendors (name) VALUES ('Acme') RETURNING id, version, updated_at",
    )
    .fetch_one(&pool)
    .await
    .expect("insert");
    assert_eq!(v1, 1);
    let (v2, t2): (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("UPDATE vendors SET trade = 'Paint', version = 99 WHERE id = $1 RETURNING version, updated_at")
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("update");
    assert_eq!(v2, 2, "the trigger owns the version, not the writer");
    assert!(t2 >= t1);
}

#[tokio::test]
async fn money_is_exact_and_constraints_refuse_bad_rows() {
    let (pool, _) = fresh_database().await;
    let limit: rust_decimal::Decimal =
        sqlx::query_scalar("SELECT pm_self_approve_limit FROM approval_thresholds")
            .fetch_one(&pool)
            .await
            .expect("thresholds row");
    assert_eq!(limit, turns::Thresholds::default().pm_self_approve_limit);
    let second = sqlx::query("INSERT INTO approval_thresholds DEFAULT VALUES")
        .execute(&pool)
        .await;
    assert!(second.is_err(), "thresholds are a single row");

    let err = sqlx::query("INSERT INTO users (email, role) VALUES ('v@x.io', 'VENDOR')")
        .execute(&pool)
        .await
        .expect_err("a vendor user needs a vendor");
    let name = err
        .as_database_error()
        .and_then(|e| e.constraint().map(str::to_string));
    assert_eq!(name.as_deref(), Some("users_vendor_matches_role"));

    let err = sqlx::query("INSERT INTO users (email) VALUES ('Mixed@Case.io')")
        .execute(&pool)
        .await
        .expect_err("emails are stored normalised");
    assert_eq!(
        err.as_database_error()
            .and_then(|e| e.constraint().map(str::to_string))
            .as_deref(),
        Some("users_email_normalized")
    );
}

#[tokio::test]
async fn synced_tables_have_full_replica_identity_and_a_publication() {
    let (pool, _) = fresh_database().await;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, c.relreplident::text FROM pg_class c
           JOIN pg_publication_rel pr ON pr.prrelid = c.oid
           JOIN pg_publication p ON p.oid = pr.prpubid
          WHERE p.pubname = 'turns_sync' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .expect("publication");
    let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    for t in ["properties", "turn_stages", "turns", "users", "vendors"] {
        assert!(names.contains(&t), "{t} not published: {names:?}");
    }
    assert!(
        rows.iter().all(|(_, ident)| ident == "f"),
        "replica identity: {rows:?}"
    );
    let wal_level: String = sqlx::query_scalar("SHOW wal_level")
        .fetch_one(&pool)
        .await
        .expect("wal_level");
    assert_eq!(wal_level, "logical");
}
