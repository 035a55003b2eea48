//! The one integration-test binary: the public API of each crate, and the whole server on
//! port 0 driven by real clients.

mod abuse;
mod api_description;
mod assignment;
mod bot;
mod browser;
mod cli;
mod closing;
mod delivery;
mod deployment;
mod documents;
mod discord;
mod email;
mod faults;
mod fuzzing;
mod identities;
mod migrations;
mod nodes;
mod operations;
mod nlp;
mod panel;
mod reports;
mod store;
mod telegram;
mod timers;
mod transcripts;
mod webchat;
mod webhooks;
