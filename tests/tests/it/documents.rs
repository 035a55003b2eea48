//! Documents for review end to end: customers' files arrive as pending documents, reviewers
//! approve or reject them in the panel (a real browser) or the API, and each customer hears the
//! decision on their own channel.

use serde_json::{Value, json};
use std::time::Duration;
use switchboard_admin_web::accounts::create_account;
use switchboard_core::ports::DocumentFilter;
use switchboard_models::{AuditAction, Channel, DocumentState, Role};
use switchboard_tests::TestServer;
use switchboard_tests::samples::{PDF, PNG};
use switchboard_tests::fake_telegram::{FakeTelegram, TOKEN, private_document, private_photo};

const WAIT: Duration = Duration::from_secs(15);
const PASSWORD: &str = "documents test password";

async fn telegram_server(telegram: &FakeTelegram) -> TestServer {
    telegram_server_with(telegram, |_| {}).await
}

async fn telegram_server_with(telegram: &FakeTelegram, adjust: impl FnOnce(&mut switchboard::config::Config)) -> TestServer {
    let url = telegram.url();
    TestServer::start_with(move |c| {
        c.telegram.token = Some(switchboard::config::Secret(TOKEN.into()));
        c.telegram.api_url = Some(url);
        adjust(c);
    })
    .await
}

/// Waits until `count` documents are pending; returns them, the longest waiting first.
async fn pending(server: &TestServer, count: usize) -> Vec<switchboard_core::ports::DocumentSummary> {
    let filter = DocumentFilter { state: Some(DocumentState::Pending), limit: 50, ..DocumentFilter::default() };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = server.engine().documents().documents(&filter).await.unwrap();
        if listed.len() >= count {
            return listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {count} documents pending", listed.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the Telegram chat to be told something containing `words`.
async fn told(telegram: &FakeTelegram, chat: i64, words: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let sent = telegram.sent();
        if let Some(found) = sent.iter().filter(|s| s.chat_id == chat).filter_map(|s| s.text.clone()).find(|t| t.contains(words)) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "chat {chat} was not told “{words}”: {sent:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_photo_and_a_pdf_wait_for_review_and_each_customer_hears_the_decision_made_in_a_real_browser() {
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram).await;
    let store = server.engine().store();
    create_account(store.as_ref(), "robin@example.com", "Robin", Role::Agent, PASSWORD, None).await.unwrap();
    telegram.add_file("photo-1", PNG.to_vec());
    telegram.add_file("doc-1", PDF.to_vec());
    telegram.push_message(private_photo(701, 1, "photo-1", PNG.len(), Some("here is my proof of payment")));
    let listed = pending(&server, 1).await;
    telegram.push_message(private_document(702, 1, "doc-1", "invoice-2026-11.pdf", PDF.len()));
    let listed = [listed, pending(&server, 2).await.split_off(1)].concat();
    assert_eq!(listed.iter().map(|d| (d.document.file.content_type.as_str(), d.document.kind.as_str())).collect::<Vec<_>>(), [("image/png", "other"), ("application/pdf", "other")]);
    assert!(listed.iter().all(|d| d.document.channel == Channel::Telegram && d.document.reviewer_id.is_none()));

    // In the browser: the photo is approved as a proof of payment, the PDF rejected as an invoice.
    let args = vec![server.url(""), crate::browser::artifacts(), "robin@example.com".into(), PASSWORD.into()];
    crate::browser::run_script("documents.mjs", args, "browser documents test passed").await;

    assert_eq!(told(&telegram, 701, "approved").await, "Your proof of payment was approved.");
    assert_eq!(told(&telegram, 702, "rejected").await, "Your invoice was rejected: the amount does not match. Please send a new one here.");
    let documents = server.engine().documents();
    let photo = documents.document(listed[0].document.id).await.unwrap().unwrap();
    let pdf = documents.document(listed[1].document.id).await.unwrap().unwrap();
    assert_eq!((photo.state, photo.kind.as_str(), photo.note.as_deref()), (DocumentState::Approved, "proof_of_payment", None));
    assert_eq!((pdf.state, pdf.kind.as_str(), pdf.note.as_deref()), (DocumentState::Rejected, "invoice", Some("the amount does not match")));
    let day_start = chrono::Utc::now() - chrono::Duration::hours(1);
    let counts = documents.document_counts(day_start).await.unwrap();
    assert_eq!((counts.pending, counts.approved_today, counts.rejected_today), (0, 1, 1));
    let audited = store.audit_entries(50).await.unwrap();
    let reviews: Vec<_> = audited.iter().filter(|e| e.action == AuditAction::ReviewDocument).collect();
    assert_eq!(reviews.len(), 2, "each decision is audited");
    assert!(reviews.iter().any(|e| e.after.as_deref().unwrap_or("").contains("rejected as invoice (the amount does not match)")), "{reviews:?}");
}

#[tokio::test]
async fn retention_removes_decided_documents_files_and_keeps_their_record() {
    use switchboard_core::ports::{BlobStore, StoreError};
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram).await;
    let store = server.engine().store();
    let ann = create_account(store.as_ref(), "ann@example.com", "Ann", Role::Admin, PASSWORD, None).await.unwrap();
    telegram.add_file("photo-5", PNG.to_vec());
    telegram.push_message(private_photo(707, 1, "photo-5", PNG.len(), None));
    telegram.add_file("photo-6", PNG.to_vec());
    telegram.push_message(private_photo(708, 1, "photo-6", PNG.len(), None));
    let waiting = pending(&server, 2).await;
    let (decided, undecided) = (waiting[0].document.clone(), waiting[1].document.clone());
    server.engine().decide_document(decided.id, ann.id, true, "proof_of_payment", None).await.unwrap();

    let blobs = switchboard_store::FileBlobs::open(&server.config.attachments.dir).unwrap();
    let settings = switchboard::config::RetentionJobConfig { document_files_days: 30, ..Default::default() };
    let later = chrono::Utc::now() + chrono::Duration::days(31);
    let retain = |dry_run: bool| switchboard::jobs::retain(store.as_ref(), &blobs, &settings, later, dry_run);
    let counted = retain(true).await.unwrap();
    assert!(counted.ends_with(", 1 document files"), "{counted}");
    assert_eq!(blobs.get(&decided.file.key).await.unwrap(), PNG, "a dry run removes nothing");
    let done = retain(false).await.unwrap();
    assert!(done.ends_with(", 1 document files"), "{done}");
    assert!(matches!(blobs.get(&decided.file.key).await, Err(StoreError::Missing(_))), "the decided document's file is gone");
    assert_eq!(blobs.get(&undecided.file.key).await.unwrap(), PNG, "a pending document's file waits for its decision");
    let kept = server.engine().documents().document(decided.id).await.unwrap().unwrap();
    assert_eq!((kept.state, kept.purged_at.is_some()), (DocumentState::Approved, true), "the record stays");
    assert!(retain(false).await.unwrap().ends_with(", 0 document files"), "nothing twice");

    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;
    let gone = panel.get(&format!("/panel/conversations/{}/attachments/{}", decided.conversation_id, decided.file.key)).await;
    assert_eq!(gone.status.as_u16(), 410, "{}", gone.body);
    assert!(gone.body.contains("no longer kept: retention removed it"), "{}", gone.body);
    let page = panel.get("/panel/documents?state=approved").await;
    assert!(page.body.contains("File removed by retention"), "the card says why there is no preview");
}

