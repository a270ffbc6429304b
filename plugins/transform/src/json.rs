//! Edits of JSON documents by dotted path. A path walks through objects by
//! key and through arrays element by element, so `items.secret` reaches
//! `secret` in every object of the `items` array; a top-level array is
//! walked the same way.
//!
//! The document is checked whole, but only the objects and arrays a rule
//! walks through are taken apart: everything else is copied through as the
//! upstream wrote it. A response edit costs about one pass over the body,
//! not a tree of allocations, and untouched parts keep their key order and
//! formatting.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A JSON value, taken apart only where an edit needed to look inside.
pub enum Node<'a> {
    /// Untouched: the upstream's text.
    Raw(&'a RawValue),
    /// The members, and the object's text they were parsed from.
    Object(Members<'a>, &'a str),
    Array(Vec<Node<'a>>),
}

/// An object's members in the order written.
pub type Members<'a> = Vec<(Key<'a>, Node<'a>)>;

/// An object key: borrowed from the body unless it held escapes.
#[derive(serde::Deserialize)]
pub struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl Key<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match &self.0 {
            // Written without escapes in a document the parser accepted, so
            // it needs none (no quote, backslash or control character):
            // copied as it was, not scanned again.
            Cow::Borrowed(key) => {
                out.push(b'"');
                out.extend_from_slice(key.as_bytes());
                out.push(b'"');
            }
            // Writing a str into a Vec cannot fail.
            Cow::Owned(key) => {
                let _ = serde_json::to_writer(&mut *out, key);
            }
        }
    }
}

impl<'a> Node<'a> {
    /// The whole body, if it is one valid JSON value.
    pub fn parse(body: &'a [u8]) -> Option<Node<'a>> {
        // UTF-8 is checked once, for the whole body; read from a str,
        // serde_json does not check each value it leaves raw again.
        Node::parse_str(std::str::from_utf8(body).ok()?)
    }

    fn parse_str(text: &'a str) -> Option<Node<'a>> {
        // An object or array is opened as it is checked: one pass, not two.
        match text.bytes().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => serde_json::from_str::<MembersOf<'a>>(text)
                .ok()
                .map(|m| Node::Object(m.0, text)),
            Some(b'[') => serde_json::from_str::<Vec<&'a RawValue>>(text)
                .ok()
                .map(|items| Node::Array(items.into_iter().map(Node::Raw).collect())),
            _ => serde_json::from_str::<&RawValue>(text).ok().map(Node::Raw),
        }
    }

    /// Turns a raw object or array into its members; scalars stay raw
    /// (and are not looked at again).
    fn open(&mut self) {
        if let Node::Raw(raw) = self
            && matches!(raw.get().as_bytes().first(), Some(b'{' | b'['))
            && let Some(node) = Node::parse_str(raw.get())
        {
            *self = node;
        }
    }

    /// The document as JSON text.
    pub fn to_vec(&self, capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(capacity);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Node::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
            Node::Object(members, text) => {
                out.push(b'{');
                // Untouched members next to one another in the upstream's
                // text are copied as one piece, separators and all.
                let mut run: Option<(usize, usize)> = None;
                for (i, (key, value)) in members.iter().enumerate() {
                    let span = member_span(text, key, value);
                    if let (Some((start, end)), Some((from, to))) = (run, span)
                        && text.get(end..from).is_some_and(is_separator)
                    {
                        run = Some((start, to));
                        continue;
                    }
                    if let Some((start, end)) = run.take() {
                        out.extend_from_slice(&text.as_bytes()[start..end]);
                    }
                    if i > 0 {
                        out.push(b',');
                    }
                    match span {
                        Some(span) => run = Some(span),
                        None => {
                            key.write(out);
                            out.push(b':');
                            value.write(out);
                        }
                    }
                }
                if let Some((start, end)) = run {
                    out.extend_from_slice(&text.as_bytes()[start..end]);
                }
                out.push(b'}');
            }
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
        }
    }
}

