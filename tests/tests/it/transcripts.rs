//! `step` as transcripts: a conversation in, the conversation the bot had out.

use chrono::{TimeZone, Utc};
use expect_test::{Expect, expect};
use switchboard_core::{Feedback, Input, Policy, ReplyBody, step};
use switchboard_models::{
    Awaiting, ClassificationSource, AgentId, Category, Channel, Classification, ContactId, Conversation, IntentName, Urgency,
};

/// One line of a script: what the customer says and how it is classified, or an agent action.
enum Line {
    Customer { text: &'static str, intent: &'static str, category: Category, confidence: f32, answer: Option<&'static str> },
    Tone { text: &'static str, sentiment: f32, urgency: Urgency },
    AlwaysHuman { text: &'static str, intent: &'static str, category: Category },
    AgentJoins(&'static str),
    AgentReplies,
    Resolve,
    Close,
    HandBack,
}
use Line::*;

fn says(text: &'static str, intent: &'static str, confidence: f32, answer: Option<&'static str>) -> Line {
    Customer { text, intent, category: Category::GeneralInquiry, confidence, answer }
}

fn classification(intent: &str, category: Category, confidence: f32, answer: Option<&str>) -> Classification {
    Classification {
        intent: IntentName::parse(intent).unwrap(),
        category,
        confidence,
        alternatives: Vec::new(),
        sentiment: 0.0,
        urgency: Urgency::None,
        language: Some("en".into()),
        answer: answer.map(String::from),
        always_escalate: false,
        collect_document: None,
        source: ClassificationSource::Model,
        judgement: None,
        embedding: None,
    }
}

/// Runs the script through `step` and renders what happened, one block per line.
fn run(script: Vec<Line>) -> String {
    let policy = Policy::default();
    let agent = AgentId::parse("00000000-0000-7000-8000-000000000001").unwrap();
    let start = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
    let mut conversation = Conversation::new(ContactId::new(), Channel::WebChat, start);
    let mut out = String::new();
    for (minute, line) in script.into_iter().enumerate() {
        let now = start + chrono::Duration::minutes(minute as i64);
        let (shown, c) = match &line {
            Customer { text, intent, category, confidence, answer } => {
                (format!("customer: {text}"), Some(classification(intent, *category, *confidence, *answer)))
            }
            Tone { text, sentiment, urgency } => {
                let mut c = classification("technical_problem", Category::TechnicalSupport, 0.9, Some("Try restarting."));
                c.sentiment = *sentiment;
                c.urgency = *urgency;
                (format!("customer: {text}"), Some(c))
            }
            AlwaysHuman { text, intent, category } => {
                let mut c = classification(intent, *category, 0.9, None);
                c.always_escalate = true;
                (format!("customer: {text}"), Some(c))
            }
            AgentJoins(name) => (format!("agent {name} joins"), None),
            AgentReplies => ("agent replies".to_string(), None),
            Resolve => ("agent resolves".to_string(), None),
            HandBack => ("agent hands back to the bot".to_string(), None),
            Close => ("agent closes".to_string(), None),
        };
        let text = shown.split_once(": ").map(|(_, t)| t).unwrap_or("");
        let input = match (&line, &c) {
            (Customer { .. } | Tone { .. } | AlwaysHuman { .. }, Some(c)) => Input::CustomerMessage { text, classification: c, has_attachments: false, resolver_available: false },
            (AgentJoins(name), _) => Input::AgentJoined { agent, agent_name: name, given: false },
            (AgentReplies, _) => Input::AgentReplied { agent },
            (Resolve, _) => Input::Resolved { agent, agent_name: "Dana" },
            (HandBack, _) => Input::HandedBackToBot,
            (Close, _) => Input::StatusSet(switchboard_models::Status::Closed),
            _ => unreachable!(),
        };
        let decision = step(&conversation, &input, &policy, now);
        out.push_str(&shown);
        out.push('\n');
        for reply in &decision.replies {
            let body = match &reply.body {
                ReplyBody::Text(text) => text.clone(),
                ReplyBody::HandoffNotice => "<handoff notice>".to_string(),
                ReplyBody::WaitingNotice => "<waiting notice>".to_string(),
            };
            out.push_str(&format!("  {}: {body}", reply.sender));
            if !reply.quick_replies.is_empty() {
                out.push_str(&format!(" [{}]", reply.quick_replies.join(" | ")));
            }
            out.push('\n');
        }
        if let Some(reason) = &decision.escalated {
            out.push_str(&format!("  escalated: {}\n", reason.describe()));
        }
        match &decision.feedback {
            Some(Feedback::Rated { score, .. }) => out.push_str(&format!("  rated {score}\n")),
            Some(Feedback::Commented { text, .. }) => out.push_str(&format!("  commented: {text}\n")),
            None => {}
        }
        let next = &decision.conversation;
        let handler = match next.handler {
            switchboard_models::Handler::Agent(_) => "agent".to_string(),
            other => format!("{other:?}").to_lowercase(),
        };
        let awaiting = match &next.awaiting {
            Some(Awaiting::Confirmation { .. }) => ", awaiting confirmation",
            Some(Awaiting::Rating { .. }) => ", awaiting rating",
            Some(Awaiting::Comment { .. }) => ", awaiting comment",
            Some(Awaiting::Document { .. }) => ", awaiting a document",
            None => "",
        };
        out.push_str(&format!(
            "  = handler {handler}, status {}, streak {}{}{}{awaiting}\n",
            next.status,
            next.low_confidence_streak,
            next.priority.map(|p| format!(", priority {p}")).unwrap_or_default(),
            next.category.map(|c| format!(", category {c}")).unwrap_or_default(),
        ));
        conversation = decision.conversation;
    }
    out
}

fn check(script: Vec<Line>, expected: Expect) {
    expected.assert_eq(&run(script));
}

#[test]
fn greeting_then_explicit_handoff_then_bot_silence() {
    check(
        vec![
            says("hello", "greeting", 0.92, Some("Hi! How can I help?")),
            says("I want to talk to a person", "human_request", 0.95, None),
            says("hello?", "greeting", 0.9, Some("Hi! How can I help?")),
        ],
        expect![[r#"
            customer: hello
              bot: Hi! How can I help?
              = handler bot, status open, streak 0
            customer: I want to talk to a person
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            customer: hello?
              = handler queue, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn low_confidence_asks_once_then_escalates() {
    check(
        vec![
            says("blorp the flux", "out_of_scope", 0.1, None),
            says("you know, the flux thing", "greeting", 0.3, Some("Hi!")),
        ],
        expect![[r#"
            customer: blorp the flux
              bot: Sorry, I'm not sure I understood. Could you put it another way, or pick a topic below? [Billing | Technical problem | My account | Talk to a person]
              = handler bot, status open, streak 1
            customer: you know, the flux thing
              bot: <handoff notice>
              escalated: The bot did not understand the customer 2 times in a row.
              = handler queue, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn an_understood_message_resets_the_low_confidence_streak() {
    check(
        vec![
            says("blorp", "out_of_scope", 0.1, None),
            says("hello", "greeting", 0.9, Some("Hi!")),
            says("blorp again", "out_of_scope", 0.1, None),
        ],
        expect![[r#"
            customer: blorp
              bot: Sorry, I'm not sure I understood. Could you put it another way, or pick a topic below? [Billing | Technical problem | My account | Talk to a person]
              = handler bot, status open, streak 1
            customer: hello
              bot: Hi!
              = handler bot, status open, streak 0
            customer: blorp again
              bot: Sorry, I'm not sure I understood. Could you put it another way, or pick a topic below? [Billing | Technical problem | My account | Talk to a person]
              = handler bot, status open, streak 1
        "#]],
    );
}

#[test]
fn anger_urgency_and_always_human_intents_escalate_with_priority() {
    check(
        vec![
            Tone { text: "this is useless, I hate it", sentiment: -0.8, urgency: Urgency::None },
        ],
        expect![[r#"
            customer: this is useless, I hate it
              bot: <handoff notice>
              escalated: The customer sounds upset (sentiment -0.80).
              = handler queue, status open, streak 0, priority high, category technical_support
        "#]],
    );
    check(
        vec![Tone { text: "my account was hacked", sentiment: -0.2, urgency: Urgency::Critical }],
        expect![[r#"
            customer: my account was hacked
              bot: <handoff notice>
              escalated: The customer says it is urgent.
              = handler queue, status open, streak 0, priority urgent, category technical_support
        "#]],
    );
    check(
        vec![AlwaysHuman { text: "I want a refund", intent: "refund_request", category: Category::Billing }],
        expect![[r#"
            customer: I want a refund
              bot: <handoff notice>
              escalated: Intent `refund_request` is always handled by a person.
              = handler queue, status open, streak 0, priority medium, category billing
        "#]],
    );
}

#[test]
fn agent_takes_over_resolves_and_the_bot_answers_again() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            AgentReplies,
            says("thanks, that worked", "thanks", 0.9, Some("You're welcome!")),
            Resolve,
            says("hello again", "greeting", 0.9, Some("Hi!")),
            says("human please", "human_request", 0.9, None),
            AgentJoins("Dana"),
            HandBack,
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent replies
              = handler agent, status waiting_on_customer, streak 0, priority low, category general_inquiry
            customer: thanks, that worked
              = handler agent, status in_progress, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: hello again
              bot: Hi!
              = handler bot, status open, streak 0, priority low, category general_inquiry
            customer: human please
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent hands back to the bot
              bot: You're back with the assistant. Ask away, or say "agent" to reach a person again.
              = handler bot, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn the_customer_confirms_a_resolution_rates_it_and_comments() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            AgentReplies,
            Resolve,
            says("Yes, it's fixed", "thanks", 0.9, Some("You're welcome!")),
            says("5", "out_of_scope", 0.2, None),
            says("Dana was quick and kind", "thanks", 0.6, Some("You're welcome!")),
            says("one more thing: where is my invoice?", "billing_invoice", 0.9, Some("Invoices are under Account.")),
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent replies
              = handler agent, status waiting_on_customer, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: Yes, it's fixed
              bot: Glad to hear it! How would you rate the help you got from Dana? 1 is poor, 5 is excellent. [1 | 2 | 3 | 4 | 5]
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting rating
            customer: 5
              bot: Thank you! Anything you'd like to tell us? Write it here, or tap Skip. [Skip]
              rated 5
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting comment
            customer: Dana was quick and kind
              bot: Thank you for your feedback.
              commented: Dana was quick and kind
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry
            customer: one more thing: where is my invoice?
              bot: Invoices are under Account.
              = handler bot, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn a_comment_may_name_a_topic_the_bot_knows_but_a_question_it_answers_is_no_comment() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            Resolve,
            says("yes", "out_of_scope", 0.2, None),
            says("4", "out_of_scope", 0.2, None),
            says("the password reset worked", "password_reset", 0.9, Some("Use the reset link.")),
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            Resolve,
            says("yes", "out_of_scope", 0.2, None),
            says("5", "out_of_scope", 0.2, None),
            says("how do I reset my password?", "password_reset", 0.9, Some("Use the reset link.")),
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: yes
              bot: Glad to hear it! How would you rate the help you got from Dana? 1 is poor, 5 is excellent. [1 | 2 | 3 | 4 | 5]
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting rating
            customer: 4
              bot: Thank you! Anything you'd like to tell us? Write it here, or tap Skip. [Skip]
              rated 4
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting comment
            customer: the password reset worked
              bot: Thank you for your feedback.
              commented: the password reset worked
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: yes
              bot: Glad to hear it! How would you rate the help you got from Dana? 1 is poor, 5 is excellent. [1 | 2 | 3 | 4 | 5]
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting rating
            customer: 5
              bot: Thank you! Anything you'd like to tell us? Write it here, or tap Skip. [Skip]
              rated 5
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting comment
            customer: how do I reset my password?
              bot: Use the reset link.
              = handler bot, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn a_resolution_closed_before_the_customer_confirmed_is_still_rated_once() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            Resolve,
            Close,
            says("4", "out_of_scope", 0.2, None),
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            agent closes
              bot: This conversation is closed. Write here any time to start a new one.
              bot: Before you go: how would you rate the help you got from Dana? 1 is poor, 5 is excellent. [1 | 2 | 3 | 4 | 5]
              = handler bot, status closed, streak 0, priority low, category general_inquiry, awaiting rating
            customer: 4
              bot: Thank you for your feedback.
              rated 4
              = handler bot, status closed, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn a_customer_who_says_it_is_not_fixed_goes_back_to_the_team_and_anything_else_moves_on() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            Resolve,
            says("no, still broken", "out_of_scope", 0.2, None),
            AgentJoins("Dana"),
            Resolve,
            says("how do I reset my password?", "password_reset", 0.9, Some("Use the reset link.")),
            says("yes", "out_of_scope", 0.2, None),
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: no, still broken
              bot: Sorry it isn't fixed yet. I've passed it back to the team; someone will reply here.
              escalated: The customer says the resolution did not fix it.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: how do I reset my password?
              bot: Use the reset link.
              = handler bot, status open, streak 0, priority low, category general_inquiry
            customer: yes
              bot: Sorry, I'm not sure I understood. Could you put it another way, or pick a topic below? [Billing | Technical problem | My account | Talk to a person]
              = handler bot, status open, streak 1, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn a_second_resolve_keeps_the_question_and_a_request_for_a_person_is_no_comment() {
    check(
        vec![
            says("talk to a human", "human_request", 0.95, None),
            AgentJoins("Dana"),
            Resolve,
            Resolve,
            says("yes", "out_of_scope", 0.2, None),
            says("4", "out_of_scope", 0.2, None),
            says("talk to a human", "human_request", 0.95, None),
        ],
        expect![[r#"
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
            agent Dana joins
              system: Dana joined the conversation.
              = handler agent, status assigned, streak 0, priority low, category general_inquiry
            agent resolves
              bot: Dana marked this as solved. Did that fix it? [Yes, it's fixed | No, not yet]
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            agent resolves
              = handler bot, status resolved, streak 0, priority low, category general_inquiry, awaiting confirmation
            customer: yes
              bot: Glad to hear it! How would you rate the help you got from Dana? 1 is poor, 5 is excellent. [1 | 2 | 3 | 4 | 5]
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting rating
            customer: 4
              bot: Thank you! Anything you'd like to tell us? Write it here, or tap Skip. [Skip]
              rated 4
              = handler bot, status confirmed, streak 0, priority low, category general_inquiry, awaiting comment
            customer: talk to a human
              bot: <handoff notice>
              escalated: The customer asked for a person.
              = handler queue, status open, streak 0, priority low, category general_inquiry
        "#]],
    );
}

#[test]
fn only_an_intents_own_answer_counts_as_an_automated_response() {
    let policy = Policy::default();
    let now = Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap();
    let conversation = Conversation::new(ContactId::new(), Channel::WebChat, now);
    let decide = |c: Classification| {
        let input = Input::CustomerMessage { text: "when are you open", classification: &c, has_attachments: false, resolver_available: false };
        step(&conversation, &input, &policy, now).answered_from_intent
    };
    assert!(decide(classification("opening_hours", Category::GeneralInquiry, 0.95, Some("We open at 9."))), "the intent's answer went out");
    assert!(!decide(classification("opening_hours", Category::GeneralInquiry, 0.2, Some("We open at 9."))), "unsure: a clarifying question");
    assert!(!decide(classification("refund_request", Category::Billing, 0.95, None)), "no answer: nothing sent");
    let written = Classification { source: ClassificationSource::Llm, ..classification("out_of_scope", Category::GeneralInquiry, 0.9, Some("Our shop sells tea.")) };
    assert!(!decide(written), "the LLM's own answer is no intent's");
}
