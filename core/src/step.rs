//! The conversation state machine: a pure, total function from (conversation, input, now) to the
//! next conversation and the replies to send. No I/O; `Engine` does the loading and saving.

use crate::closing::{Answer, RATING_CHOICES, confirmation_answer, declines, rating_in};
use crate::sla::{start_clocks, BreachAction};
use crate::timers::{TimerKind, timers_after};
use crate::policy::{Policy, priority_for};
use switchboard_models::{
    AgentId, Awaiting, Category, Channel, Classification, ClassificationSource, Priority, Conversation, Escalation, EscalationReason, Handler, IntentName, Need,
    NotificationKind, Sender, SlaNotices, Status, Timestamp, Urgency,
};

/// Something that happened to a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum Input<'a> {
    CustomerMessage {
        text: &'a str,
        classification: &'a Classification,
        /// Files came with the message.
        has_attachments: bool,
        /// The agent whose resolution awaits the customer's confirmation is online to take it
        /// back if the customer says it is not fixed (else it goes to the queue).
        resolver_available: bool,
    },
    AgentJoined {
        agent: AgentId,
        agent_name: &'a str,
        /// Someone else gave it to them (auto-assignment, an admin): they are notified.
        given: bool,
    },
    AgentReplied {
        agent: AgentId,
    },
    /// The agent stopped handling it (went offline, released it): back to the queue.
    Released {
        agent_name: &'a str,
    },
    /// An agent resolved it: the customer is asked to confirm.
    Resolved {
        agent: AgentId,
        agent_name: &'a str,
    },
    /// An agent reopened a finished conversation to follow up (or started one): theirs now.
    Reopened {
        agent: AgentId,
    },
    /// A reviewer approved or rejected a document the customer sent: they are told.
    DocumentDecided {
        kind: &'a str,
        approved: bool,
        note: Option<&'a str>,
    },
    /// The customer rated the help outside a message (widget stars, a signed link, the API).
    Rated {
        score: u8,
    },
    HandedBackToBot,
    /// An agent set the ticket's status.
    StatusSet(Status),
    PrioritySet(Priority),
    CategorySet(Category),
    /// A timer of the conversation came due; `last_message` is when its newest message was
    /// written (a bot chat's messages do not move its idle timer: it is checked here).
    TimerFired { kind: TimerKind, last_message: Timestamp },
}

/// A message `step` wants sent to the customer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub sender: Sender,
    pub body: ReplyBody,
    pub quick_replies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReplyBody {
    Text(String),
    /// "Handed to the team": worded by the engine, which knows the queue position.
    HandoffNotice,
    /// "You're number 3 in the queue; about 10 minutes": worded by the engine, which knows the
    /// queue and how long recent customers waited.
    WaitingNotice,
}

/// Who is told of something in the panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Agent(AgentId),
    /// Every active admin.
    Admins,
}

/// A notification a step wants written with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub to: Recipient,
    pub kind: NotificationKind,
    pub text: String,
}

/// The customer's feedback on a resolution, written with the step.
#[derive(Debug, Clone, PartialEq)]
pub enum Feedback {
    Rated { agent: AgentId, resolved_at: Timestamp, score: u8 },
    Commented { resolved_at: Timestamp, text: String },
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub conversation: Conversation,
    pub replies: Vec<Reply>,
    /// Set when this step escalated the conversation.
    pub escalated: Option<EscalationReason>,
    /// The conversation's timers from now on, replacing those it had; `None` keeps them.
    pub timers: Option<Vec<(TimerKind, Timestamp)>>,
    /// Notifications for agents, written with the step.
    pub notices: Vec<Notice>,
    /// An email address the customer left for an answer (asked for outside business hours),
    /// kept on their contact.
    pub contact_email: Option<String>,
    /// A rating or its comment the customer just gave.
    pub feedback: Option<Feedback>,
    /// The type of the document the bot asked for, which the message's files are.
    pub document_kind: Option<String>,
    /// The customer's message answered what the bot had asked (a confirmation, a rating, a
    /// comment), so its intent played no part.
    pub answered_question: bool,
    /// The bot replied with the answer of the message's intent (an automated response fired).
    pub answered_from_intent: bool,
}

