//! The plugin-side error type.

use std::fmt;

/// An error from a plugin: refuses the config in [`Plugin::new`](crate::Plugin::new),
/// or fails the request (by the entry's `on_error` policy) in a phase.
///
/// Any `std::error::Error` converts into it, so `?` works; make one from a
/// message with [`Error::msg`].
///
/// ```
/// use gatehouse_sdk::Error;
/// let e = Error::msg("limit must be more than 0");
/// assert_eq!(e.to_string(), "limit must be more than 0");
/// ```
pub struct Error(pub(crate) String);

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error(message.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Error {
        Error(e.to_string())
    }
}
