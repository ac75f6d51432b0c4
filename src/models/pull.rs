//! `models pull`: download what is missing, check what is there, record what was verified.

use std::path::PathBuf;

use futures_util::StreamExt;

use super::download::{Outcome, Reporter, hash_file};
use super::installed::{Manifest, Record, modified_ns};
use super::plan::Planned;
use super::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    Downloaded(Outcome),
    /// The file was already there; `verified` when its hash matched the expected one.
    Present {
        path: PathBuf,
        sha256: String,
        verified: bool,
    },
}

impl Models {
    /// Download `plans`, `jobs` at a time. Files already in place are checked, not fetched
    /// again. Returns one result per plan, in order; a failure does not stop the others.
    pub async fn pull(
        &self,
        plans: &[Planned],
        jobs: usize,
        reporter: &dyn Reporter,
    ) -> Vec<Result<Pulled, ModelsError>> {
        let manifest_lock = tokio::sync::Mutex::new(());
        let mut seen = std::collections::BTreeSet::new();
        let tasks = plans.iter().enumerate().map(|(id, plan)| {
            let duplicate = !seen.insert(plan.job.target.clone());
            let manifest_lock = &manifest_lock;
            async move {
                if duplicate {
                    // Listed twice: the other copy of the same job does the work.
                    return (id, Ok(None));
                }
                let result = self.pull_one(plan, id, reporter, manifest_lock).await;
                (id, result.map(Some))
            }
        });
        let mut results: Vec<(usize, Result<Option<Pulled>, ModelsError>)> =
            futures_util::stream::iter(tasks)
                .buffer_unordered(jobs.max(1))
                .collect()
                .await;
        results.sort_by_key(|(id, _)| *id);
        // A duplicate reports what its first occurrence got.
        let mut by_target: std::collections::BTreeMap<PathBuf, Result<Pulled, String>> =
            std::collections::BTreeMap::new();
        for (id, result) in &results {
            if let Ok(Some(pulled)) = result {
                by_target.insert(plans[*id].job.target.clone(), Ok(pulled.clone()));
            } else if let Err(e) = result {
                by_target.insert(plans[*id].job.target.clone(), Err(e.to_string()));
            }
        }
        results
            .into_iter()
            .map(|(id, result)| match result {
                Ok(Some(pulled)) => Ok(pulled),
                Ok(None) => match by_target.get(&plans[id].job.target) {
                    Some(Ok(pulled)) => Ok(pulled.clone()),
                    _ => Err(ModelsError::NotInstalled {
                        name: plans[id].relative.clone(),
                    }),
                },
                Err(e) => Err(e),
            })
            .collect()
    }

    async fn pull_one(
        &self,
        plan: &Planned,
        id: usize,
        reporter: &dyn Reporter,
        manifest_lock: &tokio::sync::Mutex<()>,
    ) -> Result<Pulled, ModelsError> {
        let models = self.models_dir();
        let target = &plan.job.target;
        if target.exists() {
            let present = self.check_present(plan).await?;
            let _guard = manifest_lock.lock().await;
            self.record(plan, &present.1, present.0.clone())?;
            return Ok(Pulled::Present {
                path: target.clone(),
                sha256: present.0,
                verified: plan.job.sha256.is_some(),
            });
        }
        let outcome = self.downloader.fetch(&plan.job, id, reporter).await?;
        let _guard = manifest_lock.lock().await;
        let metadata = std::fs::metadata(&outcome.path).map_err(|source| ModelsError::Io {
            action: "inspect",
            path: outcome.path.clone(),
            source,
        })?;
        self.record(plan, &metadata, outcome.sha256.clone())?;
        tracing::debug!("`{}` recorded in {}", plan.relative, models.display());
        Ok(Pulled::Downloaded(outcome))
    }

    /// A file already at the target: trust the record while the file is unchanged, else
    /// hash it. A different hash is an error; the file is the user's and is left alone.
    async fn check_present(
        &self,
        plan: &Planned,
    ) -> Result<(String, std::fs::Metadata), ModelsError> {
        let target = plan.job.target.clone();
        let io = |source| ModelsError::Io {
            action: "inspect",
            path: target.clone(),
            source,
        };
        let metadata = std::fs::metadata(&target).map_err(io)?;
        let manifest = Manifest::load(&self.models_dir());
        let cached = manifest
            .files
            .get(&plan.relative)
            .filter(|r| r.fresh(&metadata))
            .map(|r| r.sha256.clone());
        let sha256 = match cached {
            Some(sha256) => sha256,
            None => {
                let path = target.clone();
                tokio::task::spawn_blocking(move || hash_file(&path))
                    .await
                    .map_err(|e| io(std::io::Error::other(e)))??
                    .0
            }
        };
        if let Some(expected) = &plan.job.sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ModelsError::ExistsDifferent {
                path: target,
                expected: expected.clone(),
                actual: sha256,
            });
        }
        Ok((sha256, metadata))
    }

    fn record(
        &self,
        plan: &Planned,
        metadata: &std::fs::Metadata,
        sha256: String,
    ) -> Result<(), ModelsError> {
        let record = Record {
            catalog: plan.catalog.clone(),
            source: plan.reference.clone(),
            sha256,
            expected: plan.job.sha256.clone(),
            origin: plan.origin.map(|o| o.as_str().to_owned()),
            size: metadata.len(),
            modified_ns: modified_ns(metadata),
        };
        Manifest::update(&self.models_dir(), |m| {
            m.files.insert(plan.relative.clone(), record);
        })
    }
}
