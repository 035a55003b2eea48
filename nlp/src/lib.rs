//! Implementations of the core's `Classifier` port. For now the keyword classifier, which needs
//! no model; the sentence-encoder backend plugs in beside it.

mod keyword;

pub use keyword::KeywordClassifier;
