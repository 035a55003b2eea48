//! What a step did to its conversation, as typed events for the reports: written in the same
//! transaction as the step, so the history can neither miss a step nor count one that failed.

use crate::ports::StepWrite;
use switchboard_models::{Conversation, ConversationEvent, EventKind, Handler, Sender, Status, Timestamp};

impl StepWrite {
    /// The step with the events it makes happen to its conversation; `before` is the state the
    /// step was decided on (`None`: the step starts the conversation).
    pub fn with_history(mut self, before: Option<&Conversation>, now: Timestamp) -> Self {
        self.events = events(before, &self, now);
        self
    }
}

fn events(before: Option<&Conversation>, write: &StepWrite, now: Timestamp) -> Vec<ConversationEvent> {
    let Some(after) = write.conversation.as_ref().or(before) else {
        return Vec::new();
    };
    let event = |kind: EventKind| ConversationEvent {
        conversation_id: after.id,
        kind,
        at: now,
        channel: after.channel,
        agent_id: None,
        category: after.category,
        priority: after.priority,
        reason: None,
        wait_ms: None,
    };
    let mut events = Vec::new();
    let Some(before) = before else {
        if write.conversation.is_some() {
            events.push(event(EventKind::Created));
            if let Handler::Agent(agent) = after.handler {
                events.push(ConversationEvent { agent_id: Some(agent), ..event(EventKind::Assigned) });
            }
        }
        return events;
    };
    if let Some(escalation) = &write.escalation {
        events.push(ConversationEvent {
            reason: Some(escalation.reason.kind().to_string()),
            priority: escalation.priority,
            category: escalation.category,
            ..event(EventKind::Escalated)
        });
    }
    if let Handler::Agent(agent) = after.handler
        && before.handler != after.handler
    {
        events.push(ConversationEvent { agent_id: Some(agent), ..event(EventKind::Assigned) });
    }
    // The store keeps only a conversation's first reply by a person.
    if let Some(reply) = write.outbound.iter().find(|m| m.sender == Sender::Agent && !m.internal) {
        let waiting_since = after.escalation.as_ref().map(|e| e.at).filter(|at| *at <= now).unwrap_or(after.created_at);
        events.push(ConversationEvent {
            agent_id: reply.agent_id,
            wait_ms: Some((now - waiting_since).num_milliseconds()),
            reason: sla_outcome(before.first_reply_due_at, now),
            ..event(EventKind::FirstReply)
        });
    }
    let finished = |s: Status| matches!(s, Status::Resolved | Status::Confirmed | Status::Closed | Status::Rejected);
    if after.status == Status::Resolved && !matches!(before.status, Status::Resolved | Status::Confirmed) {
        let agent = match (after.handler, before.handler) {
            (Handler::Agent(agent), _) | (_, Handler::Agent(agent)) => Some(agent),
            _ => None,
        };
        events.push(ConversationEvent {
            agent_id: agent,
            wait_ms: Some((now - after.created_at).num_milliseconds()),
            reason: sla_outcome(before.resolution_due_at, now),
            ..event(EventKind::Resolved)
        });
    }
    if finished(before.status) && !finished(after.status) {
        events.push(event(EventKind::Reopened));
    }
    if after.status == Status::Closed && before.status != Status::Closed {
        events.push(event(EventKind::Closed));
    }
    events
}

