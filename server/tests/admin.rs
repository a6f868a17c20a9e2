//! An admin runs the system without SQL: vendors added and approved, users added with a
//! temporary password that works (and only its hash kept), deactivation ending a user's sessions,
//! thresholds changed; each through the mutation path (validated, refused for non-admins,
//! audited).
use chrono::Utc;
use sqlx::PgPool;
use turns::admin::{AdminChange, NewUser, NewVendor};
use turns::mutation::{Change, Mutation, Outcome, Rejection};
use turns::{Actor, Decimal, Role, Thresholds};
use turns_server::auth::{password_link, password_link_owner, use_password_link};
use turns_server::error::ApiError;
use turns_server::mutations::apply;
use turns_server::testing::{actor, demo_state, login, plain_router, send};
use uuid::Uuid;

async fn run(pool: &PgPool, who: &Actor, change: AdminChange) -> Outcome {
    let m = Mutation {
        id: Uuid::new_v4(),
        base_version: None,
        device_time: Utc::now(),
        change: Change::Admin(change),
    };
    apply(pool, who, &m).await.expect("apply")
}

fn refused_field(o: &Outcome) -> String {
    match o {
        Outcome::Rejected(Rejection::Invalid { fields, .. }) => fields[0].field.clone(),
        other => panic!("expected a refusal by field: {other:?}"),
    }
}

fn forbidden(o: &Outcome) -> bool {
    matches!(o, Outcome::Rejected(Rejection::Forbidden { .. }))
}

