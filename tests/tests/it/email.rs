//! Email end to end against a real local mail system (Postfix → Dovecot LMTP → Dovecot IMAP,
//! started by scripts/mail-server.sh): lettre submits customer mail, the server reads it over
//! IMAP and answers over SMTP, and async-imap reads what reached the customer.
//! One test, because the scenarios share the mailboxes.

use mail_parser::{MessageParser, MimeHeaders};
use std::time::Duration;
use switchboard::config::Secret;
use switchboard_channels::email::PROCESSED_FLAG;
use switchboard_core::TicketChange;
use switchboard_core::ports::{ConversationFilter, DocumentFilter};
use switchboard_models::{Channel, DeliveryState, DocumentState, Handler, Message, Sender};
use switchboard_tests::TestServer;
use switchboard_tests::mail::{IMAPS_PORT, PASSWORD, SMTP_PORT, TestMailbox, mail_system_running, send_raw, test_ca_file};

const WAIT: Duration = Duration::from_secs(20);
const SUPPORT: &str = "support@example.test";
const ANN: &str = "customer@example.test";
const BO: &str = "customer2@example.test";
/// Postfix takes mail for it; Dovecot has no such mailbox, so mail to it bounces.
const GONE: &str = "gone@example.test";

async fn start_server() -> TestServer {
    TestServer::start_with(|c| {
        c.email.address = Some(SUPPORT.into());
        c.email.imap_port = IMAPS_PORT;
        c.email.imap_security = "tls".into();
        c.email.imap_ca_file = Some(test_ca_file());
        c.email.imap_username = SUPPORT.into();
        c.email.imap_password = Some(Secret(PASSWORD.into()));
        c.email.poll_seconds = 5;
        c.email.smtp_port = SMTP_PORT;
        c.email.smtp_security = "none".into();
        c.email.notify_agents = true;
        c.server.inbound_attempts = 3;
    })
    .await
}

#[derive(Clone)]
struct Parsed {
    subject: String,
    message_id: String,
    in_reply_to: Vec<String>,
    references: Vec<String>,
    reply_to: String,
    auto_submitted: Option<String>,
    text: String,
    attachments: Vec<(String, Vec<u8>)>,
}

fn parse(raw: &[u8]) -> Parsed {
    let mail = MessageParser::default().parse(raw).expect("MIME");
    let ids = |v: &mail_parser::HeaderValue| match (v.as_text_list(), v.as_text()) {
        (Some(list), _) => list.iter().map(|s| s.to_string()).collect(),
        (None, Some(one)) => vec![one.to_string()],
        _ => Vec::new(),
    };
    Parsed {
        subject: mail.subject().unwrap_or_default().to_string(),
        message_id: mail.message_id().unwrap_or_default().to_string(),
        in_reply_to: ids(mail.in_reply_to()),
        references: ids(mail.references()),
        reply_to: mail.reply_to().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string(),
        auto_submitted: mail.header_raw("Auto-Submitted").map(|v| v.trim().to_string()),
        text: mail.body_text(0).unwrap_or_default().to_string(),
        attachments: mail
            .attachments()
            .map(|a| (a.attachment_name().unwrap_or_default().to_string(), a.contents().to_vec()))
            .collect(),
    }
}

fn mail(from: &str, to: &str, subject: &str, message_id: Option<&str>, headers: &str, body: &str) -> String {
    let id = message_id.map(|id| format!("Message-ID: {id}\n")).unwrap_or_default();
    format!(
        "From: Customer <{from}>\nTo: {to}\nSubject: {subject}\nDate: Sun, 22 Nov 2026 10:00:00 +0000\n{id}{headers}\
         MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"
    )
}