pub fn step(conversation: &Conversation, input: &Input<'_>, policy: &Policy, now: Timestamp) -> Decision {
    let mut next = conversation.clone();
    next.updated_at = now;
    if let Input::CustomerMessage { classification, .. } = input
        && let Some(language) = &classification.language
    {
        next.language = Some(language.clone());
    }
    // The customer hears the bot's closing and document texts in their language where configured.
    let localized = policy.in_language(next.language.as_deref());
    let policy: &Policy = &localized;
    let mut replies = Vec::new();
    let mut escalated = None;
    let mut notices = Vec::new();
    let mut contact_email = None;
    let mut feedback = None;
    let mut document_kind = None;
    // Only what the customer was asked is answered by their next message or action; anything
    // else an agent or the customer does moves on from the question.
    let awaiting = match input {
        Input::PrioritySet(_) | Input::CategorySet(_) | Input::TimerFired { .. } | Input::DocumentDecided { .. } => next.awaiting.clone(),
        _ => next.awaiting.take(),
    };

    let answered_awaited = match input {
        Input::CustomerMessage { text, classification, resolver_available, has_attachments: false } => {
            let said = Said { text, classification, resolver_available: *resolver_available };
            answer_awaited(&mut next, awaiting.as_ref(), &said, &mut replies, &mut notices, &mut feedback, &mut escalated, policy, now)
        }
        _ => false,
    };

    let mut answered_from_intent = false;
    match input {
        Input::CustomerMessage { .. } if answered_awaited => {}
        Input::CustomerMessage { text, classification, has_attachments, .. } => {
            if matches!(next.status, Status::Resolved | Status::Confirmed) {
                next.status = Status::Open;
            }
            match next.handler {
                Handler::Bot if *has_attachments && matches!(awaiting, Some(Awaiting::Document { .. })) && !needs_someone(classification) => {
                    // The document the bot asked for: received, to be reviewed; no handoff.
                    let Some(Awaiting::Document { document_type: kind }) = &awaiting else { unreachable!("matched above") };
                    let text = policy.documents.received.replace("{type}", &crate::documents::type_label(kind));
                    replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(text), quick_replies: Vec::new() });
                    document_kind = Some(kind.clone());
                }
                Handler::Bot => {
                    let reason = if *has_attachments {
                        // A file goes to a person; a request sent with it keeps its own reason.
                        let asked = needs_someone(classification).then(|| escalation_reason(&next, classification, policy)).flatten();
                        asked.or(Some(EscalationReason::DocumentReview))
                    } else {
                        escalation_reason(&next, classification, policy)
                    };
                    match reason {
                        Some(reason) => {
                            escalate(&mut next, classification, reason.clone(), text, policy, now);
                            replies.push(Reply {
                                sender: Sender::Bot,
                                body: ReplyBody::HandoffNotice,
                                quick_replies: Vec::new(),
                            });
                            escalated = Some(reason);
                        }
                        None => {
                            // An answer the LLM wrote itself is no intent's answer.
                            answered_from_intent = classification.answer.is_some()
                                && !is_unsure(classification, policy)
                                && !classification.intent.is(IntentName::OUT_OF_SCOPE);
                            replies.push(bot_answer(&mut next, classification, policy));
                            next.awaiting = awaiting_document(classification, awaiting.as_ref(), policy);
                            if classification.judgement.is_some() && next.escalation.is_none() {
                                // Every conversation has a priority, current with its latest
                                // message, until a person's work (or setting) owns it.
                                let category = next.category.unwrap_or(classification.category);
                                next.priority = Some(priority_for(category, classification, text, &policy.priority_rules));
                            }
                        }
                    }
                }
                Handler::Queue => {
                    // Writing while queued is not met with silence, nor told the same thing at every message.
                    let due = |every: std::time::Duration| next.waiting_notice_at.is_none_or(|at| (now - at).to_std().is_ok_and(|waited| waited >= every));
                    // Asked for an address to be answered at (the handoff came outside hours): one
                    // given is kept and confirmed.
                    let handed_over_closed = next.escalation.as_ref().is_some_and(|e| policy.hours_for(next.channel).is_some_and(|h| !h.is_open(e.at)));
                    let asked = policy.ask_email_outside_hours.is_some() && next.channel != Channel::Email && handed_over_closed;
                    if let Some(address) = asked.then(|| email_address_in(text)).flatten() {
                        next.waiting_notice_at = Some(now);
                        let noted = policy.email_noted.replace("{email}", &address);
                        replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(noted), quick_replies: Vec::new() });
                        contact_email = Some(address);
                    } else if policy.waiting_notice_every.is_some_and(due) {
                        next.waiting_notice_at = Some(now);
                        replies.push(Reply { sender: Sender::Bot, body: ReplyBody::WaitingNotice, quick_replies: Vec::new() });
                    }
                }
                Handler::Agent(agent) => {
                    if next.status == Status::WaitingOnCustomer {
                        next.status = Status::InProgress;
                    }
                    notices.push(Notice { to: Recipient::Agent(agent), kind: NotificationKind::CustomerReplied, text: snippet(text) });
                }
            }
        }
        Input::AgentJoined { agent, agent_name, given } => {
            next.handler = Handler::Agent(*agent);
            next.status = Status::Assigned;
            if *given {
                let priority = next.priority.map_or(String::new(), |p| format!(" (priority {p})"));
                notices.push(Notice {
                    to: Recipient::Agent(*agent),
                    kind: NotificationKind::Assigned,
                    text: format!("A conversation was assigned to you{priority}."),
                });
            }
            replies.push(Reply {
                sender: Sender::System,
                body: ReplyBody::Text(format!("{agent_name} joined the conversation.")),
                quick_replies: Vec::new(),
            });
        }
        Input::AgentReplied { agent } => {
            next.handler = Handler::Agent(*agent);
            // The first reply's clock stops at the first reply.
            next.first_reply_due_at = None;
            next.status = Status::WaitingOnCustomer;
        }
        Input::Released { agent_name } => {
            next.handler = Handler::Queue;
            if !next.status.is_final() {
                next.status = Status::Open;
            }
            replies.push(Reply {
                sender: Sender::System,
                body: ReplyBody::Text(format!("{agent_name} is no longer available; another agent will take over.")),
                quick_replies: Vec::new(),
            });
        }
        Input::Resolved { .. } if matches!(conversation.status, Status::Resolved | Status::Confirmed) && conversation.handler == Handler::Bot => {
            // Resolved already (a stale view, a second agent): the customer's answer still counts.
            next.awaiting = awaiting.clone();
        }
        Input::Resolved { agent, agent_name } => {
            let closing = &policy.closing;
            // A person's work is confirmed by the customer; a bot chat has nobody to vouch for.
            if closing.confirm_resolution && next.handler != Handler::Bot && next.status != Status::Resolved {
                next.awaiting = Some(Awaiting::Confirmation { agent: *agent, agent_name: agent_name.to_string(), resolved_at: now });
                replies.push(Reply {
                    sender: Sender::Bot,
                    body: ReplyBody::Text(closing.confirm_question.replace("{agent}", agent_name)),
                    quick_replies: vec![closing.yes_label.clone(), closing.no_label.clone()],
                });
            }
            next.status = Status::Resolved;
            next.handler = Handler::Bot;
            next.low_confidence_streak = 0;
        }
        Input::DocumentDecided { kind, approved, note } => {
            // A decision on a document is no activity of the conversation's own.
            next.updated_at = conversation.updated_at;
            let documents = &policy.documents;
            let template = if *approved { &documents.approved_notice } else { &documents.rejected_notice };
            let text = template.replace("{type}", &crate::documents::type_label(kind)).replace("{note}", note.unwrap_or("").trim_end_matches('.'));
            if !text.trim().is_empty() {
                replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(text), quick_replies: Vec::new() });
            }
        }
        Input::Reopened { agent } => {
            next.handler = Handler::Agent(*agent);
            next.status = Status::InProgress;
            next.low_confidence_streak = 0;
        }
        Input::Rated { score } => {
            if let Some(Awaiting::Rating { agent, resolved_at, .. }) = awaiting {
                rated(&mut next, agent, resolved_at, *score, &mut replies, &mut feedback, policy);
            } else {
                // Nothing was asked (late, repeated or forged): the state stays as it was.
                next.awaiting = awaiting;
            }
        }
        Input::StatusSet(status) => {
            let was = next.status;
            next.status = *status;
            if matches!(status, Status::Resolved | Status::Confirmed | Status::Closed | Status::Rejected) {
                // Finished tickets go back to the bot, which answers if the customer writes again.
                next.handler = Handler::Bot;
                next.low_confidence_streak = 0;
            }
            let notice = match status {
                Status::Closed => &policy.closing.closed_notice,
                Status::Rejected => &policy.closing.rejected_notice,
                _ => "",
            };
            if was != *status && !notice.is_empty() {
                replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(notice.to_string()), quick_replies: Vec::new() });
            }
            if *status == Status::Closed {
                ask_rating_after_close(&mut next, awaiting.as_ref(), &mut replies, policy);
            }
        }
        Input::PrioritySet(priority) => {
            next.priority = Some(*priority);
            // The clocks run from the escalation, with the new priority's targets.
            if let Some(escalation) = next.escalation.as_ref().filter(|_| next.handler != Handler::Bot && !next.status.is_final()) {
                let from = escalation.at;
                let first_reply_pending = next.first_reply_due_at.is_some();
                let hours = policy.hours_for(next.channel);
                start_clocks(&mut next, &policy.sla, hours, from, first_reply_pending, now);
            }
        }
        Input::CategorySet(category) => next.category = Some(*category),
        Input::HandedBackToBot => {
            let was_with_people = next.handler != Handler::Bot;
            next.handler = Handler::Bot;
            next.low_confidence_streak = 0;
            if !next.status.is_final() {
                next.status = Status::Open;
            }
            let notice = &policy.closing.back_to_bot_notice;
            if was_with_people && !notice.is_empty() {
                replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(notice.clone()), quick_replies: Vec::new() });
            }
        }
        Input::TimerFired { kind, last_message } => {
            if let Some(later) = idle_until(&next, *kind, *last_message, policy, now) {
                // The chat went on since the timer was set: it closes a quiet while after that.
                return Decision {
                    conversation: next,
                    replies,
                    escalated,
                    timers: Some(vec![(TimerKind::CloseIdleBot, later)]),
                    notices,
                    contact_email,
                    feedback,
                    document_kind,
                    answered_question: answered_awaited,
                    answered_from_intent,
                };
            }
            quiet_for_long(&mut next, *kind, &mut replies, policy);
            if *kind == TimerKind::CloseResolved && next.status == Status::Closed {
                ask_rating_after_close(&mut next, awaiting.as_ref(), &mut replies, policy);
            }
            sla_came_due(&mut next, *kind, &mut replies, &mut notices, policy, now);
        }
    }
    if next.handler == Handler::Bot || matches!(next.status, Status::Resolved | Status::Confirmed | Status::Closed | Status::Rejected) {
        // Nothing is owed to a conversation back with the bot or finished.
        next.first_reply_due_at = None;
        next.resolution_due_at = None;
    }
    let timers = match input {
        // A reminder leaves the resolution timer where it was; a document decision changes no state.
        Input::TimerFired { kind: TimerKind::RemindWaiting, .. } | Input::DocumentDecided { .. } => None,
        // An SLA notice leaves the other timers where they were (its own is deleted as it
        // fires); a breach that put the conversation back in the queue counts anew.
        Input::TimerFired { kind: TimerKind::FirstReplyWarning | TimerKind::FirstReplyBreach | TimerKind::ResolutionWarning | TimerKind::ResolutionBreach, .. }
            if (next.status, next.handler) == (conversation.status, conversation.handler) => None,
        // A customer message that leaves the status and handler as they were keeps the timers:
        // a bot chat is not rewritten at every message (its idle timer checks when it fires).
        Input::CustomerMessage { .. } if (next.status, next.handler) == (conversation.status, conversation.handler) => None,
        // Every other step counts anew from now.
        _ => Some(timers_after(&next, &policy.quiet, &policy.sla, policy.hours_for(next.channel), now)),
    };
    Decision {
        conversation: next,
        replies,
        escalated,
        timers,
        notices,
        contact_email,
        feedback,
        document_kind,
        answered_question: answered_awaited,
        answered_from_intent,
    }
}

