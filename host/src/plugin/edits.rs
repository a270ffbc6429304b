//! Header edits a plugin declares at `init` (contract 0.1.5, `edits`) and
//! the host makes itself on every request or response, at the plugin's
//! place in the chain: a constant header set or removed costs a header map
//! operation instead of an entry into the plugin and a host call from it.

use super::bindings::gatehouse::plugin::edits::{self, Phase};
use super::exchange::{parse_header, parse_name};
use super::host::StoreData;
use http::{HeaderMap, HeaderName, HeaderValue};

/// One edit, checked when it was declared.
#[derive(Debug)]
enum Edit {
    Set(HeaderName, HeaderValue),
    Remove(HeaderName),
}

/// One phase's edits, in the order declared.
#[derive(Debug, Default)]
pub struct HeaderEdits(Vec<Edit>);

impl HeaderEdits {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        for edit in &self.0 {
            match edit {
                Edit::Set(name, value) => {
                    headers.insert(name.clone(), value.clone());
                }
                Edit::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }
}

/// What an entry's plugin declared, for each phase.
#[derive(Debug, Default)]
pub struct Declared {
    pub request: HeaderEdits,
    pub response: HeaderEdits,
}

impl Declared {
    fn phase(&mut self, phase: Phase) -> &mut Vec<Edit> {
        match phase {
            Phase::Request => &mut self.request.0,
            Phase::Response => &mut self.response.0,
        }
    }
}

impl StoreData {
    /// The edits being declared: only while `init` runs.
    fn declaring(&mut self, phase: Phase) -> Result<&mut Vec<Edit>, String> {
        match &mut self.declared {
            Some(declared) => Ok(declared.phase(phase)),
            None => Err("header edits are declared in `init` only".into()),
        }
    }
}

impl edits::Host for StoreData {
    fn set_header(&mut self, phase: Phase, name: String, value: String) -> Result<(), String> {
        let edits = self.declaring(phase)?;
        let (name, value) = parse_header(&name, value)?;
        edits.push(Edit::Set(name, value));
        Ok(())
    }

    fn remove_header(&mut self, phase: Phase, name: String) -> Result<(), String> {
        let edits = self.declaring(phase)?;
        edits.push(Edit::Remove(parse_name(&name)?));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_apply_in_the_order_declared() {
        let mut d = Declared::default();
        let set = |n: &str, v: &str| Edit::Set(n.parse().unwrap(), v.parse().unwrap());
        d.phase(Phase::Request).extend([
            set("x-a", "1"),
            Edit::Remove("x-a".parse().unwrap()),
            set("x-b", "2"),
            set("x-b", "3"),
            Edit::Remove("cookie".parse().unwrap()),
        ]);
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        h.insert("x-keep", "k".parse().unwrap());
        d.request.apply(&mut h);
        assert!(d.response.is_empty());
        assert_eq!(h.get("x-a"), None);
        assert_eq!(h.get_all("x-b").iter().collect::<Vec<_>>(), ["3"]);
        assert_eq!(h.get("cookie"), None);
        assert_eq!(h.get("x-keep").unwrap(), "k");
        assert_eq!(h.len(), 2);
    }
}
