//! The pure merge of declared settings into one settings file's JSON object.
//!
//! Layers, low to high: upstream defaults (keys absent from the file fall back to them) <
//! `defaults` of the settings file < presets in order < the user's own edits < `locked`.
//!
//! "User edits beat presets" needs memory: [`FileState`] records, per managed key, the value
//! the launcher last wrote. A declared (unlocked) value replaces the file's value only if the
//! key is absent or still holds what the launcher wrote; anything else is the user's edit and
//! is kept. A key the launcher managed but nobody declares any more is removed when it still
//! holds the launcher's value (back to upstream's default), and left alone otherwise.
//!
//! The state is written before the file, with the value it replaced as `previous`, so a
//! crash between the two still recognises the launcher's old value at the next start.
//! Every key nobody declares is kept as is, in its place (`preserve_order`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which layer a declared value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "layer", content = "name")]
pub enum Origin {
    /// `defaults` of the settings file.
    Defaults,
    /// A preset, by name.
    Preset(String),
    /// `locked` of the settings file.
    Locked,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Defaults => f.write_str("defaults"),
            Origin::Preset(name) => write!(f, "preset {name}"),
            Origin::Locked => f.write_str("locked"),
        }
    }
}

/// Everything declared for one file, already layered: one value per key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared {
    /// Keys in declaration order with the winning value and its layer.
    pub values: Vec<(String, Value, Origin)>,
}

impl Declared {
    /// Put `value` for `key` from `origin`, replacing a lower layer's value.
    pub fn put(&mut self, key: &str, value: Value, origin: Origin) {
        match self.values.iter_mut().find(|(k, _, _)| k == key) {
            Some(slot) => {
                // A locked value is never replaced by a lower layer.
                if slot.2 != Origin::Locked || origin == Origin::Locked {
                    slot.1 = value;
                    slot.2 = origin;
                }
            }
            None => self.values.push((key.to_owned(), value, origin)),
        }
    }

    /// Add every entry of `map` from `origin`.
    pub fn extend(&mut self, map: &Map<String, Value>, origin: &Origin) {
        for (key, value) in map {
            self.put(key, value.clone(), origin.clone());
        }
    }

    pub fn get(&self, key: &str) -> Option<(&Value, &Origin)> {
        self.values
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, o)| (v, o))
    }

    /// The locked keys and values.
    pub fn locked(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values
            .iter()
            .filter(|(_, _, o)| *o == Origin::Locked)
            .map(|(k, v, _)| (k.as_str(), v))
    }
}

/// What the launcher last wrote into one file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FileState {
    /// Per managed key, the value the launcher wrote.
    #[serde(default)]
    pub written: Map<String, Value>,
    /// Per key changed by the last merge, the value the launcher had written before (see the
    /// module doc: survives a crash between writing the state and the file).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub previous: Map<String, Value>,
}

impl FileState {
    /// Does the file's `value` for `key` still hold what the launcher wrote?
    fn owns(&self, key: &str, value: &Value) -> bool {
        self.written.get(key) == Some(value) || self.previous.get(key) == Some(value)
    }
}

/// What happened to one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The declared value was written (absent before, or the launcher's earlier value).
    Set,
    /// The key holds the user's own edit, which beats defaults and presets.
    KeptUserEdit,
    /// A locked value was written over whatever was there.
    Locked,
    /// No longer declared and still the launcher's value: removed (upstream default again).
    Removed,
}

/// One key's change, for `settings diff` and the start-up log. For [`Action::KeptUserEdit`]
/// `after` is the declared value that was *not* applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    pub action: Action,
    pub origin: Option<Origin>,
}

/// The merged file, the new state, the changes (only keys whose value changes), and the
/// keys whose user edits were kept.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub merged: Map<String, Value>,
    pub state: FileState,
    pub changes: Vec<Change>,
    pub kept: Vec<Change>,
}

