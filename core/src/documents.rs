//! Documents customers send for review: which types there are, and what the customer is told
//! of a decision (`[documents]`).

/// The `[documents]` section of the configuration.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentPolicy {
    /// Every file a customer sends waits for review as a document (else files are only kept).
    pub review_files: bool,
    /// The document types reviewers choose from; a file arrives as the last one until typed.
    pub types: Vec<String>,
    /// Said when a document the bot asked for arrives; `{type}` is its type in words.
    pub received: String,
    /// Told when a document is approved; `{type}` is its type in words.
    pub approved_notice: String,
    /// Told when a document is rejected; `{type}` and `{note}`, the reviewer's reason.
    pub rejected_notice: String,
    /// Resolve a conversation (asking the customer to confirm) once every document in it is
    /// approved.
    pub resolve_when_approved: bool,
    /// `received`, `approved_notice` and `rejected_notice` in other languages, by ISO 639-1
    /// code (`[documents.languages.de]`).
    pub languages: crate::closing::Languages,
}

impl Default for DocumentPolicy {
    fn default() -> Self {
        Self {
            review_files: true,
            types: ["proof_of_payment", "id", "invoice", "other"].map(String::from).to_vec(),
            received: "Thanks, we received your {type}. The team will review it and tell you here.".into(),
            approved_notice: "Your {type} was approved.".into(),
            rejected_notice: "Your {type} was rejected: {note}. Please send a new one here.".into(),
            resolve_when_approved: false,
            languages: crate::closing::Languages::new(),
        }
    }
}

impl DocumentPolicy {
    /// The type a file gets until a reviewer chooses one.
    pub fn unsorted(&self) -> &str {
        self.types.last().map_or("other", String::as_str)
    }

    /// The first problem with these settings, as (key, what is wrong).
    pub fn problem(&self) -> Option<(String, String)> {
        if self.types.is_empty() {
            return Some(("documents.types".into(), "lists no type; keep at least one, such as \"other\"".into()));
        }
        if let Some(bad) = self.types.iter().find(|t| t.is_empty() || t.len() > 40 || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')) {
            return Some(("documents.types".into(), format!("`{bad}` must be 1-40 characters of a-z, 0-9 and _")));
        }
        crate::closing::check_languages("documents", &self.languages, &["received", "approved_notice", "rejected_notice"])
    }

    /// The texts to use with a customer writing in `language`.
    pub fn in_language(&self, language: Option<&str>) -> std::borrow::Cow<'_, DocumentPolicy> {
        let Some(texts) = language.and_then(|code| self.languages.get(code)) else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut localized = self.clone();
        for (name, text) in texts {
            let field = match name.as_str() {
                "received" => &mut localized.received,
                "approved_notice" => &mut localized.approved_notice,
                "rejected_notice" => &mut localized.rejected_notice,
                _ => continue,
            };
            field.clone_from(text);
        }
        std::borrow::Cow::Owned(localized)
    }
}

/// A document type in words: "proof_of_payment" is "proof of payment", "id" is "ID".
pub fn type_label(kind: &str) -> String {
    match kind {
        "id" => "ID".into(),
        other => other.replace('_', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_read_as_words_and_bad_type_names_are_refused() {
        assert_eq!(type_label("proof_of_payment"), "proof of payment");
        assert_eq!(type_label("id"), "ID");
        let policy = DocumentPolicy::default();
        assert_eq!((policy.unsorted(), policy.problem()), ("other", None));
        let bad = DocumentPolicy { types: vec!["Proof of payment".into()], ..DocumentPolicy::default() };
        assert!(bad.problem().unwrap().1.contains("a-z, 0-9 and _"));
        assert!(DocumentPolicy { types: Vec::new(), ..DocumentPolicy::default() }.problem().is_some());
    }
}