#[tokio::test]
async fn two_reviewers_deciding_at_once_one_wins_and_the_api_refuses_what_is_wrong() {
    let telegram = FakeTelegram::start().await;
    let server = telegram_server(&telegram).await;
    let store = server.engine().store();
    let ann = create_account(store.as_ref(), "ann@example.com", "Ann", Role::Admin, PASSWORD, None).await.unwrap();
    let bo = create_account(store.as_ref(), "bo@example.com", "Bo", Role::Admin, PASSWORD, None).await.unwrap();
    telegram.add_file("photo-2", PNG.to_vec());
    telegram.push_message(private_photo(703, 1, "photo-2", PNG.len(), None));
    let id = pending(&server, 1).await[0].document.id;
    let engine = server.engine();
    let (by_ann, by_bo) = tokio::join!(
        engine.decide_document(id, ann.id, true, "proof_of_payment", None),
        engine.decide_document(id, bo.id, false, "other", Some("too blurry to read".into())),
    );
    let (winner, loser) = match (&by_ann, &by_bo) {
        (Ok(_), Err(lost)) => ("Ann", lost.to_string()),
        (Err(lost), Ok(_)) => ("Bo", lost.to_string()),
        other => panic!("exactly one decision wins: {other:?}"),
    };
    assert!(loser.contains(&format!("by {winner} already")), "{loser}");
    let decided = engine.documents().document(id).await.unwrap().unwrap();
    assert_eq!(decided.reviewer_id, Some(if winner == "Ann" { ann.id } else { bo.id }));
    let heard = told(&telegram, 703, "Your ").await;
    assert!(heard.contains(if winner == "Ann" { "approved" } else { "rejected: too blurry to read" }), "{heard}");
    // A notice is stored with its decision, so both decisions returned means all are stored.
    let stored = engine.store().conversation_messages(decided.conversation_id, 0, 50).await.unwrap();
    let notices = stored.iter().filter(|m| m.text.starts_with("Your ")).count();
    assert_eq!(notices, 1, "the customer hears one decision: {stored:?}");

    // An agent decides only in conversations that are theirs or nobody's.
    let cy = create_account(store.as_ref(), "cy@example.com", "Cy", Role::Agent, PASSWORD, None).await.unwrap();
    telegram.add_file("photo-4", PNG.to_vec());
    telegram.push_message(private_photo(706, 1, "photo-4", PNG.len(), None));
    let bos = pending(&server, 1).await[0].document.clone();
    engine.change_ticket(bos.conversation_id, bo.id, switchboard_core::TicketChange::Take, None).await.unwrap();
    let refused = engine.decide_document(bos.id, cy.id, true, "proof_of_payment", None).await.unwrap_err();
    assert!(refused.to_string().contains("assigned to Bo"), "{refused}");
    assert_eq!(engine.documents().document(bos.id).await.unwrap().unwrap().state, DocumentState::Pending, "nothing decided");
    engine.decide_document(bos.id, bo.id, true, "proof_of_payment", None).await.unwrap();

    // The API lists and decides with the same rules.
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "ann@example.com", PASSWORD).await;
    let token = panel.new_api_token("review").await;
    let http = reqwest::Client::new();
    let listed: Value = http.get(server.url("/api/documents?state=pending")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["documents"], json!([]));
    let all: Value = http.get(server.url("/api/documents")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let listed = all["documents"].as_array().unwrap().iter().find(|d| d["id"] == json!(id.to_string())).expect("the decided document is listed");
    assert_eq!(listed["customer"], "Ann Lee", "with the customer's name");
    let bad = http.get(server.url("/api/documents?state=lost")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let decide = |body: Value| http.post(server.url(&format!("/api/documents/{id}/decision"))).bearer_auth(&token).json(&body).send();
    let again = decide(json!({"decision": "approve"})).await.unwrap();
    assert_eq!(again.status().as_u16(), 409, "decided already");

    telegram.add_file("photo-3", PNG.to_vec());
    telegram.push_message(private_photo(703, 2, "photo-3", PNG.len(), None));
    let next = pending(&server, 1).await[0].document.id;
    let decide = |body: Value| http.post(server.url(&format!("/api/documents/{next}/decision"))).bearer_auth(&token).json(&body).send();
    for (body, status, says) in [
        (json!({"decision": "reject"}), 422, "needs a reason"),
        (json!({"decision": "approve", "type": "passport_scan"}), 422, "not a document type"),
        (json!({"decision": "maybe"}), 422, "approve or reject"),
        (json!({"decision": "approve", "stamp": true}), 400, "unknown field"),
    ] {
        let response = decide(body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(error["error"]["message"].as_str().unwrap().contains(says), "{body}: {error}");
    }
    let approved: Value = decide(json!({"decision": "approve", "type": "id", "note": "matches the account"})).await.unwrap().json().await.unwrap();
    assert_eq!((approved["state"].as_str(), approved["type"].as_str()), (Some("approved"), Some("id")));
    assert_eq!(told(&telegram, 703, "Your ID was approved.").await, "Your ID was approved.");
}

#[tokio::test]
async fn the_bot_asks_for_a_proof_of_payment_takes_the_file_without_a_handoff_and_resolves_once_approved() {
    use switchboard_tests::fake_telegram::private_text;
    let telegram = FakeTelegram::start().await;
    let server = telegram_server_with(&telegram, |c| c.documents.resolve_when_approved = true).await;
    telegram.push_message(private_text(704, 1, "how do I send my proof of payment?"));
    told(&telegram, 704, "Please send your proof of payment here, as a photo or a PDF.").await;
    telegram.push_message(private_text(704, 2, "one moment please"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while telegram.sent().iter().filter(|s| s.chat_id == 704).count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the bot answers the second message");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    telegram.add_file("slip-1", PDF.to_vec());
    telegram.push_message(private_document(704, 3, "slip-1", "transfer.pdf", PDF.len()));
    let received = told(&telegram, 704, "we received your").await;
    assert_eq!(received, "Thanks, we received your proof of payment. The team will review it and tell you here.");
    let document = pending(&server, 1).await.remove(0).document;
    assert_eq!((document.kind.as_str(), document.file.file_name.as_str()), ("proof_of_payment", "transfer.pdf"));
    let conversation = server.engine().store().conversation(document.conversation_id).await.unwrap().unwrap();
    assert_eq!((conversation.handler, conversation.escalation.is_none(), conversation.awaiting), (switchboard_models::Handler::Bot, true, None), "no handoff: the review is the next step");

    let ann = create_account(server.engine().store().as_ref(), "ann@example.com", "Ann", Role::Agent, PASSWORD, None).await.unwrap();
    server.engine().decide_document(document.id, ann.id, true, "proof_of_payment", None).await.unwrap();
    told(&telegram, 704, "Your proof of payment was approved.").await;
    let resolved = server.engine().store().conversation(document.conversation_id).await.unwrap().unwrap();
    assert_eq!(resolved.status, switchboard_models::Status::Resolved, "every document in it is approved");
}