/// Where `inner` lies in `text`, if it is a part of it.
fn offset_in(text: &str, inner: &str) -> Option<usize> {
    let at = (inner.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    (at + inner.len() <= text.len()).then_some(at)
}

/// The text of an untouched member, `"key": value` as the upstream wrote
/// it: its key borrowed from `text` and its value raw.
fn member_span(text: &str, key: &Key<'_>, value: &Node<'_>) -> Option<(usize, usize)> {
    let (Cow::Borrowed(key), Node::Raw(raw)) = (&key.0, value) else {
        return None;
    };
    // The key's opening quote is the byte before it.
    let start = offset_in(text, key)?.checked_sub(1)?;
    let end = offset_in(text, raw.get())? + raw.get().len();
    (start < end && text.as_bytes()[start] == b'"').then_some((start, end))
}

/// What lies between two members the upstream wrote next to each other:
/// one comma, and JSON's whitespace around it.
fn is_separator(gap: &str) -> bool {
    let mut commas = 0;
    gap.bytes().all(|b| match b {
        b',' => {
            commas += 1;
            commas == 1
        }
        b' ' | b'\t' | b'\n' | b'\r' => true,
        _ => false,
    }) && commas == 1
}

/// A dotted field path (`meta.secret`), split once when the config is read.
pub struct Path(Vec<String>);

impl Path {
    pub fn new(dotted: &str) -> Path {
        Path(dotted.split('.').map(str::to_owned).collect())
    }
}

/// Removes the field at `path`, wherever it exists.
pub fn remove(node: &mut Node<'_>, path: &Path) {
    edit(node, &path.0, &mut |members, last| {
        members.retain(|(k, _)| k.0 != last);
    });
}

/// Renames the field at `from` to the key `to`, in place. A field already
/// named `to` is replaced, as is any repeat of `from`.
pub fn rename(node: &mut Node<'_>, from: &Path, to: &str) {
    edit(node, &from.0, &mut |members, last| {
        // The last of repeated keys is the one a JSON reader keeps.
        let Some(at) = members.iter().rposition(|(k, _)| k.0 == last) else {
            return;
        };
        members[at].0 = Key(Cow::Owned(to.to_owned()));
        let mut i = 0;
        members.retain(|(k, _)| {
            let keep = i == at || (k.0 != last && k.0 != to);
            i += 1;
            keep
        });
    });
}

/// Keeps only the listed top-level fields (of each object in a top-level array).
pub fn keep(node: &mut Node<'_>, fields: &[String]) {
    node.open();
    match node {
        Node::Object(members, _) => members.retain(|(k, _)| fields.iter().any(|f| *f == k.0)),
        Node::Array(items) => items.iter_mut().for_each(|v| keep(v, fields)),
        Node::Raw(_) => {}
    }
}

/// Walks to the objects that hold the path's last key and applies `f`.
fn edit(node: &mut Node<'_>, path: &[String], f: &mut dyn FnMut(&mut Members<'_>, &str)) {
    node.open();
    match node {
        Node::Array(items) => items.iter_mut().for_each(|v| edit(v, path, f)),
        Node::Object(members, _) => match path {
            [] => {}
            [last] => f(members, last),
            [first, rest @ ..] => {
                for (_, child) in members.iter_mut().filter(|(k, _)| k.0 == **first) {
                    edit(child, rest, f);
                }
            }
        },
        Node::Raw(_) => {}
    }
}