/// A customer message as an answer to what the bot asked: the answering text (a mail's body)
/// and how the whole message was classified.
struct Said<'a> {
    text: &'a str,
    classification: &'a Classification,
    resolver_available: bool,
}

/// A bot message, unless its configured text is empty (then nothing is sent).
fn bot_says(replies: &mut Vec<Reply>, text: String, quick_replies: Vec<String>) {
    if !text.trim().is_empty() {
        replies.push(Reply { sender: Sender::Bot, body: ReplyBody::Text(text), quick_replies });
    }
}

/// A message that needs someone rather than comments: asking for a person, something urgent,
/// a report of harm. (A comment may well mention a topic the bot knows: that is no request.)
fn needs_someone(classification: &Classification) -> bool {
    classification.intent.is(IntentName::HUMAN_REQUEST)
        || classification.always_escalate
        || classification.urgency == Urgency::Critical
        || classification.judgement.as_ref().is_some_and(|j| matches!(j.need, Need::HumanRequest | Need::HarmReport))
}

/// A message that is no comment on the help given: one that needs someone, or a question the
/// bot is sure of and answers ("the reset worked" comments; "how do I reset it?" asks).
fn is_new_request(classification: &Classification, text: &str, policy: &Policy) -> bool {
    let asks = classification.judgement.as_ref().map_or(text.trim_end().ends_with('?'), |j| j.need == Need::Question);
    needs_someone(classification) || (asks && !is_unsure(classification, policy) && classification.answer.is_some())
}