async fn log_in_with(router: &axum::Router, email: &str, password: &str) -> u16 {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    send(
        router,
        "POST",
        "/auth/login",
        None,
        Some(("application/json", body)),
    )
    .await
    .status
    .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_vendors_and_users_deactivates_and_sets_thresholds() {
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    let admin = actor(&pool, "admin@turns.demo").await;
    let superadmin = actor(&pool, "superadmin@turns.demo").await;
    let pm = actor(&pool, "pm@turns.demo").await;
    let audits = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM audit_logs
              WHERE table_name IN ('users', 'vendors', 'approval_thresholds')",
        )
        .fetch_one(&pool)
        .await
        .expect("audits")
    };
    let audited = audits().await;

    // A vendor company: added (not approved yet), then approved.
    let vendor = NewVendor {
        id: Uuid::new_v4(),
        name: " Apex Roofing ".into(),
        trade: Some("Roofing".into()),
        contact_email: Some("Office@Apex.example".into()),
        contact_phone: None,
    };
    assert!(forbidden(
        &run(&pool, &pm, AdminChange::CreateVendor(vendor.clone())).await
    ));
    assert!(matches!(
        run(&pool, &admin, AdminChange::CreateVendor(vendor.clone())).await,
        Outcome::Applied { txid: Some(_) }
    ));
    let duplicate = NewVendor {
        id: Uuid::new_v4(),
        ..vendor.clone()
    };
    assert_eq!(
        refused_field(&run(&pool, &admin, AdminChange::CreateVendor(duplicate)).await),
        "name"
    );
    let approve = AdminChange::SetVendor {
        vendor: vendor.id,
        approved: true,
        active: true,
    };
    assert!(matches!(
        run(&pool, &admin, approve).await,
        Outcome::Applied { .. }
    ));
    let stored: (String, String, bool) =
        sqlx::query_as("SELECT name, contact_email, is_approved FROM vendors WHERE id = $1")
            .bind(vendor.id)
            .fetch_one(&pool)
            .await
            .expect("vendor");
    assert_eq!(
        stored,
        ("Apex Roofing".into(), "office@apex.example".into(), true)
    );

    // A user of that vendor, who sets their own password with a link.
    let crew = NewUser {
        id: Uuid::new_v4(),
        email: " Crew@Apex.example ".into(),
        first_name: Some("Ray".into()),
        last_name: Some("Apex".into()),
        role: Role::Vendor,
        vendor_id: Some(vendor.id),
    };
    assert!(matches!(
        run(&pool, &admin, AdminChange::CreateUser(crew.clone())).await,
        Outcome::Applied { .. }
    ));
    let again = NewUser {
        id: Uuid::new_v4(),
        ..crew.clone()
    };
    assert_eq!(
        refused_field(&run(&pool, &admin, AdminChange::CreateUser(again)).await),
        "email"
    );
    assert_eq!(
        log_in_with(&router, "crew@apex.example", "no-password-yet").await,
        401
    );
    assert!(matches!(
        password_link(&pool, &pm, crew.id).await,
        Err(ApiError::Forbidden)
    ));
    let stale = password_link(&pool, &admin, crew.id).await.expect("a link");
    let link = password_link(&pool, &admin, crew.id).await.expect("a link");
    assert!(link.expires_at > Utc::now() + chrono::Duration::hours(23));
    let gone = |r: Result<Uuid, ApiError>| matches!(r, Err(ApiError::BadRequest(m)) if m.contains("expired or was already used"));
    assert!(
        gone(use_password_link(&pool, &stale.token, "a fine long password").await),
        "a newer link replaces an older one"
    );
    assert_eq!(
        password_link_owner(&pool, &link.token)
            .await
            .expect("owner"),
        (crew.id, "crew@apex.example".to_string())
    );
    // The policy holds, and a refusal does not spend the link.
    assert!(matches!(
        use_password_link(&pool, &link.token, "short").await,
        Err(ApiError::BadRequest(_))
    ));
    let password = "ladders on the apex roof";
    assert_eq!(
        use_password_link(&pool, &link.token, password)
            .await
            .expect("set"),
        crew.id
    );
    assert!(
        gone(use_password_link(&pool, &link.token, "another long password").await),
        "a link works once"
    );
    let expiring = password_link(&pool, &admin, crew.id).await.expect("a link");
    sqlx::query(
        "UPDATE password_links SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
    )
    .execute(&pool)
    .await
    .expect("expire");
    assert!(gone(
        use_password_link(&pool, &expiring.token, "another long password").await
    ));
    let kept: String =
        sqlx::query_scalar("SELECT password_hash FROM user_credentials WHERE user_id = $1")
            .bind(crew.id)
            .fetch_one(&pool)
            .await
            .expect("hash");
    assert!(kept.starts_with("$argon2") && !kept.contains(password));
    assert_eq!(
        log_in_with(&router, "crew@apex.example", password).await,
        200
    );
    let crew_session = login_cookie(&router, "crew@apex.example", password).await;
    let me = send(&router, "GET", NOWHERE, Some(&crew_session), None).await;
    assert_eq!(me.status, 404, "signed in: the photo is simply not there");

    // Only a super admin adds an admin.
    let boss = NewUser {
        id: Uuid::new_v4(),
        email: "boss@turns.demo".into(),
        first_name: None,
        last_name: None,
        role: Role::Admin,
        vendor_id: None,
    };
    assert!(forbidden(
        &run(&pool, &admin, AdminChange::CreateUser(boss.clone())).await
    ));
    assert!(matches!(
        run(&pool, &superadmin, AdminChange::CreateUser(boss)).await,
        Outcome::Applied { .. }
    ));

    // Deactivated: the session ends at once, the password no longer logs in, and a link made
    // before is gone (bringing them back does not revive it).
    let pending = password_link(&pool, &admin, crew.id).await.expect("a link");
    assert_eq!(
        refused_field(
            &run(
                &pool,
                &admin,
                AdminChange::SetUserActive {
                    user: admin.user_id,
                    active: false
                }
            )
            .await
        ),
        "user"
    );
    assert!(matches!(
        run(
            &pool,
            &admin,
            AdminChange::SetUserActive {
                user: crew.id,
                active: false
            }
        )
        .await,
        Outcome::Applied { .. }
    ));
    let after = send(&router, "GET", NOWHERE, Some(&crew_session), None).await;
    assert_eq!(after.status, 401, "the session ended");
    assert_eq!(
        log_in_with(&router, "crew@apex.example", password).await,
        401
    );
    assert!(
        gone(use_password_link(&pool, &pending.token, "another long password").await),
        "a deactivated user's link does not work"
    );
    let open_links: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM password_links WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(crew.id)
    .fetch_one(&pool)
    .await
    .expect("links");
    assert_eq!(open_links, 0);
    assert!(matches!(
        password_link(&pool, &admin, crew.id).await,
        Err(ApiError::BadRequest(m)) if m.contains("deactivated")
    ));
    assert!(matches!(
        password_link(&pool, &admin, superadmin.user_id).await,
        Err(ApiError::Forbidden)
    ));

    // Thresholds: in order, or refused by field.
    let higher = Thresholds {
        pm_self_approve_limit: Decimal::new(1500, 0),
        ..Thresholds::default()
    };
    assert!(forbidden(
        &run(&pool, &pm, AdminChange::SetThresholds(higher.clone())).await
    ));
    assert!(matches!(
        run(&pool, &admin, AdminChange::SetThresholds(higher.clone())).await,
        Outcome::Applied { .. }
    ));
    assert_eq!(
        turns_server::queries::thresholds(&pool)
            .await
            .expect("thresholds"),
        higher
    );
    let upside_down = Thresholds {
        pm_self_approve_limit: Decimal::new(9000, 0),
        ..Thresholds::default()
    };
    assert_eq!(
        refused_field(&run(&pool, &admin, AdminChange::SetThresholds(upside_down)).await),
        "pm_self_approve_limit"
    );

    // Stages: renamed, recoloured, gated, moved; a bad colour refused; managers may not.
    let stages = turns_server::queries::active_stages(&pool)
        .await
        .expect("stages");
    let scope = &stages[2];
    let settings = turns::admin::StageSettings {
        name: " Scope and bid ".into(),
        color: "#AA3377".into(),
        is_amount_required: true,
        is_vendor_required: false,
        requires_approval: false,
        requires_qc: false,
    };
    let edit = |s: turns::admin::StageSettings| AdminChange::EditStage {
        stage: scope.id,
        settings: s,
    };
    assert!(forbidden(&run(&pool, &pm, edit(settings.clone())).await));
    let bad = turns::admin::StageSettings {
        color: "red".into(),
        ..settings.clone()
    };
    assert_eq!(refused_field(&run(&pool, &admin, edit(bad)).await), "color");
    assert!(matches!(
        run(&pool, &admin, edit(settings)).await,
        Outcome::Applied { .. }
    ));
    let moved = AdminChange::MoveStage {
        stage: scope.id,
        earlier: true,
    };
    assert!(matches!(
        run(&pool, &admin, moved).await,
        Outcome::Applied { .. }
    ));
    let now = turns_server::queries::active_stages(&pool)
        .await
        .expect("stages");
    assert_eq!(now[1].id, scope.id, "moved one place earlier");
    assert_eq!(now[2].id, stages[1].id, "its neighbour took its place");
    assert_eq!(
        (
            now[1].name.as_str(),
            now[1].color.as_str(),
            now[1].is_amount_required
        ),
        ("Scope and bid", "#aa3377", true)
    );
    let first = AdminChange::MoveStage {
        stage: now[0].id,
        earlier: true,
    };
    assert!(matches!(
        run(&pool, &admin, first).await,
        Outcome::Applied { txid: None }
    ));

    // Each applied change left its audit row: vendor, approval, user, admin user, deactivation,
    // thresholds (the stage changes are audited under turn_stages); so did the four links made
    // for the crew user and the one they used.
    assert_eq!(audits().await - audited, 6 + 4 + 1);
    let overview = turns_server::queries::admin_overview(&pool, &admin)
        .await
        .expect("overview")
        .expect("an admin's");
    assert!(overview
        .users
        .iter()
        .any(|u| u.email == "crew@apex.example" && !u.is_active));
    assert!(turns_server::queries::admin_overview(&pool, &pm)
        .await
        .expect("overview")
        .is_none());
    let _ = login(&router, "pm@turns.demo").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_keeps_cost_templates_and_qc_checklists() {
    use turns::admin::TemplateSettings;
    use turns::line_items::TemplateLine;
    let state = demo_state().await;
    let pool = state.pool.clone();
    let admin = actor(&pool, "admin@turns.demo").await;
    let pm = actor(&pool, "pm@turns.demo").await;
    let line = |description: &str, quantity: i64, cost: i64| TemplateLine {
        category: "Paint".into(),
        description: description.into(),
        quantity: Decimal::new(quantity, 0),
        unit_cost: Decimal::new(cost, 2),
    };
    let settings = TemplateSettings {
        name: " Studio ".into(),
        bedrooms: Some(Decimal::ZERO),
        bathrooms: Some(Decimal::ONE),
        min_sqft: Some(300),
        max_sqft: Some(550),
        items: vec![line("Walls", 1, 45_000), line("Touch-ups", 3, 2_550)],
        is_active: true,
    };
    let id = Uuid::new_v4();
    let save = |s: TemplateSettings| AdminChange::SaveCostTemplate {
        template: id,
        settings: s,
    };
    assert!(forbidden(&run(&pool, &pm, save(settings.clone())).await));
    let upside_down = TemplateSettings {
        min_sqft: Some(900),
        ..settings.clone()
    };
    assert_eq!(
        refused_field(&run(&pool, &admin, save(upside_down)).await),
        "max_sqft"
    );
    assert!(matches!(
        run(&pool, &admin, save(settings.clone())).await,
        Outcome::Applied { txid: Some(_) }
    ));
    // Changed: a line fewer, retired. The row is replaced whole, kept, and read back typed.
    let retired = TemplateSettings {
        items: vec![line("Walls", 2, 45_000)],
        is_active: false,
        ..settings.clone()
    };
    assert!(matches!(
        run(&pool, &admin, save(retired.clone())).await,
        Outcome::Applied { .. }
    ));
    let overview = turns_server::queries::admin_overview(&pool, &admin)
        .await
        .expect("overview")
        .expect("an admin's");
    let kept = overview
        .templates
        .iter()
        .find(|t| t.id == id)
        .expect("the template");
    assert_eq!(
        kept.settings,
        TemplateSettings {
            name: "Studio".into(),
            ..retired
        }
    );
    let total: Decimal = sqlx::query_scalar(
        "SELECT sum((l->>'quantity')::numeric * (l->>'unit_cost')::numeric)
           FROM cost_templates, jsonb_array_elements(items) l WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .expect("total");
    assert_eq!(total, Decimal::new(900, 0), "the lines as SQL reads them");

    // A checklist: two items added at the end of the QC stage's list, one reworded, moved
    // first, then one removed (kept for the inspections that name it, off the list).
    // The demo's inspection stage and its checklist.
    let qc_stage: Uuid =
        sqlx::query_scalar("SELECT stage_id FROM qc_checklist_items WHERE is_active LIMIT 1")
            .fetch_one(&pool)
            .await
            .expect("a checklist");
    let listed = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT label FROM qc_checklist_items WHERE stage_id = $1 AND is_active
              ORDER BY position, id",
        )
        .bind(qc_stage)
        .fetch_all(&pool)
        .await
        .expect("checklist")
    };
    let before = listed().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let add = |item, label: &str| AdminChange::SaveQcItem {
        item,
        stage: qc_stage,
        label: label.into(),
    };
    assert!(forbidden(&run(&pool, &pm, add(a, "Smoke alarm")).await));
    assert_eq!(
        refused_field(&run(&pool, &admin, add(a, "  ")).await),
        "label"
    );
    for (item, label) in [(a, "Smoke alarm"), (b, "Keys  ")] {
        assert!(matches!(
            run(&pool, &admin, add(item, label)).await,
            Outcome::Applied { .. }
        ));
    }
    let mut expected = before.clone();
    expected.extend(["Smoke alarm".to_string(), "Keys".to_string()]);
    assert_eq!(listed().await, expected, "added at the end, trimmed");
    run(&pool, &admin, add(b, "All keys returned")).await;
    for _ in 0..expected.len() {
        run(
            &pool,
            &admin,
            AdminChange::MoveQcItem {
                item: b,
                earlier: true,
            },
        )
        .await;
    }
    let now = listed().await;
    assert_eq!(
        now[0], "All keys returned",
        "moved to the top, one place at a time"
    );
    assert_eq!(now.len(), expected.len());
    assert!(matches!(
        run(&pool, &admin, AdminChange::RemoveQcItem { item: a }).await,
        Outcome::Applied { .. }
    ));
    assert!(!listed().await.contains(&"Smoke alarm".to_string()));
    // The last item of a checklist stays while a stage requires QC.
    let lone = Uuid::new_v4();
    let other_stage: Uuid = sqlx::query_scalar(
        "SELECT id FROM turn_stages
          WHERE id NOT IN (SELECT stage_id FROM qc_checklist_items) ORDER BY display_order",
    )
    .fetch_one(&pool)
    .await
    .expect("a stage");
    let lone_item = AdminChange::SaveQcItem {
        item: lone,
        stage: other_stage,
        label: "Meter read".into(),
    };
    run(&pool, &admin, lone_item).await;
    assert_eq!(
        refused_field(&run(&pool, &admin, AdminChange::RemoveQcItem { item: lone }).await),
        "item"
    );
    // A removed item is not reworded back, and an item keeps its stage.
    assert!(matches!(
        run(&pool, &admin, add(a, "Smoke alarm again")).await,
        Outcome::Rejected(Rejection::NotFound { .. })
    ));
    let elsewhere = AdminChange::SaveQcItem {
        item: b,
        stage: Uuid::new_v4(),
        label: "Moved?".into(),
    };
    assert_eq!(refused_field(&run(&pool, &admin, elsewhere).await), "stage");
    let kept: bool =
        sqlx::query_scalar("SELECT NOT is_active FROM qc_checklist_items WHERE id = $1")
            .bind(a)
            .fetch_one(&pool)
            .await
            .expect("kept");
    assert!(kept, "removed from the list, not deleted");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE table_name IN ('cost_templates', 'qc_checklist_items')",
    )
    .fetch_one(&pool)
    .await
    .expect("audits");
    assert_eq!(
        audited,
        // Templates 2; checklists: 2 added, 1 reworded, the moves, 1 removed, the lone item.
        2 + 3 + expected.len() as i64 - 1 + 1 + 1,
        "every applied change"
    );
}