/// Whether what was due (under an SLA) happened in time: `sla_met` or `sla_missed`.
fn sla_outcome(due: Option<Timestamp>, now: Timestamp) -> Option<String> {
    due.map(|due| if now <= due { "sla_met" } else { "sla_missed" }.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_models::{AgentId, ContactId, Channel, Escalation, EscalationReason, EscalationRecord, Message, MessageId, Priority};

    fn at(minutes: i64) -> Timestamp {
        chrono::DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap()
    }

    fn kinds(events: &[ConversationEvent]) -> Vec<EventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    fn reply(conversation: &Conversation, agent: AgentId, now: Timestamp) -> Message {
        Message {
            id: MessageId::new(),
            seq: 0,
            conversation_id: conversation.id,
            contact_id: conversation.contact_id,
            channel: conversation.channel,
            sender: Sender::Agent,
            agent_id: Some(agent),
            text: "Hello".into(),
            internal: false,
            attachments: Vec::new(),
            quick_replies: Vec::new(),
            classification: None,
            external_id: None,
            created_at: now,
            delivery: None,
        }
    }

    #[test]
    fn a_new_conversation_is_created_and_an_agent_started_one_is_assigned_too() {
        let new = Conversation::new(ContactId::new(), Channel::Telegram, at(0));
        let write = StepWrite { conversation: Some(new.clone()), ..StepWrite::default() }.with_history(None, at(0));
        assert_eq!(kinds(&write.events), [EventKind::Created]);
        assert_eq!(write.events[0].channel, Channel::Telegram);
        let agent = AgentId::new();
        let started = Conversation { handler: Handler::Agent(agent), ..new };
        let write = StepWrite { conversation: Some(started.clone()), outbound: vec![reply(&started, agent, at(0))], ..StepWrite::default() }
            .with_history(None, at(0));
        assert_eq!(kinds(&write.events), [EventKind::Created, EventKind::Assigned], "an agent writing first is no first reply to a waiting customer");
        assert!(StepWrite::default().with_history(None, at(0)).events.is_empty());
    }

    #[test]
    fn escalation_assignment_first_reply_resolution_and_reopening_are_events_with_their_waits() {
        let bot = Conversation::new(ContactId::new(), Channel::WebChat, at(0));
        let reason = EscalationReason::HumanRequested;
        let queued = Conversation {
            handler: Handler::Queue,
            priority: Some(Priority::High),
            escalation: Some(Escalation { reason: reason.clone(), summary: String::new(), at: at(2) }),
            ..bot.clone()
        };
        let record = EscalationRecord { conversation_id: bot.id, at: at(2), reason, confidence: None, priority: Some(Priority::High), category: None };
        let write = StepWrite { conversation: Some(queued.clone()), escalation: Some(record), ..StepWrite::default() }.with_history(Some(&bot), at(2));
        assert_eq!(kinds(&write.events), [EventKind::Escalated]);
        assert_eq!(write.events[0].reason.as_deref(), Some("human_requested"));
        assert_eq!(write.events[0].priority, Some(Priority::High));

        let agent = AgentId::new();
        let queued = Conversation { first_reply_due_at: Some(at(5)), resolution_due_at: Some(at(60)), ..queued };
        let taken = Conversation { handler: Handler::Agent(agent), status: Status::InProgress, first_reply_due_at: None, ..queued.clone() };
        let write = StepWrite { conversation: Some(taken.clone()), outbound: vec![reply(&taken, agent, at(7))], ..StepWrite::default() }
            .with_history(Some(&queued), at(7));
        assert_eq!(kinds(&write.events), [EventKind::Assigned, EventKind::FirstReply]);
        assert_eq!(write.events[1].wait_ms, Some(5 * 60_000), "waited from the escalation");
        assert_eq!(write.events[1].agent_id, Some(agent));
        assert_eq!(write.events[1].reason.as_deref(), Some("sla_missed"), "due at 5 minutes, answered at 7");

        let resolved = Conversation { status: Status::Resolved, ..taken.clone() };
        let write = StepWrite { conversation: Some(resolved.clone()), ..StepWrite::default() }.with_history(Some(&taken), at(30));
        assert_eq!(kinds(&write.events), [EventKind::Resolved]);
        assert_eq!((write.events[0].agent_id, write.events[0].wait_ms), (Some(agent), Some(30 * 60_000)));
        assert_eq!(write.events[0].reason.as_deref(), Some("sla_met"), "due at 60 minutes, resolved at 30");

        let reopened = Conversation { status: Status::Open, handler: Handler::Queue, ..resolved.clone() };
        let write = StepWrite { conversation: Some(reopened.clone()), ..StepWrite::default() }.with_history(Some(&resolved), at(40));
        assert_eq!(kinds(&write.events), [EventKind::Reopened]);
        let closed = Conversation { status: Status::Closed, ..resolved.clone() };
        let write = StepWrite { conversation: Some(closed), ..StepWrite::default() }.with_history(Some(&resolved), at(50));
        assert_eq!(kinds(&write.events), [EventKind::Closed]);
        let unchanged = StepWrite { conversation: None, ..StepWrite::default() }.with_history(Some(&taken), at(51));
        assert!(unchanged.events.is_empty());
    }
}