/// The customer's message answers what the bot asked after a resolution: a confirmation, a
/// rating or a comment. Returns false (the message is handled as any other) when it is not
/// such an answer, or nothing was asked.
#[allow(clippy::too_many_arguments)]
fn answer_awaited(
    next: &mut Conversation,
    awaiting: Option<&Awaiting>,
    said: &Said<'_>,
    replies: &mut Vec<Reply>,
    notices: &mut Vec<Notice>,
    feedback: &mut Option<Feedback>,
    escalated: &mut Option<EscalationReason>,
    policy: &Policy,
    now: Timestamp,
) -> bool {
    let closing = &policy.closing;
    let text = said.text;
    let resolver_available = said.resolver_available;
    match awaiting {
        Some(Awaiting::Confirmation { agent, agent_name, resolved_at }) => match confirmation_answer(text, closing) {
            Some(Answer::Yes) => {
                next.status = Status::Confirmed;
                if closing.ask_rating {
                    next.awaiting = Some(Awaiting::Rating { agent: *agent, agent_name: agent_name.clone(), resolved_at: *resolved_at });
                    let choices = RATING_CHOICES.iter().map(|c| c.to_string()).collect();
                    bot_says(replies, closing.rating_question.replace("{agent}", agent_name), choices);
                } else {
                    bot_says(replies, closing.confirmed.clone(), Vec::new());
                }
                true
            }
            Some(Answer::No) => {
                // Back to the agent who resolved it while they are online, else to the queue.
                if resolver_available {
                    next.handler = Handler::Agent(*agent);
                    next.status = Status::InProgress;
                    bot_says(replies, closing.reopened_to_agent.replace("{agent}", agent_name), Vec::new());
                    notices.push(Notice {
                        to: Recipient::Agent(*agent),
                        kind: NotificationKind::CustomerReplied,
                        text: "The customer says it is not fixed yet; the conversation is yours again.".into(),
                    });
                } else {
                    next.handler = Handler::Queue;
                    next.status = Status::Open;
                    next.waiting_notice_at = Some(now);
                    bot_says(replies, closing.reopened_to_queue.clone(), Vec::new());
                }
                // A handoff again: kept in the escalation history like the first.
                let summary = next.escalation.as_ref().map(|e| e.summary.clone()).unwrap_or_default();
                next.escalation = Some(Escalation { reason: EscalationReason::NotFixed, summary, at: now });
                *escalated = Some(EscalationReason::NotFixed);
                start_clocks(next, &policy.sla, policy.hours_for(next.channel), now, !resolver_available, now);
                true
            }
            None => false,
        },
        Some(Awaiting::Rating { agent, resolved_at, .. }) => {
            if let Some(score) = rating_in(text) {
                rated(next, *agent, *resolved_at, score, replies, feedback, policy);
                true
            } else if declines(text, closing) {
                bot_says(replies, closing.thanks.clone(), Vec::new());
                true
            } else {
                false
            }
        }
        // Asking for a person, or something new the bot knows, is no comment: it is handled.
        Some(Awaiting::Comment { .. }) if is_new_request(said.classification, text, policy) => false,
        Some(Awaiting::Comment { resolved_at }) => {
            if !declines(text, closing) {
                *feedback = Some(Feedback::Commented { resolved_at: *resolved_at, text: text.trim().to_string() });
            }
            bot_says(replies, closing.thanks.clone(), Vec::new());
            true
        }
        // A document is answered by a file (the message's step takes it); text moves on.
        Some(Awaiting::Document { .. }) | None => false,
    }
}