async fn stored_by_id(server: &TestServer, id: &str) -> Message {
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(message) = store.message_by_external_id(Channel::Email, id).await.unwrap() {
            return message;
        }
        assert!(tokio::time::Instant::now() < deadline, "mail {id} was never stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many messages (the customer's and every answer) the customer's conversations hold.
async fn all_messages(server: &TestServer, address: &str) -> usize {
    let store = server.engine().store();
    let contact = store.contact_by_external_id(Channel::Email, address).await.unwrap().expect("contact");
    store.contact_messages(contact.id, 0, 500).await.unwrap().len()
}

async fn customer_messages(server: &TestServer, address: &str) -> Vec<Message> {
    let store = server.engine().store();
    let contact = store.contact_by_external_id(Channel::Email, address).await.unwrap().expect("contact");
    store.contact_messages(contact.id, 0, 500).await.unwrap().into_iter().filter(|m| m.sender == Sender::Customer).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_threads_attachments_loops_and_restarts() {
    assert!(
        mail_system_running().await,
        "the local mail system is not running; ./scripts/test.sh starts it (scripts/mail-server.sh start)"
    );
    let support = TestMailbox::new("support");
    let ann = TestMailbox::new("customer");
    let bo = TestMailbox::new("customer2");
    let agent_inbox = TestMailbox::new("agent");
    for mailbox in [&support, &ann, &bo, &agent_inbox] {
        mailbox.clear().await;
    }
    // The server reads over IMAPS and verifies the certificate: without our CA it is refused.
    let untrusted = switchboard_channels::email::ImapSettings {
        host: "127.0.0.1".into(),
        port: IMAPS_PORT,
        security: switchboard_channels::email::ImapSecurity::Tls,
        ca_file: None,
        username: SUPPORT.into(),
        password: PASSWORD.into(),
        mailbox: "INBOX".into(),
        poll_interval: Duration::from_secs(5),
    };
    let refused = switchboard_channels::email::connect_imap(&untrusted).await.err().expect("an unknown CA is refused");
    assert!(refused.to_string().contains("certificate"), "{refused}");
    let mut server = start_server().await;

    // A new mail gets a bot reply in its thread.
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "Password reset", Some("<m1@customer.example.test>"), "",
        "Hi, I forgot my password.\n\n-- \nAnn Lee\nACME")).await;
    let first = stored_by_id(&server, "<m1@customer.example.test>").await;
    assert_eq!(first.text, "Password reset\n\nHi, I forgot my password.", "signature cut, subject first");
    assert!(first.attachments.iter().any(|a| a.file_name == "original.eml"), "the full original is kept");
    let conversation = first.conversation_id;
    let replies = ann.wait_count(1, WAIT).await;
    let reply = parse(&replies[0]);
    assert_eq!(reply.subject, "Re: Password reset");
    assert_eq!(reply.in_reply_to, ["m1@customer.example.test"]);
    assert!(reply.references.contains(&"m1@customer.example.test".to_string()));
    assert_eq!(reply.reply_to, format!("support+c{}@example.test", conversation.0.simple()));
    assert_eq!(reply.auto_submitted.as_deref(), Some("auto-replied"));
    assert!(reply.text.contains("Forgot password"), "{}", reply.text);
    let ours = format!("<{}>", reply.message_id);
    let imap = server.connection_state("email", |c| c["state"] == "up").await;
    assert!(imap["detail"].as_str().unwrap().starts_with("IMAP session on INBOX"), "{imap}");
    let smtp = server.connection_state("smtp", |c| c["state"] == "up").await;
    assert_eq!(smtp["detail"], "the mail server takes messages", "{smtp}");

    // A reply with In-Reply-To, quoting us, joins the conversation; the quote is cut.
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "Re: Password reset", Some("<m2@customer.example.test>"),
        &format!("In-Reply-To: {ours}\nReferences: <m1@customer.example.test> {ours}\n"),
        "That did not help, my account is locked.\n\nOn Sun, 22 Nov 2026, Support wrote:\n> You can reset your password")).await;
    let second = stored_by_id(&server, "<m2@customer.example.test>").await;
    assert_eq!(second.conversation_id, conversation);
    assert_eq!(second.text, "That did not help, my account is locked.", "a reply's repeated subject is not kept as its words");

    // Only References (a client that drops In-Reply-To): same conversation.
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "Re: Password reset", Some("<m3@customer.example.test>"),
        &format!("References: {ours}\n"), "Any news?")).await;
    assert_eq!(stored_by_id(&server, "<m3@customer.example.test>").await.conversation_id, conversation);

    // Neither header, a new subject, but sent to our Reply-To token: same conversation.
    let token = reply.reply_to.clone();
    send_raw(ANN, &[&token], &mail(ANN, &token, "one more thing", Some("<m4@customer.example.test>"), "", "Also my login email changed.")).await;
    assert_eq!(stored_by_id(&server, "<m4@customer.example.test>").await.conversation_id, conversation);

    // A new mail with a new subject and no references starts a new conversation.
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "Invoice question", Some("<m5@customer.example.test>"), "", "Where is my invoice?")).await;
    let other = stored_by_id(&server, "<m5@customer.example.test>").await;
    assert_ne!(other.conversation_id, conversation, "never threaded by sender or subject alone");

    // HTML-only mail is read as text.
    let html = "From: Bo <customer2@example.test>\nTo: support@example.test\nSubject: Help\nMessage-ID: <h1@bo.example.test>\n\
                MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n<html><body><p>I <b>forgot</b> my password</p></body></html>\n";
    send_raw(BO, &[SUPPORT], html).await;
    let from_html = stored_by_id(&server, "<h1@bo.example.test>").await;
    assert!(from_html.text.contains("I forgot my password") && !from_html.text.contains('<'), "{}", from_html.text);

    // A PDF from the customer is stored; an agent's file goes back in the thread.
    let pdf = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer\n%%EOF\n";
    let with_file = format!(
        "From: Bo <customer2@example.test>\nTo: support@example.test\nSubject: Refund form\nMessage-ID: <h2@bo.example.test>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XYZ\"\n\n--XYZ\nContent-Type: text/plain\n\nForm attached.\n\
         --XYZ\nContent-Type: application/pdf; name=\"form.pdf\"\nContent-Disposition: attachment; filename=\"form.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--XYZ--\n",
        base64(pdf)
    );
    send_raw(BO, &[SUPPORT], &with_file).await;
    let filed = stored_by_id(&server, "<h2@bo.example.test>").await;
    let form = filed.attachments.iter().find(|a| a.file_name == "form.pdf").expect("form.pdf stored");
    assert_eq!(form.content_type, "application/pdf");
    assert_eq!(server.engine().attachment_bytes(form).await.unwrap(), pdf);
    let bo_before = bo.all().await.len();
    let agent = server.add_agent("Lee", "agent@example.test").await;
    // An admin (away, so given nothing automatically) assigns it: Lee is told, by mail too.
    let root = add_admin(&server).await;
    server.engine().change_ticket(filed.conversation_id, root, TicketChange::Assign(agent), None).await.unwrap();
    let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR fake image";
    let picture = server.engine().accept_upload("steps.png", png).await.unwrap();
    server.engine().agent_reply(filed.conversation_id, agent, "Thanks, see the steps attached.".into(), vec![picture]).await.unwrap();
    // Wait for the agent's mail itself, one arrival at a time: the bot's earlier answers may
    // still be on their way.
    let mut expected = bo_before + 1;
    let agent_mail = loop {
        let mails = bo.wait_count(expected, WAIT).await;
        if let Some(found) = mails.iter().map(|m| parse(m)).find(|m| m.text.contains("see the steps")) {
            break found;
        }
        expected = mails.len() + 1;
    };
    assert_eq!(agent_mail.attachments, vec![("steps.png".to_string(), png.to_vec())]);
    assert_eq!(agent_mail.in_reply_to, ["h2@bo.example.test"]);
    assert_eq!(agent_mail.auto_submitted, None, "a person wrote this one");
    let handled = server.engine().store().conversation(filed.conversation_id).await.unwrap().unwrap();
    assert_eq!(handled.handler, Handler::Agent(agent));
    let notices = agent_inbox.wait_count(1, WAIT).await;
    let notice = parse(&notices[0]);
    assert!(notice.subject.starts_with("A conversation was assigned to you"), "{}", notice.subject);
    assert!(notice.text.starts_with("Hello Lee,") && notice.text.contains(&format!("Conversation {}", filed.conversation_id)), "{}", notice.text);
    assert_eq!(notice.auto_submitted.as_deref(), Some("auto-generated"));
    nothing_waits_to_be_mailed(&server).await;

    // The form waits for review as a document; Lee approves it as an invoice and Bo is told by mail.
    let filter = DocumentFilter { conversation: Some(filed.conversation_id), limit: 5, ..DocumentFilter::default() };
    let deadline = tokio::time::Instant::now() + WAIT;
    let documents = loop {
        let listed = server.engine().documents().documents(&filter).await.unwrap();
        if !listed.is_empty() {
            break listed;
        }
        assert!(tokio::time::Instant::now() < deadline, "the form never waited for review");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        documents.iter().map(|d| (d.document.file.file_name.as_str(), d.document.state)).collect::<Vec<_>>(),
        [("form.pdf", DocumentState::Pending)],
        "the mail's own original is no document"
    );
    server.engine().decide_document(documents[0].document.id, agent, true, "invoice", None).await.unwrap();
    mail_saying(&bo, "Your invoice was approved.").await;

    // Lee resolves: Bo is asked by mail, answers yes, rates with a digit and comments, each a
    // reply in the thread.
    server.engine().resolve(filed.conversation_id, agent).await.unwrap();
    let asked = mail_saying(&bo, "Lee marked this as solved").await;
    assert!(asked.text.contains("Reply with “Yes, it's fixed” or “No, not yet”."), "the choices are written out: {}", asked.text);
    let answer = |n: u32, to: &Parsed, body: &str| {
        mail(BO, SUPPORT, "Re: Refund form", Some(&format!("<r{n}@bo.example.test>")), &format!("In-Reply-To: <{}>\n", to.message_id), body)
    };
    send_raw(BO, &[SUPPORT], &answer(1, &asked, "Yes\n\nOn Sun, 22 Nov 2026, Support wrote:\n> Lee marked this as solved.")).await;
    let rating = mail_saying(&bo, "How would you rate the help you got from Lee").await;
    assert!(rating.text.contains("Reply with “1” or “2” or “3” or “4” or “5”."), "{}", rating.text);
    send_raw(BO, &[SUPPORT], &answer(2, &rating, "5")).await;
    let invite = mail_saying(&bo, "Anything you'd like to tell us").await;
    send_raw(BO, &[SUPPORT], &answer(3, &invite, "Lee sent exactly the steps I needed.")).await;
    mail_saying(&bo, "Thank you for your feedback").await;
    let ratings = server.engine().ratings().ratings_of(filed.conversation_id).await.unwrap();
    assert_eq!(
        ratings.iter().map(|r| (r.score, r.comment.as_deref(), r.agent_id)).collect::<Vec<_>>(),
        [(5, Some("Lee sent exactly the steps I needed."), Some(agent))],
        "the mail's subject is no part of the answer"
    );

    // A web visitor who left an address also gets the closing notice by mail, saying where to answer.
    let (_, token) = server.new_visitor().await;
    let mut widget = server.connect(&token).await;
    widget.say("w1", "hello").await;
    let ack = widget.next_of("ack").await;
    let web = switchboard_models::ConversationId::parse(ack["conversation"]["id"].as_str().unwrap()).unwrap();
    let visitor = server.engine().store().conversation(web).await.unwrap().unwrap().contact_id;
    let left_address = switchboard_core::ports::StepWrite { contact_email: Some((visitor, ANN.into())), ..Default::default() };
    server.engine().store().commit(left_address).await.unwrap();
    server.engine().change_ticket(web, agent, TicketChange::Status(switchboard_models::Status::Closed), None).await.unwrap();
    let copy = mail_saying(&ann, "This conversation is closed.").await;
    assert!(copy.text.contains("on the chat on our website. Please answer there."), "{}", copy.text);
    assert_eq!(copy.auto_submitted.as_deref(), Some("auto-generated"));
    nothing_waits_to_be_mailed(&server).await;

    // Robots are not answered: an out-of-office reply and a bounce.
    let ann_before = ann.all().await.len();
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "Out of office", Some("<ooo@customer.example.test>"),
        "Auto-Submitted: auto-replied\n", "I am away until Monday.")).await;
    send_raw("MAILER-DAEMON@example.test", &[SUPPORT], &mail("MAILER-DAEMON@example.test", SUPPORT, "Undelivered Mail", Some("<bounce@example.test>"), "", "Delivery failed.")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while support.count_with(PROCESSED_FLAG).await < support.all().await.len() {
        assert!(tokio::time::Instant::now() < deadline, "the robots' mail was never marked processed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = server.engine().store();
    assert!(store.message_by_external_id(Channel::Email, "<ooo@customer.example.test>").await.unwrap().is_none());
    assert!(store.message_by_external_id(Channel::Email, "<bounce@example.test>").await.unwrap().is_none());
    // Not stored, so never answered: a reply is only ever sent from a committed step.
    assert_eq!(ann.all().await.len(), ann_before, "no reply to robots");

    // Mail that arrives while the server is down is read after it starts, once.
    server.running.take().unwrap().shutdown().await.unwrap();
    let in_mailbox = support.all().await.len();
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "While you were down", Some("<d1@customer.example.test>"), "", "Hello there")).await;
    send_raw(ANN, &[SUPPORT], &mail(ANN, SUPPORT, "While you were down 2", Some("<d2@customer.example.test>"), "", "Hello again")).await;
    support.wait_count(in_mailbox + 2, WAIT).await;
    server.restart().await;
    stored_by_id(&server, "<d1@customer.example.test>").await;
    stored_by_id(&server, "<d2@customer.example.test>").await;
    let ann_mails = ann.wait_count(ann_before + 2, WAIT).await.len();

    // Committed but never flagged (a crash in between): read again, stored and answered once.
    let stored_before = customer_messages(&server, ANN).await.len();
    let all_before = all_messages(&server, ANN).await;
    support.remove_keyword(PROCESSED_FLAG).await;
    server.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while support.count_with(PROCESSED_FLAG).await < support.all().await.len() {
        assert!(tokio::time::Instant::now() < deadline, "re-read mail was never flagged again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Flagged only after its step committed: every answer the re-read caused is in the store.
    assert_eq!(customer_messages(&server, ANN).await.len(), stored_before, "nothing stored twice");
    assert_eq!(all_messages(&server, ANN).await, all_before, "nothing answered twice");
    assert_eq!(ann.all().await.len(), ann_mails, "nothing answered twice");

    // A reply to a mailbox that does not exist comes back from Postfix as a delivery report: the
    // reply is marked failed with the reason, the customer unreachable, and no conversation opens.
    send_raw(GONE, &[SUPPORT], &mail(GONE, SUPPORT, "Hello", Some("<g1@customer.example.test>"), "", "Hello")).await;
    let asked = stored_by_id(&server, "<g1@customer.example.test>").await;
    let store = server.engine().store();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let bounced = loop {
        let replies = store.conversation_messages(asked.conversation_id, 0, 10).await.unwrap();
        let failed = replies.into_iter().find(|m| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Failed));
        if let Some(failed) = failed {
            break failed;
        }
        assert!(tokio::time::Instant::now() < deadline, "the bounce never marked the reply failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delivery = bounced.delivery.unwrap();
    assert_eq!(delivery.error.as_deref(), Some("The mailbox does not exist (5.1.1)."));
    assert!(delivery.sent_at.is_some(), "Postfix took it first; the report came after");
    let gone = store.contact_by_external_id(Channel::Email, GONE).await.unwrap().unwrap();
    assert!(gone.unreachable_since.is_some(), "a mailbox that does not exist makes the customer unreachable");
    let daemons = store.list_conversations(&ConversationFilter { limit: 200, ..Default::default() }).await.unwrap();
    assert!(
        daemons.iter().all(|c| !c.customer.to_lowercase().contains("mailer-daemon")),
        "the bounce opened no conversation"
    );

    // The mail server is away when a colleague mentions Lee: the notice waits in the store
    // across a restart and is mailed once the server can reach it.
    let away_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    server.config.email.smtp_port = away_port;
    server.restart().await;
    server.engine().add_note(filed.conversation_id, root, "@Lee please check the form".into()).await.unwrap();
    assert_eq!(server.engine().store().notices_to_mail(10).await.unwrap().len(), 1, "waiting for the mail server");
    server.config.email.smtp_port = SMTP_PORT;
    server.restart().await;
    // (Other notices may be mailed around it: the mention is found by its words.)
    let mentioned = mail_saying(&agent_inbox, "please check the form").await;
    assert!(mentioned.subject.starts_with("Root mentioned you"), "{}", mentioned.subject);
    nothing_waits_to_be_mailed(&server).await;

    // A mail that cannot be stored (the attachments folder is broken: every mail keeps its
    // original) is set aside after server.inbound_attempts tries and flagged, so the mailbox
    // goes on; an admin replays it once the folder is back.
    let store = server.engine().store().clone();
    let admin = switchboard_admin_web::accounts::create_account(store.as_ref(), "root2@example.test", "Root Two", switchboard_models::Role::Admin, "a long enough password", None)
        .await
        .unwrap();
    let folder = server.config.attachments.dir.clone();
    let kept_aside = folder.with_extension("aside");
    std::fs::rename(&folder, &kept_aside).unwrap();
    std::fs::write(&folder, b"not a folder").unwrap();
    let with_invoice = format!(
        "From: Customer <customer@example.test>\nTo: support@example.test\nSubject: Broken disk\nMessage-ID: <broken-disk@customer.example.test>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XYZ\"\n\n--XYZ\nContent-Type: text/plain\n\nPlease help, invoice attached.\n\
         --XYZ\nContent-Type: application/pdf; name=\"invoice.pdf\"\nContent-Disposition: attachment; filename=\"invoice.pdf\"\n\
         Content-Transfer-Encoding: base64\n\n{}\n--XYZ--\n",
        base64(pdf)
    );
    send_raw(ANN, &[SUPPORT], &with_invoice).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let letter = loop {
        if let Some(letter) = server.engine().dead_letters(false, 10, &admin).await.unwrap().into_iter().next() {
            break letter;
        }
        assert!(tokio::time::Instant::now() < deadline, "the mail was never set aside");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((letter.letter.channel, letter.letter.external_id.as_str(), letter.letter.attempts), (Channel::Email, "<broken-disk@customer.example.test>", 3));
    assert!(String::from_utf8_lossy(&letter.letter.payload).contains("Subject: Broken disk"), "the raw mail");
    let deadline = tokio::time::Instant::now() + WAIT;
    while support.count_with(PROCESSED_FLAG).await < support.all().await.len() {
        assert!(tokio::time::Instant::now() < deadline, "the set-aside mail was never flagged");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let early = store.message_by_external_id(Channel::Email, "<broken-disk@customer.example.test>").await.unwrap();
    assert!(early.is_none(), "{early:?} {letter:?}");
    std::fs::remove_file(&folder).unwrap();
    std::fs::rename(&kept_aside, &folder).unwrap();
    let panel = switchboard_tests::panel::PanelClient::sign_in(&server.url(""), "root2@example.test", "a long enough password").await;
    let replayed = panel.post(&format!("/panel/admin/system/dead-letters/{}", letter.id), &[("action", "replay")]).await;
    assert_eq!(replayed.status, reqwest::StatusCode::SEE_OTHER, "{}", replayed.body);
    let stored = stored_by_id(&server, "<broken-disk@customer.example.test>").await;
    assert!(stored.text.contains("Please help"), "{}", stored.text);
    assert!(stored.attachments.iter().any(|a| a.file_name == "invoice.pdf"), "with its file");
}

/// The next mail in `mailbox` whose text has `words`, waiting for it to arrive.
async fn mail_saying(mailbox: &TestMailbox, words: &str) -> Parsed {
    parse(&mailbox.wait_for_body(words, WAIT).await)
}

/// The mailer marks a notice (or a customer's copy) mailed just after the mail server took it:
/// wait for the mark.
async fn nothing_waits_to_be_mailed(server: &TestServer) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let store = server.engine().store();
    while !store.notices_to_mail(10).await.unwrap().is_empty() || !store.customer_mails_to_send(10).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "a mailed notice still waits to be mailed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An admin account, away.
async fn add_admin(server: &TestServer) -> switchboard_models::AgentId {
    let root = server.add_agent("Root", GONE).await;
    let mut admin = server.engine().store().agent(root).await.unwrap().unwrap();
    admin.role = switchboard_models::Role::Admin;
    admin.presence = switchboard_models::Presence::Away;
    server.engine().store().save_agent(&admin).await.unwrap();
    root
}

fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