/// Merge `declared` into `current` (the file's object) given what the launcher last wrote.
pub fn merge(current: &Map<String, Value>, declared: &Declared, state: &FileState) -> Outcome {
    let mut merged = current.clone();
    let mut new_state = FileState::default();
    let mut changes = Vec::new();
    let mut kept = Vec::new();
    let mut record = |key: &str, before: Option<&Value>, after: Option<Value>, action, origin| {
        let change = Change {
            key: key.to_owned(),
            before: before.cloned(),
            after,
            action,
            origin,
        };
        if change.action == Action::KeptUserEdit {
            kept.push(change);
        } else if change.before != change.after {
            changes.push(change);
        }
    };
    for (key, value, origin) in &declared.values {
        let before = current.get(key);
        let action = match (origin, before) {
            (Origin::Locked, _) => Action::Locked,
            (_, None) => Action::Set,
            (_, Some(old)) if old == value || state.owns(key, old) => Action::Set,
            (_, Some(_)) => Action::KeptUserEdit,
        };
        if action == Action::KeptUserEdit {
            // Remember what the launcher wrote, so a return to it makes the key managed again.
            if let Some(old) = state.written.get(key) {
                new_state.written.insert(key.clone(), old.clone());
            }
            record(
                key,
                before,
                Some(value.clone()),
                action,
                Some(origin.clone()),
            );
            continue;
        }
        merged.insert(key.clone(), value.clone());
        new_state.written.insert(key.clone(), value.clone());
        if let Some(old) = state.written.get(key)
            && old != value
        {
            new_state.previous.insert(key.clone(), old.clone());
        }
        record(
            key,
            before,
            Some(value.clone()),
            action,
            Some(origin.clone()),
        );
    }
    for (key, _) in &state.written {
        if declared.get(key).is_some() {
            continue;
        }
        if let Some(old) = current.get(key)
            && state.owns(key, old)
        {
            merged.shift_remove(key);
            new_state.previous.insert(key.clone(), old.clone());
            record(key, Some(old), None, Action::Removed, None);
        }
    }
    Outcome {
        merged,
        state: new_state,
        changes,
        kept,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn declared(entries: &[(&str, Value, Origin)]) -> Declared {
        let mut d = Declared::default();
        for (k, v, o) in entries {
            d.put(k, v.clone(), o.clone());
        }
        d
    }

    fn preset(name: &str) -> Origin {
        Origin::Preset(name.to_owned())
    }

    #[test]
    fn idempotent_applying_twice_changes_nothing() {
        let current = obj(json!({"a": 1, "user": "x"}));
        let d = declared(&[
            ("a", json!(2), Origin::Defaults),
            ("b", json!(true), preset("p")),
            ("c", json!("L"), Origin::Locked),
        ]);
        let first = merge(&current, &d, &FileState::default());
        let second = merge(&first.merged, &d, &first.state);
        assert_eq!(second.merged, first.merged);
        assert!(second.changes.is_empty(), "{:?}", second.changes);
        let third = merge(&second.merged, &d, &second.state);
        assert_eq!(third.state, second.state);
    }

    #[test]
    fn unmanaged_keys_are_preserved_in_place() {
        let current = obj(json!({"z": 1, "a": [1, 2], "m": {"deep": null}}));
        let d = declared(&[("b", json!(2), Origin::Defaults)]);
        let out = merge(&current, &d, &FileState::default());
        let keys: Vec<&str> = out.merged.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m", "b"]);
        assert_eq!(out.merged["m"], json!({"deep": null}));
    }

    #[test]
    fn locked_wins_over_user_edits_and_presets() {
        let mut d = declared(&[("k", json!("locked"), Origin::Locked)]);
        d.put("k", json!("preset"), preset("p"));
        let current = obj(json!({"k": "user"}));
        let out = merge(&current, &d, &FileState::default());
        assert_eq!(out.merged["k"], "locked");
        assert_eq!(out.changes[0].action, Action::Locked);
    }

    #[test]
    fn presets_apply_in_order_later_wins_over_defaults() {
        let mut d = Declared::default();
        d.extend(&obj(json!({"k": 0, "d": "def"})), &Origin::Defaults);
        d.extend(&obj(json!({"k": 1})), &preset("first"));
        d.extend(&obj(json!({"k": 2})), &preset("second"));
        let out = merge(&Map::new(), &d, &FileState::default());
        assert_eq!(out.merged["k"], 2);
        assert_eq!(out.merged["d"], "def");
        assert_eq!(d.get("k").unwrap().1, &preset("second"));
    }

    #[test]
    fn user_edits_beat_presets_but_untouched_values_follow_the_preset() {
        let d1 = declared(&[
            ("edited", json!(1), preset("p")),
            ("same", json!(1), preset("p")),
        ]);
        let first = merge(&Map::new(), &d1, &FileState::default());
        // The user changes one key in the UI; the preset then changes both.
        let mut current = first.merged.clone();
        current.insert("edited".into(), json!(99));
        let d2 = declared(&[
            ("edited", json!(2), preset("p")),
            ("same", json!(2), preset("p")),
        ]);
        let second = merge(&current, &d2, &first.state);
        assert_eq!(second.merged["edited"], 99);
        assert_eq!(second.merged["same"], 2);
        assert_eq!(second.kept[0].key, "edited");
    }

    #[test]
    fn an_undeclared_key_goes_back_to_upstream_default_unless_edited() {
        let d = declared(&[
            ("a", json!(1), Origin::Defaults),
            ("b", json!(1), Origin::Defaults),
        ]);
        let first = merge(&Map::new(), &d, &FileState::default());
        let mut current = first.merged.clone();
        current.insert("b".into(), json!(5));
        let out = merge(&current, &Declared::default(), &first.state);
        assert!(!out.merged.contains_key("a"));
        assert_eq!(out.merged["b"], 5);
        assert_eq!(out.changes[0].action, Action::Removed);
    }

    #[test]
    fn a_crash_after_the_state_before_the_file_still_recognises_the_old_value() {
        let d1 = declared(&[("k", json!(1), preset("p"))]);
        let first = merge(&Map::new(), &d1, &FileState::default());
        let d2 = declared(&[("k", json!(2), preset("p"))]);
        let second = merge(&first.merged, &d2, &first.state);
        // The state of `second` was saved, the file was not: it still holds 1.
        let retry = merge(&first.merged, &d2, &second.state);
        assert_eq!(retry.merged["k"], 2);
    }
}
