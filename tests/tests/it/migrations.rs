//! Migrations are append-only: a released migration never changes, and a database created by
//! any earlier release upgrades to the current schema, on both backends.

use sha2::{Digest, Sha256};
use switchboard_tests::databases::{Backend, TestDatabase};

/// Every migration file with the SHA-256 it was released with. A new migration is added here
/// when it lands; a released one is never edited (add a new one instead).
const RELEASED: &[(&str, &str)] = &[
    ("sqlite/0001_foundation.sql", "e6620354170d713f96b543874f5b0fbd57ee1263452401794c2bdf4e0675a6c6"),
    ("postgres/0001_foundation.sql", "f07d85deed1541e53bcc30fc10fe1744d42e00283e72de2804e0413240d0e3f8"),
    ("sqlite/0002_unanswered_messages.sql", "99e29f485674e82d79818cc5f514338b951f492cd0bd650b9cfbf11c442566af"),
    ("postgres/0002_unanswered_messages.sql", "99e29f485674e82d79818cc5f514338b951f492cd0bd650b9cfbf11c442566af"),
    ("sqlite/0003_sign_in_audit_and_canned_owners.sql", "942f6afd6476e1bf81c425f773810e88bef0b1165558587e63f338f52b767602"),
    ("postgres/0003_sign_in_audit_and_canned_owners.sql", "69758a8257a63696bf673eb39e85beca5c2bd8c2f4b9e3e0e8514f28ae88305c"),
    ("sqlite/0004_singleton_leases.sql", "50a9f9d78ffeb8e3f0b5baab6747ddd58504a12d02ab79497855655947488729"),
    ("postgres/0004_singleton_leases.sql", "df6dd2fc5ee49ef4a8c30be9d5287ce65742bc49f94cb20a06e37171d0d42ae4"),
    ("sqlite/0005_delivery_status.sql", "0f4e5303f33248a59e8a6ca10e692c95f11a7369b1d1c86a38de66f053c307a5"),
    ("postgres/0005_delivery_status.sql", "9a7b2e9beb06ac666e11f73c13b67ef339225b5e5029d10675171a592a01711f"),
    ("sqlite/0006_message_search.sql", "9fc8f4c480f878cd6ae59e2589e2fedbc61009b791a79607f85e641493a2628b"),
    ("postgres/0006_message_search.sql", "09a74b1352f266b3e5692bfae0af7466b272c5ba2b87c1963b7462fce4434ac1"),
    ("sqlite/0007_search_indexes.sql", "189c98062c3f98059c69b96c987659363204039e2b4c9a43d1ef14e76788cbb0"),
    ("postgres/0007_search_indexes.sql", "a21861433134a3c873f9649699feedddce87bc5594bf19f5da6c814056cc2640"),
    ("sqlite/0008_priority_first_queue.sql", "a6c7d7b220c7a571fceade54d2030b2525778110356e4a62742691ee2ca2a4e2"),
    ("postgres/0008_priority_first_queue.sql", "a6c7d7b220c7a571fceade54d2030b2525778110356e4a62742691ee2ca2a4e2"),
    ("sqlite/0009_customers_list.sql", "903fbc53c7572e08104d16a4e38bd6718edacd2d9f9e439de3ba30b2391e3754"),
    ("postgres/0009_customers_list.sql", "903fbc53c7572e08104d16a4e38bd6718edacd2d9f9e439de3ba30b2391e3754"),
    ("sqlite/0010_conversation_timers.sql", "825c975af7d7fb325292c4e3d489ce12c2e9ffe6661e74493f842449aea52ed0"),
    ("postgres/0010_conversation_timers.sql", "ee682cda10c9a5e5ff72a9304c06770a0530055e25278f3c6f6362f87b324603"),
    ("sqlite/0011_conversation_versions.sql", "ebd2fc92d93cf0925553831bd69ee6ec2db6670baf96758c8cfe1963e652609a"),
    ("postgres/0011_conversation_versions.sql", "ebd2fc92d93cf0925553831bd69ee6ec2db6670baf96758c8cfe1963e652609a"),
    ("sqlite/0012_shared_rate_limits.sql", "56ea2ac4901a0f38ceeaa4fd3b8603ac4f294a8e58a46e898c544b192c402615"),
    ("postgres/0012_shared_rate_limits.sql", "8696eeec2288e7d35a70e152d45faf45ad8598149d1dc186655b0b6c5aaca41a"),
    ("sqlite/0013_waiting_notices.sql", "c7fbf1c87d01fc2a5b326cc339ead33114ad866b3eb9b8412ca90afd7cc84f27"),
    ("postgres/0013_waiting_notices.sql", "19142554261531bba2e79c79539a71ce37df7ec59411f2f7918759fc48287a32"),
    ("sqlite/0014_rate_bucket_refill_rates.sql", "2ef1eee8f33306202c285c078dd983db2b7905a2f140da88b4b505ad2b4ac415"),
    ("postgres/0014_rate_bucket_refill_rates.sql", "c7f1bf272a6e343c89cde91ac044a9c626816b7a906d521f4779236196aed9b5"),
    ("sqlite/0015_sla_and_notifications.sql", "a20ba469138608fba6dd94672667598490b927f860b1851a60ef34ecd5003e3a"),
    ("postgres/0015_sla_and_notifications.sql", "c95c05a0774eb169132202061dac441377c78ce7d163fa5b73a7abdd97d13bdd"),
    ("sqlite/0016_scheduled_jobs_and_mailed_notices.sql", "e3f09c4aa0ac22f8a52b42a3a83dea673e8b968dd5cdd848f36df24e7d773fa7"),
    ("postgres/0016_scheduled_jobs_and_mailed_notices.sql", "856dcd46c4061d58a099ca7897a58aafc80282c1a2874a1cf794068ca97e2af4"),
    ("sqlite/0017_contact_email.sql", "81612e0f223cbff539736da337d89fafbce325d20d1cc4ebae8212138605dfe7"),
    ("postgres/0017_contact_email.sql", "81612e0f223cbff539736da337d89fafbce325d20d1cc4ebae8212138605dfe7"),
    ("sqlite/0018_confirmation_ratings_escalations.sql", "0e89f47dd6984c19fa240406bc6cf6dea352316ad87ff47e6abbc8601af6ab41"),
    ("postgres/0018_confirmation_ratings_escalations.sql", "64a96c48ff71580d92556754108579e4324b8274666c6a8dfa58a093adfdc591"),
    ("sqlite/0019_documents.sql", "4d91b14752f1baa11d52f2ec109b310be36fa72e3822ee6866e69fad7f68e9aa"),
    ("postgres/0019_documents.sql", "f57fbba3a7b5628e0cfd51ea683769261109798a9e99a479e83dfa4213fb3c04"),
    ("sqlite/0020_conversation_language.sql", "759fe9236cd469356ae57eea1db86daef87eaaacadf89ee231c882b791d9799f"),
    ("postgres/0020_conversation_language.sql", "759fe9236cd469356ae57eea1db86daef87eaaacadf89ee231c882b791d9799f"),
    ("sqlite/0021_customer_mails.sql", "30f09cb7903111968f8f2578ac372063ea7ee60cd3dfb92f4d19dd46c3c93437"),
    ("postgres/0021_customer_mails.sql", "9f93e3c981810af5050ca1f2b5aacff6c1ac7cf32d49d2e39b55616c9b4501c5"),
    ("sqlite/0022_contact_links.sql", "1dbf9c6b99b56e5465a62cfcf8d363b0dbfbb4e31cd64a97d32c17b0abd24fc2"),
    ("postgres/0022_contact_links.sql", "9e9ffbbb8938a096cb084ed872c7f99c39204c9f59d088d4e0292533d40d2a7c"),
    ("sqlite/0023_conversation_history.sql", "2226a89e882f7b043ff31015739cba8ebfd68804dbfda408ef82229af8fb9c6d"),
    ("postgres/0023_conversation_history.sql", "e23f822b5da42657b8997663dfe9b897c325f29981f587ef12106fce792fb829"),
    ("sqlite/0024_intent_versions.sql", "79abc3d99b844d1d5e1fc4cc41e79196c001db62293128603e16b330ce779871"),
    ("postgres/0024_intent_versions.sql", "b2a48ec5f7dbd94f187a33cee189a50507f54b7e2d2ec9f6afdb2af6ec106d44"),
    ("sqlite/0025_automated_responses_and_audit.sql", "8174681faa55c84454376f31437d144a7fb6ce7d5105c4e45d2a60eadcbef1cc"),
    ("postgres/0025_automated_responses_and_audit.sql", "e9544fae5f9d30d3eaf55ffd04f5054d47fd7de610ca832b4076105f4c3f96e4"),
    ("sqlite/0026_report_rollups.sql", "c99749dde61522f70dd6cf2c727b81d3ea3605e700c8964d5158f912a15b34c3"),
    ("postgres/0026_report_rollups.sql", "edb839480e1afdb9ecd29ad6cebad730a3d615792a353938bf9d9fa0879b03f5"),
    ("sqlite/0027_settings.sql", "2bb92fe006a01241379325cceff42b317f52a9241c47da70a74ff80b67e58e52"),
    ("postgres/0027_settings.sql", "0ac833e1b4dc14b20fcaf05953c7ce58ad6adbeaffac7caa594cb06ca4f75f87"),
    ("sqlite/0028_webhooks_and_dead_letters.sql", "f52a8dd69b9c84a5cbf3acf3d0f3e1d520060c7f8525f89945138b8726d73dd1"),
    ("postgres/0028_webhooks_and_dead_letters.sql", "60b4bf5c80c66e10ec5ca10c6209639c887136ed1db75f278115c035fabda74c"),
    ("sqlite/0029_channel_states.sql", "0a5afce2ff914471be968587782a428834a93ab0d0c59bac22ffb9cef37e61a4"),
    ("postgres/0029_channel_states.sql", "7832d3915e636596748feacee5ef2481e0ab24028e643b83fcbe9fb9f4dfa9fa"),
    ("sqlite/0030_direct_notices.sql", "a5927c70803f036ad95d34bde754b1c7b49c28f3f6541a973e67d85a2b21124c"),
    ("postgres/0030_direct_notices.sql", "8f47f98937ff5241d1105f793502587fa5f31aa6460982857728074935b4d983"),
    ("sqlite/0031_customer_messages_by_conversation.sql", "da106f6774ff5336a359a04fce587481c2fb84bf670c85eea85290b3d74d903c"),
    ("postgres/0031_customer_messages_by_conversation.sql", "3b0c81c5ebee3f79b778af777ae04e474c9655dd4c2a723adfd1b3725613ef21"),
    ("sqlite/0032_two_factor_sign_in.sql", "91aef6dbaafcc233a3fc201008d52c69fc7156208f068d42414e546c44def411"),
    ("postgres/0032_two_factor_sign_in.sql", "7bab8f3347f7efeb56c95bf67bc981f7b5ecca70bcddfd13268280f12dab83c0"),
    ("sqlite/0033_agent_skills.sql", "2c82c1eefef26d072825e1b7bc481aa6b21eb2efbe5fccf8daad94511c4a388f"),
    ("postgres/0033_agent_skills.sql", "2c82c1eefef26d072825e1b7bc481aa6b21eb2efbe5fccf8daad94511c4a388f"),
    ("sqlite/0034_waiting_messages.sql", "20bec82e41c1f6e4506fbd6e5d3daf27994d3306fdd13c2e23b934729b9cf7b1"),
    ("postgres/0034_waiting_messages.sql", "865a923ca975843ecd80bfbae4a38bf9f1645afdda80d896575ed2032833189d"),
    ("sqlite/0035_waiting_rows_by_triggers.sql", "65787dea4d2ed0a0c70d74439483e49443e81b9db01b2f43ef3ec1c43c7df67d"),
    ("postgres/0035_waiting_rows_by_triggers.sql", "19b55c70d00f8e1d6574c7149b5e03e0692ed37d970a9b49da8542867aac6ef2"),
    ("sqlite/0036_message_search_by_group.sql", "b72ac6c0ab655d214be99a558e031f062facbc8f64f1f9283fc76fd1d345680d"),
    ("postgres/0036_message_search_by_group.sql", "b57d07b4cc2e263dd08d76c7ea7b056e578d12f1096782ba00b9eab5adb24810"),
];

