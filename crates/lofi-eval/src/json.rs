//! JSON plumbing shared by the readers and writers.
//!
//! The ActivityNet formats key everything by video id in JSON objects. Python keeps an object's
//! keys in file order, and the official tool's tie handling depends on that order, so we read
//! objects as ordered lists of entries and reject a repeated key (JSON readers disagree on which
//! copy wins). Files are written to a temporary name beside the target and renamed into place, so
//! an interrupted run never leaves half a file under the real name.

use crate::error::{EvalError, Result};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

/// A JSON object read as its entries in file order; a repeated key is an error.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = OrderedMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object keyed by video id")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value_seed(Labelled {
                        key: &key,
                        value: PhantomData::<V>,
                    })?;
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!(
                            "video {key} appears twice in the same object"
                        )));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }

        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}

impl<V: Serialize> Serialize for OrderedMap<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Deserializes a value and prefixes any error with the video id it belongs to.
pub(crate) struct Labelled<'k, V> {
    pub key: &'k str,
    pub value: PhantomData<V>,
}

impl<'de, V: Deserialize<'de>> DeserializeSeed<'de> for Labelled<'_, V> {
    type Value = V;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<V, D::Error> {
        V::deserialize(deserializer)
            .map_err(|e| de::Error::custom(format_args!("video {}: {e}", self.key)))
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| EvalError::io(path, e))
}

/// Turns a serde_json error into our error, with a hint for the most common non-JSON content.
pub(crate) fn parse_error(path: &Path, bytes: &[u8], error: serde_json::Error) -> EvalError {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return EvalError::format(path, "the file is empty");
    }
    let mut message = error.to_string();
    if has_bare_non_finite(bytes) {
        message.push_str(
            " (the file has NaN or Infinity values, which are not JSON: Python's json module \
             writes them for non-finite scores; fix the scores at their source)",
        );
    }
    EvalError::format(path, message)
}

/// Whether `NaN` or `Infinity` stands as a value (after `:`, `,` or `[`), not inside a string.
fn has_bare_non_finite(bytes: &[u8]) -> bool {
    let starts_value = |at: usize| {
        let before = bytes[..at]
            .iter()
            .rev()
            .find(|b| !b.is_ascii_whitespace() && **b != b'-');
        matches!(before, Some(b':' | b',' | b'['))
    };
    [&b"NaN"[..], &b"Infinity"[..]].iter().any(|token| {
        bytes
            .windows(token.len())
            .enumerate()
            .any(|(at, window)| window == *token && starts_value(at))
    })
}

/// Writes `value` as JSON (and a final newline) to `path` atomically ([`crate::write_atomic`]).
pub fn write_json_atomic<T: Serialize + ?Sized>(
    path: &Path,
    value: &T,
    pretty: bool,
) -> Result<()> {
    let mut bytes = if pretty {
        serde_json::to_vec_pretty(value)
    } else {
        serde_json::to_vec(value)
    }
    .map_err(|e| EvalError::Invalid(format!("{}: cannot serialise: {e}", path.display())))?;
    bytes.push(b'\n');
    crate::write_atomic(path, &bytes).map_err(|e| EvalError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_map_keeps_file_order_and_rejects_repeats() {
        let map: OrderedMap<u32> =
            serde_json::from_str(r#"{"b": 1, "a": 2, "c": 3}"#).expect("valid object");
        let keys: Vec<&str> = map.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a", "c"]);
        let error = serde_json::from_str::<OrderedMap<u32>>(r#"{"a": 1, "a": 2}"#)
            .expect_err("repeated key");
        assert!(
            error.to_string().contains("video a appears twice"),
            "{error}"
        );
    }

    #[test]
    fn value_errors_name_the_video() {
        let error = serde_json::from_str::<OrderedMap<u32>>(r#"{"v1": 1, "v2": "x"}"#)
            .expect_err("bad value");
        assert!(error.to_string().contains("video v2"), "{error}");
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = std::env::temp_dir().join(format!("lofi-eval-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("out.json");
        write_json_atomic(&path, &OrderedMap(vec![("v".to_string(), 1u8)]), false).expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"v\":1}\n");
        let names: Vec<_> = std::fs::read_dir(&dir).expect("list").collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
