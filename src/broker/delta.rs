//! Field deltas (`delta: true`): when a topic's new value and its previous one are both JSON
//! objects, the RFC 7396 merge patch that turns the old into the new, computed once per
//! publication. A quote record where two of twenty fields changed goes out as those two.
//!
//! RFC 7396: "If the patch is an object, ... a null value in the patch removes the member from
//! the target; any other value replaces it (an object merged recursively)". So a removed key is
//! `null` in the patch, nested objects are patched recursively, and everything else (arrays
//! included) is replaced whole. A value that itself holds a `null` cannot be said by a patch
//! (the null would mean "remove"): no delta then. Nor when the patch is not smaller than the
//! value.

use serde_json::{Map, Value};

/// The merge patch from `old` to `new` (JSON texts), when both are objects, `new` holds no
/// `null`, and the patch is shorter than `new`; its JSON text.
pub fn patch_between(old: &[u8], new: &[u8]) -> Option<String> {
    // Both must be objects: a cheap look before any parsing.
    let is_object = |b: &[u8]| b.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'{');
    if !is_object(old) || !is_object(new) {
        return None;
    }
    let old: Map<String, Value> = serde_json::from_slice(old).ok()?;
    let new: Map<String, Value> = serde_json::from_slice(new).ok()?;
    if new.values().any(holds_null) {
        return None;
    }
    let patch = Value::Object(diff(&old, &new));
    let text = serde_json::to_string(&patch).ok()?;
    (text.len() < serde_json::to_string(&new).map_or(usize::MAX, |s| s.len())).then_some(text)
}

/// The members that differ: new or changed ones with their new value (objects in both
/// patched recursively), removed ones as `null`.
fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in old.keys() {
        if !new.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, value) in new {
        match (old.get(key), value) {
            (Some(before), after) if before == after => {}
            (Some(Value::Object(before)), Value::Object(after)) => {
                patch.insert(key.clone(), Value::Object(diff(before, after)));
            }
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    patch
}

fn holds_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(holds_null),
        Value::Object(o) => o.values().any(holds_null),
        _ => false,
    }
}

/// Applies a merge patch (RFC 7396's MergePatch pseudocode), as a client does.
pub fn apply(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (key, value) in patch {
            if value.is_null() {
                t.remove(key);
            } else {
                apply(t.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn patch(old: Value, new: Value) -> Option<Value> {
        patch_between(old.to_string().as_bytes(), new.to_string().as_bytes())
            .map(|t| serde_json::from_str(&t).expect("a patch is JSON"))
    }

    #[test]
    fn the_patch_says_what_changed() {
        let old = json!({"sym":"AAPL","bid":1.0,"ask":1.1,"venue":{"id":1,"mic":"XNAS"},"tags":[1,2],"gone":true});
        let new =
            json!({"sym":"AAPL","bid":1.2,"ask":1.1,"venue":{"id":1,"mic":"XNYS"},"tags":[1,3]});
        assert_eq!(
            patch(old, new),
            Some(json!({"bid":1.2,"venue":{"mic":"XNYS"},"tags":[1,3],"gone":null}))
        );
    }

    #[test]
    fn no_delta_when_a_patch_cannot_say_it_or_saves_nothing() {
        assert_eq!(
            patch(json!({"a":1}), json!({"a":null})),
            None,
            "a null value"
        );
        assert_eq!(
            patch(json!({"a":1}), json!({"a":[1,null]})),
            None,
            "a nested null"
        );
        assert_eq!(patch(json!({"a":1}), json!({"b":2})), None, "not smaller");
        assert_eq!(patch(json!([1]), json!({"a":1})), None, "not an object");
        assert_eq!(patch(json!({"a":1}), json!(5)), None);
        assert!(patch_between(b"{oops", b"{}").is_none());
    }

    #[test]
    fn serde_json_s_raw_value_key_is_an_ordinary_key_or_no_delta() {
        // With the `raw_value` feature, serde_json's `Value` takes an object keyed
        // `$serde_json::private::RawValue` for a raw value and refuses it when its string is
        // not JSON text. A payload may hold one (it is JSON): it gets no delta, never a panic.
        let key = "$serde_json::private::RawValue";
        let nested = |v: &str| format!(r#"{{"a":1,"b":{{"{key}":"{v}"}},"c":"long enough"}}"#);
        let (old, new) = (nested("x"), nested("y"));
        assert_eq!(patch_between(old.as_bytes(), new.as_bytes()), None);
        let top = |v: u32| format!(r#"{{"{key}":"\u00eask","n":{v},"pad":"long enough"}}"#);
        assert_eq!(
            patch_between(top(1).as_bytes(), top(2).as_bytes()).as_deref(),
            Some(r#"{"n":2}"#)
        );
    }

    #[test]
    fn numbers_in_a_patch_are_the_published_doubles_to_the_last_bit() {
        // Parsed and written again on the way: a value a client rebuilds from a patch must be
        // the very double that was published, not a neighbour.
        for text in [
            "100.21000000000001",
            "0.30000000000000004",
            "189.15000000000003",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
        ] {
            let new = format!(r#"{{"sym":"AAPL","venue":"XNAS","px":{text}}}"#);
            let old = br#"{"sym":"AAPL","venue":"XNAS","px":1}"#;
            let patch = patch_between(old, new.as_bytes()).expect("a delta");
            let sent = patch
                .strip_prefix(r#"{"px":"#)
                .and_then(|p| p.strip_suffix('}'))
                .unwrap_or_else(|| panic!("{patch}"));
            assert_eq!(
                sent.parse::<f64>().map(f64::to_bits),
                text.parse::<f64>().map(f64::to_bits),
                "{text} went out as {sent}"
            );
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::from),
            (-1000i64..1000).prop_map(Value::from),
            "[a-c]{0,3}".prop_map(Value::from),
            Just(Value::Null),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_object() -> impl Strategy<Value = Value> {
        prop::collection::btree_map("[a-f]", json_value(), 0..6)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    }

    proptest! {
        /// For any two objects: applying the patch to the old gives the new, or there is no
        /// delta (and then the new value holds a null, or the patch would not be smaller).
        #[test]
        fn applying_the_patch_to_the_old_gives_the_new(old in json_object(), new in json_object()) {
            match patch(old.clone(), new.clone()) {
                Some(p) => {
                    let mut patched = old;
                    apply(&mut patched, &p);
                    prop_assert_eq!(patched, new);
                }
                None => {
                    let new_map = new.as_object().cloned().unwrap_or_default();
                    let old_map = old.as_object().cloned().unwrap_or_default();
                    let full = new.to_string().len();
                    let p = Value::Object(diff(&old_map, &new_map)).to_string().len();
                    prop_assert!(new_map.values().any(holds_null) || p >= full);
                }
            }
        }
    }
}