/// A rating was given: kept, and a comment invited (on a closed conversation, only thanked:
/// what the customer writes next starts a new one).
fn rated(next: &mut Conversation, agent: AgentId, resolved_at: Timestamp, score: u8, replies: &mut Vec<Reply>, feedback: &mut Option<Feedback>, policy: &Policy) {
    *feedback = Some(Feedback::Rated { agent, resolved_at, score });
    if next.status.is_final() {
        next.awaiting = None;
        bot_says(replies, policy.closing.thanks.clone(), Vec::new());
        return;
    }
    next.awaiting = Some(Awaiting::Comment { resolved_at });
    bot_says(replies, policy.closing.comment_question.clone(), vec![policy.closing.skip_label.clone()]);
}

/// A resolution the customer never confirmed was closed (by an agent, or by the timer): the
/// help is rated all the same, once; the next rating the customer sends answers it.
fn ask_rating_after_close(next: &mut Conversation, awaiting: Option<&Awaiting>, replies: &mut Vec<Reply>, policy: &Policy) {
    let Some(Awaiting::Confirmation { agent, agent_name, resolved_at }) = awaiting else { return };
    if !policy.closing.ask_rating {
        return;
    }
    let question = policy.closing.rating_question_after_close.replace("{agent}", agent_name);
    bot_says(replies, question, RATING_CHOICES.iter().map(|c| c.to_string()).collect());
    next.awaiting = Some(Awaiting::Rating { agent: *agent, agent_name: agent_name.clone(), resolved_at: *resolved_at });
}

/// When an idle bot chat's timer came due but the chat went on since: the new due time.
fn idle_until(c: &Conversation, kind: TimerKind, last_message: Timestamp, policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    let idle = chrono::Duration::from_std(policy.quiet.close_idle_bot_after?).ok()?;
    let bot_chat = c.handler == Handler::Bot && !c.status.is_final();
    (kind == TimerKind::CloseIdleBot && bot_chat && last_message + idle > now).then_some(last_message + idle)
}