fn migrations_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations")
}

#[test]
fn released_migrations_are_unchanged_and_every_migration_is_listed() {
    let mut found = Vec::new();
    for backend in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(migrations_dir().join(backend)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            found.push(format!("{backend}/{name}"));
        }
    }
    found.sort();
    let mut listed: Vec<String> = RELEASED.iter().map(|(file, _)| file.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "every migration file is listed in RELEASED, with its hash");
    for (file, released) in RELEASED {
        let bytes = std::fs::read(migrations_dir().join(file)).unwrap();
        let hash = hex::encode(Sha256::digest(&bytes));
        assert_eq!(&hash, released, "{file} changed after its release; add a new migration instead");
    }
}

#[test]
fn both_backends_have_the_same_migrations() {
    let names = |backend: &str| {
        let mut names: Vec<String> = RELEASED
            .iter()
            .filter_map(|(file, _)| file.strip_prefix(&format!("{backend}/")).map(String::from))
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("sqlite"), names("postgres"), "each schema change lands on both backends");
}

/// A database made by the first release only, then opened by this build.
fn folder(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

/// A folder with the backend's migrations numbered below `version`, as an older build had.
fn migrations_before(backend: Backend, version: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(migrations_dir().join(folder(backend))).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.as_str() < version {
            std::fs::copy(migrations_dir().join(folder(backend)).join(&name), dir.path().join(&name)).unwrap();
        }
    }
    dir
}

