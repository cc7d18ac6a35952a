//! Why a configuration value is refused: one error type shared by the configuration
//! checks (`config`) and the timing rules (`timing`), apart from both so neither
//! depends on the other for it.

/// A configuration or timing value that breaks one of the rules checked in `config` or
/// `timing`; the message names the value and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