/// A conversation stayed quiet until `kind` came due: remind, resolve or close it, if it is
/// still in the state the timer was set for.
fn quiet_for_long(next: &mut Conversation, kind: TimerKind, replies: &mut Vec<Reply>, policy: &Policy) {
    let tell = |text: &str| Reply { sender: Sender::Bot, body: ReplyBody::Text(text.to_string()), quick_replies: Vec::new() };
    match kind {
        TimerKind::RemindWaiting if next.status == Status::WaitingOnCustomer => replies.push(tell(&policy.quiet.waiting_reminder)),
        TimerKind::ResolveWaiting if next.status == Status::WaitingOnCustomer => {
            next.status = Status::Resolved;
            next.handler = Handler::Bot;
            next.low_confidence_streak = 0;
            replies.push(tell(&policy.quiet.waiting_resolved));
        }
        TimerKind::CloseResolved if matches!(next.status, Status::Resolved | Status::Confirmed) => {
            next.status = Status::Closed;
            next.awaiting = None;
        }
        TimerKind::CloseIdleBot if next.handler == Handler::Bot && !next.status.is_final() => next.status = Status::Closed,
        _ => {}
    }
}

/// The start of a customer message, for a notification.
pub(crate) fn snippet(text: &str) -> String {
    match text.char_indices().nth(140) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// An SLA warning or breach came due: announce it once, if its clock still runs, and act on a
/// breach as configured.
fn sla_came_due(next: &mut Conversation, kind: TimerKind, replies: &mut Vec<Reply>, notices: &mut Vec<Notice>, policy: &Policy, now: Timestamp) {
    let (due, warning, breach, what) = match kind {
        TimerKind::FirstReplyWarning | TimerKind::FirstReplyBreach => {
            (next.first_reply_due_at, SlaNotices::FIRST_REPLY_WARNING, SlaNotices::FIRST_REPLY_BREACH, "First reply")
        }
        TimerKind::ResolutionWarning | TimerKind::ResolutionBreach => {
            (next.resolution_due_at, SlaNotices::RESOLUTION_WARNING, SlaNotices::RESOLUTION_BREACH, "Resolution")
        }
        _ => return,
    };
    let Some(due) = due else { return };
    let assignee = match next.handler {
        Handler::Agent(agent) => Some(agent),
        _ => None,
    };
    let priority = next.priority.map_or(String::new(), |p| format!(", priority {p}"));
    let is_warning = matches!(kind, TimerKind::FirstReplyWarning | TimerKind::ResolutionWarning);
    if is_warning {
        if next.sla_notices.has(warning) || next.sla_notices.has(breach) {
            return;
        }
        next.sla_notices = next.sla_notices.with(warning);
        if due <= now {
            // Late (the server was down): the breach says it.
            return;
        }
        // With business hours the time left is open time, as the clock counts it.
        let left = policy.hours_for(next.channel).map_or(due - now, |hours| hours.working_between(now, due));
        let minutes = left.num_minutes().max(1);
        let text = format!("{what} due in {minutes} min{priority}.");
        // The assignee can still make it; a queued conversation's warning goes to the admins.
        let to = assignee.map_or(Recipient::Admins, Recipient::Agent);
        notices.push(Notice { to, kind: NotificationKind::SlaWarning, text });
        return;
    }
    if next.sla_notices.has(breach) {
        return;
    }
    next.sla_notices = next.sla_notices.with(breach);
    let mut text = format!("{what} overdue since {}{priority}.", due.format("%Y-%m-%d %H:%M UTC"));
    match policy.sla.on_breach {
        BreachAction::Notify => {}
        BreachAction::RaisePriority => {
            // The clocks keep their due times: restarting them with the tighter target would
            // only breach again at once.
            if let Some(p) = next.priority.filter(|p| *p != Priority::Urgent) {
                let raised = crate::policy::raised(p);
                next.priority = Some(raised);
                text.push_str(&format!(" Raised to {raised}."));
            }
        }
        BreachAction::Reassign => {
            if kind == TimerKind::FirstReplyBreach && assignee.is_some() {
                next.handler = Handler::Queue;
                next.status = Status::Open;
                text.push_str(" Back in the queue for someone else.");
                replies.push(Reply {
                    sender: Sender::System,
                    body: ReplyBody::Text("Your conversation is back with the team; the next free agent will take over.".to_string()),
                    quick_replies: Vec::new(),
                });
            }
        }
    }
    notices.push(Notice { to: Recipient::Admins, kind: NotificationKind::SlaBreach, text: text.clone() });
    if let Some(agent) = assignee {
        notices.push(Notice { to: Recipient::Agent(agent), kind: NotificationKind::SlaBreach, text });
    }
}

/// The least escalation likelihood at which a need judged "request for a person" hands over;
/// a clear request scores 0.8 or more, a polite question the need head mistakes for one about 0.2.
const PERSON_REQUEST_AT_LEAST: f32 = 0.3;

/// Why the bot should stop answering this message, if it should.
fn escalation_reason(
    conversation: &Conversation,
    classification: &Classification,
    policy: &Policy,
) -> Option<EscalationReason> {
    if classification.intent.is(IntentName::HUMAN_REQUEST) {
        return Some(EscalationReason::HumanRequested);
    }
    if classification.always_escalate {
        return Some(EscalationReason::AlwaysHumanIntent { intent: classification.intent.clone() });
    }
    match &classification.judgement {
        // The trained judgement weighs need, risk and tone together; word lists only guess.
        Some(judgement) => {
            // A request for a person the heads only half believe ("I would like to apply for a
            // job with you") is not one: the need's guess needs the escalation heads' support.
            if judgement.need == Need::HumanRequest && !judgement.off_topic && judgement.escalate >= PERSON_REQUEST_AT_LEAST {
                return Some(EscalationReason::HumanRequested);
            }
            if judgement.escalate >= policy.escalate_at_least {
                return Some(EscalationReason::NeedsPerson { need: judgement.need, likelihood: judgement.escalate });
            }
        }
        None => {
            if classification.urgency == Urgency::Critical {
                return Some(EscalationReason::Urgent);
            }
            if classification.sentiment <= policy.negative_sentiment_threshold {
                return Some(EscalationReason::NegativeSentiment { sentiment: classification.sentiment });
            }
        }
    }
    // Off topic is not misunderstanding: the bot said what it is for, and a person can be asked for.
    let off_topic = classification.judgement.as_ref().is_some_and(|j| j.off_topic);
    let unsure = is_unsure(classification, policy) && !off_topic;
    let times = conversation.low_confidence_streak + 1;
    if unsure && times >= policy.low_confidence_escalate_after {
        return Some(EscalationReason::LowConfidence { times });
    }
    None
}

fn is_unsure(classification: &Classification, policy: &Policy) -> bool {
    // An out-of-scope message is unsure unless the LLM (allowed to) wrote the answer itself.
    let llm_answered = classification.source == ClassificationSource::Llm && classification.answer.is_some();
    classification.confidence < policy.low_confidence_threshold
        || classification.answer.is_none()
        || (classification.intent.is(IntentName::OUT_OF_SCOPE) && !llm_answered)
}

/// The document the bot waits for after answering: the one its answer just asked for (a
/// configured type, and only when that answer itself went out), or still the one asked for
/// before when this message was small talk or unclear ("one moment, sending it").
fn awaiting_document(classification: &Classification, before: Option<&Awaiting>, policy: &Policy) -> Option<Awaiting> {
    let answered = !is_unsure(classification, policy);
    if let Some(kind) = classification.collect_document.as_ref().filter(|kind| answered && policy.documents.types.contains(kind)) {
        return Some(Awaiting::Document { document_type: kind.clone() });
    }
    let social = [IntentName::THANKS, IntentName::GOODBYE, IntentName::GREETING].iter().any(|name| classification.intent.is(name));
    match before {
        Some(waiting @ Awaiting::Document { .. }) if social || !answered => Some(waiting.clone()),
        _ => None,
    }
}

fn bot_answer(next: &mut Conversation, classification: &Classification, policy: &Policy) -> Reply {
    match (&classification.answer, is_unsure(classification, policy)) {
        (Some(answer), false) => {
            next.low_confidence_streak = 0;
            Reply {
                sender: Sender::Bot,
                body: ReplyBody::Text(answer.clone()),
                quick_replies: Vec::new(),
            }
        }
        // Clear, but not ours to answer: say so, and don't count it towards a handoff.
        (None, _) if classification.judgement.as_ref().is_some_and(|j| j.off_topic) => Reply {
            sender: Sender::Bot,
            body: ReplyBody::Text(policy.off_topic_reply.clone()),
            quick_replies: policy.clarifying_quick_replies.clone(),
        },
        _ => {
            next.low_confidence_streak += 1;
            Reply {
                sender: Sender::Bot,
                body: ReplyBody::Text(policy.clarifying_question.clone()),
                quick_replies: policy.clarifying_quick_replies.clone(),
            }
        }
    }
}

fn escalate(
    next: &mut Conversation,
    classification: &Classification,
    reason: EscalationReason,
    text: &str,
    policy: &Policy,
    now: Timestamp,
) {
    next.handler = Handler::Queue;
    next.status = Status::Open;
    next.low_confidence_streak = 0;
    if classification.intent.is(IntentName::HUMAN_REQUEST) {
        // "I want a person" says nothing of the topic; keep what earlier messages said.
        next.category = next.category.or(Some(classification.category));
    } else {
        next.category = Some(classification.category);
    }
    let category = next.category.unwrap_or(classification.category);
    next.priority = Some(priority_for(category, classification, text, &policy.priority_rules));
    next.escalation = Some(Escalation { reason, summary: text.to_string(), at: now });
    next.sla_notices = SlaNotices::default();
    let hours = policy.hours_for(next.channel);
    start_clocks(next, &policy.sla, hours, now, true, now);
    // The handoff tells the customer their place; the next notice waits its interval.
    next.waiting_notice_at = Some(now);
}

/// The first email address in `text` ("you can reach me at ida@example.com."), lowercased.
pub fn email_address_in(text: &str) -> Option<String> {
    text.split(|c: char| !(c.is_alphanumeric() || "._%+@-".contains(c)))
        .map(|word| word.trim_end_matches(['.', '-']))
        .find(|word| {
            let Some((local, domain)) = word.split_once('@') else { return false };
            let labels: Vec<&str> = domain.split('.').collect();
            let top = labels.last().copied().unwrap_or_default();
            !local.is_empty()
                && !local.starts_with('.')
                && labels.len() >= 2
                && labels.iter().all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
                && top.chars().count() >= 2
                && top.chars().all(char::is_alphabetic)
                // "icon@2x.png" is a file name.
                && !["png", "jpg", "jpeg", "gif", "svg", "webp", "pdf", "txt", "html", "js", "css"].contains(&top.to_lowercase().as_str())
        })
        .map(str::to_lowercase)
}

#[cfg(test)]
mod email_address_tests {
    use super::email_address_in;

    #[test]
    fn an_address_is_found_in_a_sentence_and_nothing_else_is_taken_for_one() {
        assert_eq!(email_address_in("you can reach me at Ida.Berg@Example.com."), Some("ida.berg@example.com".into()));
        assert_eq!(email_address_in("mail: <ida+support@mail.example.org>, thanks"), Some("ida+support@mail.example.org".into()));
        for wrapped in ["mailto:ida@x.com", "[ida@x.com]", "*ida@x.com*", "ida@x.com…", "(ida@x.com)."] {
            assert_eq!(email_address_in(wrapped), Some("ida@x.com".into()), "{wrapped}");
        }
        for none in ["no address here", "meet me @ noon", "ida@localhost", "@example.com", "ida@.com", "50% @ the store.",
                     "icon@2x.png", "2@3.99", "v1.2@3.4", "a@b..com", "a@-x.com"] {
            assert_eq!(email_address_in(none), None, "{none}");
        }
    }
}

#[cfg(test)]
mod escalation_tests {
    use super::{PERSON_REQUEST_AT_LEAST, escalation_reason};
    use crate::policy::Policy;
    use switchboard_models::{
        Category, Channel, Classification, ClassificationSource, ContactId, Conversation, EscalationReason, IntentName, Judgement, Need,
        Priority, Urgency,
    };

    fn answered_question(need: Need, escalate: f32) -> Classification {
        Classification {
            intent: IntentName::parse("job_application").expect("valid"),
            category: Category::GeneralInquiry,
            confidence: 0.9,
            alternatives: Vec::new(),
            sentiment: 0.0,
            urgency: Urgency::None,
            language: Some("en".into()),
            answer: Some("Our open positions are on the Careers page.".into()),
            always_escalate: false,
            collect_document: None,
            source: ClassificationSource::Model,
            judgement: Some(Judgement { need, off_topic: false, escalate, priority: Priority::Low }),
            embedding: None,
        }
    }

    #[test]
    fn a_request_for_a_person_hands_over_only_when_the_heads_back_it() {
        let conversation = Conversation::new(ContactId::new(), Channel::WebChat, chrono::Utc::now());
        let policy = Policy::default();
        let reason = |need, escalate| escalation_reason(&conversation, &answered_question(need, escalate), &policy);
        // "I would like to apply for a job with you": the need head's guess, nothing behind it.
        assert_eq!(reason(Need::HumanRequest, 0.2), None);
        assert_eq!(reason(Need::HumanRequest, PERSON_REQUEST_AT_LEAST), Some(EscalationReason::HumanRequested));
        assert_eq!(reason(Need::HumanRequest, 0.95), Some(EscalationReason::HumanRequested));
        assert_eq!(reason(Need::Question, 0.2), None);
        assert!(matches!(reason(Need::Complaint, 0.9), Some(EscalationReason::NeedsPerson { .. })));
    }
}