/// Migrates `db` with the migrations in `dir`, as an older build would have.
async fn migrate_with(db: &TestDatabase, dir: &std::path::Path) {
    let migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    match db.backend {
        Backend::Sqlite => {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db.url.trim_start_matches("sqlite://"))
                .create_if_missing(true);
            let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            migrator.run(&pool).await.unwrap();
            pool.close().await;
        }
    }
}

async fn upgrades_from_the_first_release(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let first_release = tempfile::tempdir().unwrap();
    std::fs::copy(
        migrations_dir().join(folder(backend)).join("0001_foundation.sql"),
        first_release.path().join("0001_foundation.sql"),
    )
    .unwrap();
    migrate_with(&db, first_release.path()).await;
    db.execute("INSERT INTO settings (key, value) VALUES ('kept', 'yes')").await.unwrap();
    let store = db.open().await;
    assert_eq!(store.setting_or_insert("kept", "no").await.unwrap(), "yes", "data survives the upgrade");
}

/// A working database from before 0018 (which rebuilds `conversations` on SQLite) and 0019
/// (which rebuilds `audit_log`): its conversations, messages, timers, notifications and audit
/// entries survive, references between them hold, and the latest escalation is in the history.
async fn upgrades_a_database_in_use_through_the_rebuilds(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let before = migrations_before(backend, "0018");
    migrate_with(&db, before.path()).await;
    let conversation = "0190a8c0-0000-7000-8000-000000000001";
    let agent = "0190a8c0-0000-7000-8000-0000000000a1";
    for sql in [
        format!("INSERT INTO agents (id, email, name, role, presence, capacity, active, created_at, password_hash) VALUES ('{agent}', 'ann@example.com', 'Ann', 'agent', 'online', 5, TRUE, 1, 'x')"),
        "INSERT INTO contacts (id, channel, external_id, display_name, created_at) VALUES ('0190a8c0-0000-7000-8000-0000000000c1', 'webchat', 'v1', 'Bo', 1)".into(),
        format!("INSERT INTO conversations (id, contact_id, channel, handler, agent_id, status, priority, escalation_reason, escalation_summary, escalated_at, \
                 created_at, updated_at, version, first_reply_due_at) VALUES ('{conversation}', '0190a8c0-0000-7000-8000-0000000000c1', 'webchat', 'agent', \
                 '{agent}', 'in_progress', 'high', '{{\"kind\":\"human_requested\"}}', 'wants a person', 5, 1, 6, 3, 99)"),
        format!("INSERT INTO messages (id, conversation_id, contact_id, channel, sender, body, internal, attachments, quick_replies, created_at, outbound, attempts) \
                 VALUES ('0190a8c0-0000-7000-8000-0000000000d1', '{conversation}', '0190a8c0-0000-7000-8000-0000000000c1', 'webchat', 'customer', 'help', FALSE, '[]', '[]', 2, FALSE, 0)"),
        format!("INSERT INTO timers (conversation_id, kind, due_at) VALUES ('{conversation}', 'remind_waiting', 1000)"),
        format!("INSERT INTO notifications (agent_id, kind, conversation_id, text, created_at) VALUES ('{agent}', 'assigned', '{conversation}', 'yours', 4)"),
        format!("INSERT INTO audit_log (at, actor_id, action, conversation_id, before_state, after_state) VALUES (4, '{agent}', 'assign', '{conversation}', 'a', 'b')"),
    ] {
        db.execute(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let store = db.open().await;
    let id = switchboard_models::ConversationId::parse(conversation).unwrap();
    let upgraded = store.conversation(id).await.unwrap().expect("the conversation survives");
    assert_eq!((upgraded.status, upgraded.version, upgraded.awaiting.clone()), (switchboard_models::Status::InProgress, 3, None));
    assert_eq!(upgraded.escalation.as_ref().map(|e| e.summary.as_str()), Some("wants a person"));
    assert_eq!(store.conversation_messages(id, 0, 10).await.unwrap().len(), 1);
    let waiting = store.unanswered_messages(10).await.unwrap();
    assert_eq!(waiting.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), ["help"], "the unanswered message still waits (0034)");
    assert_eq!(store.timers_of(id).await.unwrap().len(), 1);
    assert_eq!(store.audit_entries(10).await.unwrap().len(), 1);
    let history = store.escalations_of(id).await.unwrap();
    assert_eq!(history.iter().map(|e| (e.reason.clone(), e.priority)).collect::<Vec<_>>(), [(switchboard_models::EscalationReason::HumanRequested, Some(switchboard_models::Priority::High))]);
    // The new status is allowed, and the references still hold.
    let confirmed = db.execute(&format!("UPDATE conversations SET status = 'confirmed', handler = 'bot', agent_id = NULL WHERE id = '{conversation}'")).await.unwrap();
    assert_eq!(confirmed, 1);
    let orphan = db.execute("INSERT INTO messages (id, conversation_id, contact_id, channel, sender, body, internal, attachments, quick_replies, created_at, outbound, attempts) \
        VALUES ('0190a8c0-0000-7000-8000-0000000000d2', '0190a8c0-0000-7000-8000-00000000dead', '0190a8c0-0000-7000-8000-0000000000c1', 'webchat', 'customer', 'x', FALSE, '[]', '[]', 2, FALSE, 0)").await;
    assert!(orphan.is_err(), "a message of no conversation is still refused");
}

#[tokio::test]
async fn sqlite_a_database_in_use_upgrades_through_the_rebuilds() {
    upgrades_a_database_in_use_through_the_rebuilds(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_database_in_use_upgrades_through_the_rebuilds() {
    upgrades_a_database_in_use_through_the_rebuilds(Backend::Postgres).await;
}

/// An interim build ran 0012 with `rate_buckets.per_second` already in it; the released 0012 has
/// no such column and 0014 adds it. Such a database still opens (its 0012 checksum is taken
/// for the released one) and ends with the same schema.
async fn upgrades_from_the_interim_0012(backend: Backend) {
    let db = TestDatabase::new(backend).await;
    let interim = migrations_before(backend, "0012");
    let released = std::fs::read_to_string(migrations_dir().join(folder(backend)).join("0012_shared_rate_limits.sql")).unwrap();
    let column = "    tokens     DOUBLE PRECISION NOT NULL,\n";
    assert!(released.contains(column));
    let interim_text = released.replace(column, &format!("{column}    per_second DOUBLE PRECISION NOT NULL,\n"));
    std::fs::write(interim.path().join("0012_shared_rate_limits.sql"), interim_text).unwrap();
    migrate_with(&db, interim.path()).await;
    db.execute("INSERT INTO settings (key, value) VALUES ('kept', 'yes')").await.unwrap();

    let store = db.open().await;
    assert_eq!(store.setting_or_insert("kept", "no").await.unwrap(), "yes", "data survives the upgrade");
    let bucket = "INSERT INTO rate_buckets (scope, key, tokens, per_second, touched_at, refused) VALUES ('s', 'k', 1, 0.5, 0, FALSE)";
    assert_eq!(db.execute(bucket).await.unwrap(), 1, "0014 left the buckets as they are everywhere else");
    drop(store);
    db.open().await; // and it opens again: the checksums now are the released ones
}

#[tokio::test]
async fn sqlite_a_database_from_the_interim_0012_upgrades() {
    upgrades_from_the_interim_0012(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_database_from_the_interim_0012_upgrades() {
    upgrades_from_the_interim_0012(Backend::Postgres).await;
}

#[tokio::test]
async fn sqlite_a_database_from_the_first_release_upgrades() {
    upgrades_from_the_first_release(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_a_database_from_the_first_release_upgrades() {
    upgrades_from_the_first_release(Backend::Postgres).await;
}