/// A photo that does not exist: 404 for a session, 401 without one.
const NOWHERE: &str = "/api/photos/00000000-0000-0000-0000-000000000001";

async fn login_cookie(router: &axum::Router, email: &str, password: &str) -> String {
    let body = serde_json::json!({ "email": email, "password": password }).to_string();
    send(
        router,
        "POST",
        "/auth/login",
        None,
        Some(("application/json", body)),
    )
    .await
    .session_cookie()
    .expect("a session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_changes_their_password_and_logs_out_their_other_devices() {
    use turns_server::auth::{change_password, end_other_sessions, sessions_of, token_hash};
    use turns_server::error::ApiError;
    let state = demo_state().await;
    let pool = state.pool.clone();
    let router = plain_router(state);
    let me = actor(&pool, "inspector@turns.demo").await;
    let phone = login(&router, "inspector@turns.demo").await;
    let laptop = login(&router, "inspector@turns.demo").await;
    let hash_of = |cookie: &str| token_hash(cookie.split_once('=').expect("cookie").1);
    let listed = sessions_of(&pool, me.user_id, &hash_of(&laptop))
        .await
        .expect("sessions");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed.iter().filter(|s| s.this_one).count(), 1);

    let refused = |r: Result<(), ApiError>| match r {
        Err(ApiError::BadRequest(m)) => m,
        other => panic!("expected a refusal: {other:?}"),
    };
    let keep = hash_of(&laptop);
    let wrong = change_password(&pool, me.user_id, "not-it", "a long new passphrase", &keep).await;
    assert_eq!(refused(wrong), "Your current password is not right.");
    let weak = change_password(&pool, me.user_id, "turns-demo", "password1234", &keep).await;
    assert!(refused(weak).contains("most common"));
    change_password(
        &pool,
        me.user_id,
        "turns-demo",
        "a long new passphrase",
        &keep,
    )
    .await
    .expect("changed");
    // The other device is logged out; this one stays; the new password works, the old does not.
    assert_eq!(
        send(&router, "GET", NOWHERE, Some(&phone), None)
            .await
            .status,
        401
    );
    assert_eq!(
        send(&router, "GET", NOWHERE, Some(&laptop), None)
            .await
            .status,
        404
    );
    assert_eq!(
        log_in_with(&router, "inspector@turns.demo", "turns-demo").await,
        401
    );
    let tablet = login_cookie(&router, "inspector@turns.demo", "a long new passphrase").await;
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_logs WHERE action = 'change_password' AND row_id = $1",
    )
    .bind(me.user_id)
    .fetch_one(&pool)
    .await
    .expect("audit");
    assert_eq!(audited, 1);

    // "Log out everywhere else" from the laptop ends the tablet's session only.
    assert_eq!(
        end_other_sessions(&pool, me.user_id, &keep)
            .await
            .expect("ended"),
        1
    );
    assert_eq!(
        send(&router, "GET", NOWHERE, Some(&tablet), None)
            .await
            .status,
        401
    );
    assert_eq!(
        send(&router, "GET", NOWHERE, Some(&laptop), None)
            .await
            .status,
        404
    );
}
