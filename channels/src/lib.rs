//! Channel adapters: external events become `Inbound`, outbound messages become API calls.
//! The only crate that imports a channel SDK.

pub mod discord;
pub mod email;
pub mod telegram;
pub mod webchat;
