//! The conversation core: the pure state machine (`step`), the policy it applies, the ports it
//! drives, and `Engine`, the shell that loads, decides, persists and publishes.
//! Knows nothing of channels' protocols, HTML or SQL, and of HTTP only the client-address rules
//! (`TrustedProxies`) and rate limits both HTTP crates apply.

mod arrival;
pub mod assignment;
pub mod attachments;
mod client_address;
pub mod closing;
pub mod documents;
mod engine;
mod events;
mod gauge;
pub mod health;
mod history;
pub mod hours;
pub mod identity;
mod outbox;
pub mod policy;
pub mod ports;
mod ratelimit;
pub mod reports;
pub mod schedule;
pub mod search;
pub mod sla;
pub mod timers;
pub mod webhooks;
mod step;
mod summary;

pub use arrival::ArrivalTicket;
pub use assignment::pick_agent;
pub use client_address::TrustedProxies;
pub use ratelimit::RateLimiter;
pub use engine::{AgentEdit, FailedAttempts, InboundReplay, WebhookEdit, Engine, EngineError, EngineLimits, HandleOutcome, IntentsEdit, Received, TicketChange, TIMER_BATCH, UNAVAILABLE, clipped};
pub use events::EventBus;
pub use gauge::{CommitLag, OpenGauge};
pub use health::{ChannelState, HealthBoard};
pub use outbox::OutboxWorker;
pub use policy::{Policy, QueueView};
pub use ports::{
    Assignee, Committed, ConversationFilter, ConversationSummary, CustomerCursor, CustomerFilter, CustomerSummary, DashboardCounts, ListCursor, ListOrder, ListTotal, NoticeWrite, SessionRecord, StepWrite,
};
pub use step::{Decision, Feedback, Input, Notice, Recipient, Reply, ReplyBody, step};
pub use summary::{TRANSCRIPT_MESSAGES, extractive_summary, transcript};
