//! Header edits the gateway makes itself: see [`Edits`].

use crate::__bindings::gatehouse::plugin::edits::{self as wit, Phase};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Edit {
    Set(Phase, String, String),
    Remove(Phase, String),
}

/// Header edits the gateway makes itself on every request or response, at
/// the plugin's place in the chain, without calling the plugin: for edits
/// the config fixes, such as a constant header set or a header removed.
/// Returned once by [`Plugin::edits`](crate::Plugin::edits) when the
/// instance is created; a bad header name or value refuses the config then.
///
/// In each phase the edits are made in the order given, just before the
/// plugin's own hook for that phase, or in its place when the plugin asks
/// for none ([`Hooks`](crate::Hooks)): a plugin whose request phase is only
/// such edits sets `ON_REQUEST` to false and costs no call per request.
///
/// ```
/// use gatehouse_sdk::Edits;
///
/// let edits = Edits::new()
///     .remove_request_header("cookie")
///     .set_request_header("x-internal-request", "true")
///     .set_response_header("x-served-by", "gatehouse");
/// assert!(!edits.is_empty());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edits(Vec<Edit>);

impl Edits {
    /// No edits.
    ///
    /// ```
    /// assert!(gatehouse_sdk::Edits::new().is_empty());
    /// ```
    pub fn new() -> Edits {
        Edits::default()
    }

    /// Whether there are none.
    ///
    /// ```
    /// let edits = gatehouse_sdk::Edits::new().remove_response_header("server");
    /// assert!(!edits.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets a header of the request on its way upstream, replacing any
    /// values it had.
    ///
    /// ```
    /// let edits = gatehouse_sdk::Edits::new().set_request_header("x-tenant", "acme");
    /// ```
    pub fn set_request_header(self, name: impl Into<String>, value: impl Into<String>) -> Edits {
        self.with(Edit::Set(Phase::Request, name.into(), value.into()))
    }

    /// Removes every value of a request header.
    ///
    /// ```
    /// let edits = gatehouse_sdk::Edits::new().remove_request_header("cookie");
    /// ```
    pub fn remove_request_header(self, name: impl Into<String>) -> Edits {
        self.with(Edit::Remove(Phase::Request, name.into()))
    }

    /// Sets a header of the response on its way to the client, replacing
    /// any values it had.
    ///
    /// ```
    /// let edits = gatehouse_sdk::Edits::new().set_response_header("x-served-by", "gatehouse");
    /// ```
    pub fn set_response_header(self, name: impl Into<String>, value: impl Into<String>) -> Edits {
        self.with(Edit::Set(Phase::Response, name.into(), value.into()))
    }

    /// Removes every value of a response header.
    ///
    /// ```
    /// let edits = gatehouse_sdk::Edits::new().remove_response_header("x-powered-by");
    /// ```
    pub fn remove_response_header(self, name: impl Into<String>) -> Edits {
        self.with(Edit::Remove(Phase::Response, name.into()))
    }

    fn with(mut self, edit: Edit) -> Edits {
        self.0.push(edit);
        self
    }

    /// Hands the edits to the host, from `init`.
    pub(crate) fn declare(&self) -> Result<(), String> {
        for edit in &self.0 {
            match edit {
                Edit::Set(phase, name, value) => wit::set_header(*phase, name, value)?,
                Edit::Remove(phase, name) => wit::remove_header(*phase, name)?,
            }
        }
        Ok(())
    }
}
