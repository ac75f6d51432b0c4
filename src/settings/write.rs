//! Reading and writing the settings files safely: a corrupt file is refused (never
//! overwritten), a write goes to a temp file in the same directory, is fsynced, then renamed
//! over the original, and the previous content is kept as `<name>.bak-<UTC timestamp>`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::atomic_file::{AtomicWriteError, with_suffix};

/// Backups kept per file; older ones are removed.
pub const KEEP_BACKUPS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("Failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}` is not valid JSON for a settings file ({detail}). The webui would move it aside \
         and start from defaults, losing your settings; nothing was changed. Fix the file, or \
         restore {}, and start again",
        backup.as_ref().map_or_else(
            || "a backup (none found)".to_owned(),
            |b| format!("its last backup `{}`", b.display())
        )
    )]
    Corrupt {
        path: PathBuf,
        detail: String,
        backup: Option<PathBuf>,
    },
    #[error("Failed to write `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<AtomicWriteError> for WriteError {
    fn from(AtomicWriteError { path, source }: AtomicWriteError) -> Self {
        WriteError::Write { path, source }
    }
}

/// Read a JSON object file (`config.json`, `ui-config.json`, ...): `None` when it does not
/// exist. The one reader of the webui's settings files: a corrupt one is refused with the same
/// message wherever it is read.
pub fn read_object(path: &Path) -> Result<Option<Map<String, Value>>, WriteError> {
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(WriteError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |detail: String| WriteError::Corrupt {
        path: path.to_owned(),
        detail,
        backup: latest_backup(path),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(corrupt("not a JSON object".to_owned())),
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// Serialise like upstream's `json.dump(indent=4, ensure_ascii=False)`.
pub fn to_bytes(map: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Serialising a Map<String, Value> into a Vec cannot fail.
    let _ = serde::Serialize::serialize(map, &mut ser);
    out
}

pub use crate::atomic_file::{remove_stale_temps, write_with as write_atomic_with};

/// Atomically replace `path` with `bytes` ([`crate::atomic_file`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    Ok(crate::atomic_file::write(path, bytes)?)
}

/// Copy `path` to `<path>.bak-<UTC timestamp>` (if it exists) and prune old backups.
pub fn backup(path: &Path) -> Result<Option<PathBuf>, WriteError> {
    if !path.exists() {
        return Ok(None);
    }
    let stamp = utc_timestamp(SystemTime::now());
    let mut target = with_suffix(path, &format!(".bak-{stamp}"));
    let mut n = 1;
    while target.exists() {
        target = with_suffix(path, &format!(".bak-{stamp}-{n}"));
        n += 1;
    }
    fs_err::copy(path, &target).map_err(|source| WriteError::Write {
        path: target.clone(),
        source,
    })?;
    let mut all = backups(path);
    while all.len() > KEEP_BACKUPS {
        let old = all.remove(0);
        let _ = std::fs::remove_file(old);
    }
    Ok(Some(target))
}

/// Backups of `path`, oldest first.
pub fn backups(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.bak-", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    // The timestamp sorts lexically; `-N` suffixes sort after the plain name.
    found.sort();
    found
}

/// The newest backup of `path`.
pub fn latest_backup(path: &Path) -> Option<PathBuf> {
    backups(path).pop()
}

/// `YYYYmmddTHHMMSSZ` in UTC.
pub fn utc_timestamp(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn timestamps_are_utc_and_sortable() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_423_921);
        assert_eq!(utc_timestamp(t), "20261123T085201Z");
        assert_eq!(utc_timestamp(UNIX_EPOCH), "19700101T000000Z");
    }

    #[test]
    fn a_crash_before_the_rename_leaves_the_original_intact() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        std::fs::write(&path, b"{\"a\": 1}").unwrap();
        let err = write_atomic_with(&path, b"{\"a\": 2}", |temp| {
            // The process dies here: the synced temp file stays behind, unrenamed.
            std::fs::copy(temp, tmp.path().join(".config.json.crashed.tmp"))?;
            Err(std::io::Error::other("simulated crash"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\": 1}");
        remove_stale_temps(&path);
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        write_atomic(&path, b"{\"a\": 2}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"a\": 2}");
    }

    #[test]
    fn corrupt_files_name_the_latest_backup() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        std::fs::write(&path, b"{}").unwrap();
        let bak = backup(&path).unwrap().unwrap();
        std::fs::write(&path, b"{oops").unwrap();
        let err = read_object(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains(&*bak.to_string_lossy()),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"{oops");
    }

    #[test]
    fn old_backups_are_pruned() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("config.json");
        std::fs::write(&path, b"{}").unwrap();
        for _ in 0..(KEEP_BACKUPS + 3) {
            backup(&path).unwrap();
        }
        assert_eq!(backups(&path).len(), KEEP_BACKUPS);
    }
}
