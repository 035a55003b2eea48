use serde::{Deserialize, Serialize};

/// A file a customer or agent sent, stored under a generated key outside any web root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The blob's generated storage key; never derived from the sender's file name.
    pub key: String,
    /// The sender's name for the file, for display only.
    pub file_name: String,
    /// Decided from the file's content (magic bytes), not from what the sender claimed.
    pub content_type: String,
    pub size: u64,
    /// The channel's raw original kept beside a message (a whole email), not a file the
    /// customer sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original: bool,
}

impl Attachment {
    pub fn is_image(&self) -> bool {
        self.content_type.starts_with("image/")
    }
}