/// An object's members in the order written, values left raw.
struct MembersOf<'a>(Members<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for MembersOf<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MembersOf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    members.push((key, Node::Raw(value)));
                }
                Ok(MembersOf(members))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn edited(input: &str, f: impl FnOnce(&mut Node<'_>)) -> Value {
        let mut node = Node::parse(input.as_bytes()).expect("valid JSON");
        f(&mut node);
        serde_json::from_slice(&node.to_vec(input.len())).expect("the output is JSON")
    }

    #[test]
    fn removes_through_objects_and_arrays() {
        let v = edited(
            r#"{"internal": 1, "meta": {"secret": 2, "page": 1}, "items": [{"secret": 3, "id": 1}, {"id": 2}]}"#,
            |n| {
                remove(n, &Path::new("internal"));
                remove(n, &Path::new("meta.secret"));
                remove(n, &Path::new("items.secret"));
                remove(n, &Path::new("absent.path"));
                remove(n, &Path::new("meta.page.deeper"));
            },
        );
        assert_eq!(
            v,
            json!({"meta": {"page": 1}, "items": [{"id": 1}, {"id": 2}]})
        );
    }

    #[test]
    fn renames_and_keeps() {
        let v = edited(r#"[{"fullName": "Ada", "id": 1, "pw": "x"}, 7]"#, |n| {
            rename(n, &Path::new("fullName"), "name");
            keep(n, &["id".into(), "name".into()]);
        });
        assert_eq!(v, json!([{"name": "Ada", "id": 1}, 7]));
    }

    #[test]
    fn rename_replaces_an_existing_key_and_keeps_the_place() {
        let mut node =
            Node::parse(br#"{"a":1,"name":"old","b":2,"fullName":"Ada"}"#).expect("JSON");
        rename(&mut node, &Path::new("fullName"), "name");
        assert_eq!(node.to_vec(0), br#"{"a":1,"b":2,"name":"Ada"}"#);
    }

    #[test]
    fn untouched_parts_are_copied_as_written() {
        let input = r#"{ "b" : [1, 2] , "a":{"x" : "\u00e9"},"drop":true }"#;
        let mut node = Node::parse(input.as_bytes()).expect("JSON");
        remove(&mut node, &Path::new("drop"));
        assert_eq!(
            String::from_utf8(node.to_vec(0)).expect("utf-8"),
            r#"{"b" : [1, 2] , "a":{"x" : "\u00e9"}}"#
        );
    }

    #[test]
    fn a_run_of_untouched_members_ends_where_one_was_edited() {
        let input = r#"{"a": 1, "b" : [1, 2], "drop": 3, "c":"x\ny", "old": {"e": 1}, "d" :null}"#;
        let mut node = Node::parse(input.as_bytes()).expect("JSON");
        remove(&mut node, &Path::new("drop"));
        rename(&mut node, &Path::new("old"), "new");
        let text = String::from_utf8(node.to_vec(0)).expect("utf-8");
        assert_eq!(
            text,
            r#"{"a": 1, "b" : [1, 2],"c":"x\ny","new":{"e": 1},"d" :null}"#
        );
        let v: Value = serde_json::from_str(&text).expect("the output is JSON");
        assert_eq!(
            v,
            json!({"a": 1, "b": [1, 2], "c": "x\ny", "new": {"e": 1}, "d": null})
        );
    }

    #[test]
    fn separators_are_one_comma_and_whitespace() {
        for gap in [",", " , ", ",\n\t ", "\r\n,"] {
            assert!(is_separator(gap), "{gap:?}");
        }
        for gap in ["", " ", ",,", ", \"x\": 1,", ":"] {
            assert!(!is_separator(gap), "{gap:?}");
        }
    }

    #[test]
    fn a_removal_inside_a_member_ends_the_run_around_it() {
        let input = r#"{"a":1,"meta":{"secret":2,"page":1},"z":3}"#;
        let mut node = Node::parse(input.as_bytes()).expect("JSON");
        remove(&mut node, &Path::new("meta.secret"));
        assert_eq!(
            String::from_utf8(node.to_vec(0)).expect("utf-8"),
            r#"{"a":1,"meta":{"page":1},"z":3}"#
        );
    }

    #[test]
    fn escaped_keys_are_matched_and_written_back_escaped() {
        let v = edited(r#"{"tab\tkey": 1, "qu\"ote": 2, "caf\u00e9": 3}"#, |n| {
            remove(n, &Path::new("tab\tkey"));
            rename(n, &Path::new("café"), "cafe");
        });
        assert_eq!(v, json!({"qu\"ote": 2, "cafe": 3}));
    }

    #[test]
    fn keys_are_written_back_as_valid_json() {
        let mut node =
            Node::parse(br#"{"plain":1,"caf\u00e9":2,"new\nline":3,"x":4}"#).expect("JSON");
        rename(&mut node, &Path::new("x"), "say \"hi\"");
        remove(&mut node, &Path::new("nothing"));
        assert_eq!(
            String::from_utf8(node.to_vec(0)).expect("utf-8"),
            r#"{"plain":1,"café":2,"new\nline":3,"say \"hi\"":4}"#
        );
    }

    #[test]
    fn invalid_documents_are_refused_whole() {
        assert!(Node::parse(br#"{"a": 1"#).is_none());
        assert!(Node::parse(br#"{"a": [1,}"#).is_none());
        assert!(Node::parse(br#"{"a": 1} trailing"#).is_none());
        assert!(Node::parse(b"").is_none());
        assert!(Node::parse(b"{\"a\": \"\xff\"}").is_none());
    }
}
