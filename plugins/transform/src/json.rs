//! Edits of JSON values by dotted path. A path walks through objects by
//! key and through arrays element by element, so `items.secret` reaches
//! `secret` in every object of the `items` array; a top-level array is
//! walked the same way.

use serde_json::Value;

/// Removes the field at `path`, wherever it exists.
pub fn remove(value: &mut Value, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    edit(value, &parts, &mut |obj, last| {
        obj.remove(last);
    });
}

/// Renames the field at `from` (a dotted path) to the key `to`, in place.
pub fn rename(value: &mut Value, from: &str, to: &str) {
    let parts: Vec<&str> = from.split('.').collect();
    edit(value, &parts, &mut |obj, last| {
        if let Some(v) = obj.remove(last) {
            obj.insert(to.to_owned(), v);
        }
    });
}

/// Keeps only the listed top-level fields (of each object in a top-level array).
pub fn keep(value: &mut Value, fields: &[String]) {
    match value {
        Value::Object(obj) => obj.retain(|k, _| fields.iter().any(|f| f == k)),
        Value::Array(items) => items.iter_mut().for_each(|v| keep(v, fields)),
        _ => {}
    }
}

/// Walks to the objects that hold the path's last key and applies `f`.
fn edit(
    value: &mut Value,
    path: &[&str],
    f: &mut dyn FnMut(&mut serde_json::Map<String, Value>, &str),
) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| edit(v, path, f)),
        Value::Object(obj) => match path {
            [] => {}
            [last] => f(obj, last),
            [first, rest @ ..] => {
                if let Some(child) = obj.get_mut(*first) {
                    edit(child, rest, f);
                }
            }
        },
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn removes_through_objects_and_arrays() {
        let mut v = json!({"internal": 1, "meta": {"secret": 2, "page": 1}, "items": [{"secret": 3, "id": 1}, {"id": 2}]});
        remove(&mut v, "internal");
        remove(&mut v, "meta.secret");
        remove(&mut v, "items.secret");
        remove(&mut v, "absent.path");
        assert_eq!(
            v,
            json!({"meta": {"page": 1}, "items": [{"id": 1}, {"id": 2}]})
        );
    }

    #[test]
    fn renames_and_keeps() {
        let mut v = json!([{"fullName": "Ada", "id": 1, "pw": "x"}]);
        rename(&mut v, "fullName", "name");
        keep(&mut v, &["id".into(), "name".into()]);
        assert_eq!(v, json!([{"name": "Ada", "id": 1}]));
    }
}
