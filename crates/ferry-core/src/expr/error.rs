//! Why an expression did not compile or evaluate. The messages are those `ferry check`,
//! `ferry explain` and audit details have always shown.

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4_096;

/// An expression that failed to compile or to evaluate to the type its place needs.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The source is longer than [`MAX_EXPRESSION_LEN`].
    #[error("expression longer than {MAX_EXPRESSION_LEN} bytes")]
    TooLong,
    /// The source does not parse; the first line of the parser's message.
    #[error("does not compile: {0}")]
    Syntax(String),
    /// A free variable the place of the expression does not offer.
    #[error("unknown variable '{name}' (available: {available})")]
    UnknownVariable {
        /// The variable as written.
        name: String,
        /// The variables offered, comma-separated.
        available: String,
    },
    /// A pattern given to `matches()` is not a valid regex.
    #[error("invalid regex: {0}")]
    InvalidRegex(#[from] regex::Error),
    /// Evaluation failed (a missing attribute, a function error, …).
    #[error("{0}")]
    Execution(#[from] cel::ExecutionError),
    /// The value is not of the type the place needs.
    #[error("expected {expected}, got {got}")]
    WrongType {
        /// What the place needs, with its article ("a bool").
        expected: &'static str,
        /// The CEL type of the value.
        got: String,
    },
    /// A list holding something other than strings.
    #[error("expected a list of strings, found {0}")]
    NotAStringList(String),
    /// A literal argument of `ip()` or `cidr()` that is not one.
    #[error("invalid {function}() literal '{literal}'")]
    InvalidLiteral {
        /// `ip` or `cidr`.
        function: &'static str,
        /// The literal as written.
        literal: String,
    },
    /// A string expression that evaluated to "".
    #[error("evaluated to an empty string")]
    EmptyString,
}
