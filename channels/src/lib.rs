//! Channel adapters: external events become `Inbound`, outbound messages become API calls.
//! The only crate that imports a channel SDK, and the home of the channels' own HTTP routes:
//! the web-chat widget's endpoints and Telegram's webhook.

pub mod discord;
pub mod email;
mod http_error;
pub mod telegram;
pub mod webchat;

use switchboard_core::ports::{BlobStore, DeliveryError};
use switchboard_models::Attachment;

/// An attachment's bytes for sending; a storage hiccup is a retryable delivery failure.
pub(crate) async fn attachment_bytes(blobs: &dyn BlobStore, attachment: &Attachment) -> Result<Vec<u8>, DeliveryError> {
    blobs.get(&attachment.key).await.map_err(|e| match e {
        switchboard_core::ports::StoreError::Missing(_) => DeliveryError::Permanent { reason: format!("attachment {}: {e}", attachment.file_name) },
        e => DeliveryError::Retry { reason: format!("reading attachment {}: {e}", attachment.file_name), after: None },
    })
}
