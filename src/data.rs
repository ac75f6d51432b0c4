//! The data directory before the webui starts: the directories upstream would otherwise
//! create inside its own tree, and a refusal to start on a corrupt config.json (upstream
//! would move it aside and silently start from defaults).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("Failed to create `{path}`")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Settings(#[from] crate::settings::write::WriteError),
    #[error("Failed to read `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Create `tmp/` and `config_states/` and check the settings files parse.
pub fn prepare(data: &Path) -> Result<(), DataError> {
    for sub in ["tmp", "config_states"] {
        let path = data.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| DataError::Create { path, source })?;
    }
    for name in ["config.json", "ui-config.json"] {
        check_json(&data.join(name))?;
    }
    Ok(())
}

fn check_json(path: &Path) -> Result<(), DataError> {
    crate::settings::write::read_object(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_config_is_refused_and_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config.json");
        std::fs::write(&config, b"{\"a\": 1,").unwrap();
        let err = prepare(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not valid JSON"),
            "{err}"
        );
        assert_eq!(std::fs::read(&config).unwrap(), b"{\"a\": 1,");
        assert!(tmp.path().join("config_states").is_dir());
    }
}
