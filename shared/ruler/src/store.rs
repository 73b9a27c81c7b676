//! Where rule groups live.
//!
//! - **Local** (`ruler.storage.type: local`): `<directory>/<tenant>/<namespace>` files, each a
//!   `groups:` list; the namespace is the file name. Read-only, as in Loki: the API's writes
//!   answer Loki's "unsupported in rule local store" errors.
//! - **Bucket** (any other type): one object per group in the log store's own bucket, so the
//!   API works wherever the store does (Lambda included):
//!
//! ```text
//! ruler/rules/<tenant>/<namespace>/<group>    the group, as YAML
//! ```
//!
//! with each name base64url-encoded (any string is a valid namespace or group name).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquetry_model::config::Config;
use parquetry_store::Store;

use crate::rules::{RuleGroup, parse_file, validate_groups};

/// Where rule groups live in the bucket.
pub const RULES_PREFIX: &str = "ruler/rules";

/// Why a rule store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuleStoreError {
    /// A write (or single-group read) on the read-only local store; Loki's words.
    #[error("{0} unsupported in rule local store")]
    Unsupported(&'static str),
    /// No such group (404 in the API).
    #[error("group does not exist")]
    GroupNotFound,
    /// No such namespace (404 in the API).
    #[error("group namespace does not exist")]
    NamespaceNotFound,
    /// A local rule directory or file that cannot be read or is invalid (Loki's wording).
    #[error("{0}")]
    Local(String),
    /// The bucket failed.
    #[error("storage, {path}: {source}")]
    Storage {
        /// The object or listed prefix.
        path: String,
        /// What the bucket answered.
        #[source]
        source: object_store::Error,
    },
    /// A stored group object that no longer parses.
    #[error("invalid stored rule group {key}: {message}")]
    Corrupt {
        /// The group's key or name.
        key: String,
        /// Why it does not parse.
        message: String,
    },
}

/// The rule store's result.
pub type Result<T, E = RuleStoreError> = std::result::Result<T, E>;

/// Names the object (or prefix) a bucket failure concerns.
trait At<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> At<T> for std::result::Result<T, object_store::Error> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| RuleStoreError::Storage {
            path: path.to_string(),
            source,
        })
    }
}

/// Namespace → its groups, in name order.
pub type Namespaces = BTreeMap<String, Vec<RuleGroup>>;

#[derive(Clone)]
enum Source {
    Local(PathBuf),
    Bucket(Arc<dyn ObjectStore>),
}

/// The rule groups of every tenant, wherever `ruler.storage` says they live.
#[derive(Clone)]
pub struct RuleStore {
    source: Source,
}

fn enc(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

fn dec(s: &str) -> Option<String> {
    URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

impl RuleStore {
    /// The store `ruler.storage` names: local files or the log store's bucket.
    pub fn from_config(config: &Config, store: &Store) -> RuleStore {
        if config.ruler.local_storage() {
            RuleStore::local(PathBuf::from(&config.ruler.storage.local.directory))
        } else {
            RuleStore::bucket(store.object_store())
        }
    }

    /// Read-only rule files under `dir`.
    pub fn local(dir: PathBuf) -> RuleStore {
        RuleStore {
            source: Source::Local(dir),
        }
    }

    /// Rule groups in `store`, editable through the API.
    pub fn bucket(store: Arc<dyn ObjectStore>) -> RuleStore {
        RuleStore {
            source: Source::Bucket(store),
        }
    }

    /// Whether rules come from local files.
    pub fn is_local(&self) -> bool {
        matches!(self.source, Source::Local(_))
    }

    /// Tenants with any rules.
    pub async fn tenants(&self) -> Result<Vec<String>> {
        match &self.source {
            Source::Local(dir) => {
                let dir = dir.clone();
                let mut out = Vec::new();
                let rd = match std::fs::read_dir(&dir) {
                    Ok(rd) => rd,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => {
                        return Err(RuleStoreError::Local(format!(
                            "unable to read rule dir {}: {e}",
                            dir.display()
                        )));
                    }
                };
                for e in rd.flatten() {
                    if e.path().is_dir()
                        && let Some(name) = e.file_name().to_str()
                    {
                        out.push(name.to_string());
                    }
                }
                out.sort();
                Ok(out)
            }
            Source::Bucket(s) => {
                let root = Path::from(RULES_PREFIX);
                let listing = s.list_with_delimiter(Some(&root)).await.at(&root)?;
                let mut out: Vec<String> = listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename())
                    .filter_map(dec)
                    .collect();
                out.sort();
                Ok(out)
            }
        }
    }

    /// The groups of `tenant`, of one namespace or all. Local files are validated as Loki
    /// does when it lists them: an invalid file fails the listing with its reason.
    pub async fn list(&self, tenant: &str, namespace: Option<&str>) -> Result<Namespaces> {
        match &self.source {
            Source::Local(dir) => list_local(&dir.join(tenant), tenant, namespace),
            Source::Bucket(s) => {
                let mut prefix = format!("{RULES_PREFIX}/{}", enc(tenant));
                if let Some(ns) = namespace {
                    prefix.push('/');
                    prefix.push_str(&enc(ns));
                }
                let prefix = Path::from(prefix);
                let metas: Vec<_> = s.list(Some(&prefix)).try_collect().await.at(&prefix)?;
                let mut out = Namespaces::new();
                for m in metas {
                    let parts: Vec<_> = m.location.parts().collect();
                    let [.., ns, _group] = parts.as_slice() else {
                        continue;
                    };
                    let Some(ns) = dec(ns.as_ref()) else { continue };
                    let group = read_group(s.as_ref(), &m.location).await?;
                    out.entry(ns).or_default().push(group);
                }
                for groups in out.values_mut() {
                    groups.sort_by(|a, b| a.name.cmp(&b.name));
                }
                Ok(out)
            }
        }
    }

    /// One group.
    pub async fn get_group(&self, tenant: &str, namespace: &str, group: &str) -> Result<RuleGroup> {
        match &self.source {
            Source::Local(_) => Err(RuleStoreError::Unsupported("GetRuleGroup")),
            Source::Bucket(s) => {
                match read_group(s.as_ref(), &group_path(tenant, namespace, group)).await {
                    Err(RuleStoreError::Storage {
                        source: object_store::Error::NotFound { .. },
                        ..
                    }) => Err(RuleStoreError::GroupNotFound),
                    other => other,
                }
            }
        }
    }

    /// Creates or replaces a group.
    pub async fn set_group(&self, tenant: &str, namespace: &str, group: &RuleGroup) -> Result<()> {
        match &self.source {
            Source::Local(_) => Err(RuleStoreError::Unsupported("SetRuleGroup")),
            Source::Bucket(s) => {
                let text = serde_yaml::to_string(group).map_err(|e| RuleStoreError::Corrupt {
                    key: group.name.clone(),
                    message: e.to_string(),
                })?;
                let path = group_path(tenant, namespace, &group.name);
                s.put(&path, PutPayload::from(text.into_bytes()))
                    .await
                    .at(&path)?;
                Ok(())
            }
        }
    }

    /// Deletes a group.
    pub async fn delete_group(&self, tenant: &str, namespace: &str, group: &str) -> Result<()> {
        match &self.source {
            Source::Local(_) => Err(RuleStoreError::Unsupported("DeleteRuleGroup")),
            Source::Bucket(s) => {
                let path = group_path(tenant, namespace, group);
                // S3 deletes answer success for missing keys: look first, for Loki's 404.
                match s.head(&path).await {
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(RuleStoreError::GroupNotFound);
                    }
                    other => {
                        other.at(&path)?;
                    }
                }
                s.delete(&path).await.at(&path)?;
                Ok(())
            }
        }
    }

    /// Deletes every group of a namespace.
    pub async fn delete_namespace(&self, tenant: &str, namespace: &str) -> Result<()> {
        match &self.source {
            Source::Local(_) => Err(RuleStoreError::Unsupported("DeleteNamespace")),
            Source::Bucket(s) => {
                let prefix =
                    Path::from(format!("{RULES_PREFIX}/{}/{}", enc(tenant), enc(namespace)));
                let metas: Vec<_> = s.list(Some(&prefix)).try_collect().await.at(&prefix)?;
                if metas.is_empty() {
                    return Err(RuleStoreError::NamespaceNotFound);
                }
                for m in metas {
                    s.delete(&m.location).await.at(&m.location)?;
                }
                Ok(())
            }
        }
    }
}

fn group_path(tenant: &str, namespace: &str, group: &str) -> Path {
    Path::from(format!(
        "{RULES_PREFIX}/{}/{}/{}",
        enc(tenant),
        enc(namespace),
        enc(group)
    ))
}

async fn read_group(s: &dyn ObjectStore, path: &Path) -> Result<RuleGroup> {
    let bytes = s.get(path).await.at(path)?.bytes().await.at(path)?;
    let text = String::from_utf8_lossy(&bytes);
    crate::rules::parse_group(&text).map_err(|e| RuleStoreError::Corrupt {
        key: path.to_string(),
        message: e.to_string(),
    })
}

/// Go's `open <path>: no such file or directory`, which Loki's messages embed.
fn io_error(path: &std::path::Path, e: &std::io::Error) -> String {
    let what = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    format!("open {}: {what}", path.display())
}

fn list_local(dir: &std::path::Path, tenant: &str, namespace: Option<&str>) -> Result<Namespaces> {
    let mut out = Namespaces::new();
    let single = namespace.is_some();
    let files: Vec<String> = match namespace {
        Some(ns) => vec![ns.to_string()],
        None => {
            let rd = std::fs::read_dir(dir).map_err(|e| {
                RuleStoreError::Local(format!(
                    "unable to read rule dir {}: {}",
                    dir.display(),
                    io_error(dir, &e)
                ))
            })?;
            let mut names: Vec<String> = rd
                .flatten()
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| !n.starts_with('.'))
                .collect();
            names.sort();
            names
        }
    };
    for ns in files {
        let path = dir.join(&ns);
        let groups = load_file(&path).map_err(|e| {
            let parsing = format!("error parsing {}: {e}", path.display());
            RuleStoreError::Local(if single {
                parsing
            } else {
                format!("failed to list rule group for user {tenant} and namespace {ns}: {parsing}")
            })
        })?;
        out.insert(ns, groups);
    }
    Ok(out)
}

/// Reads and validates one local rule file; the error names the file as Loki's does.
pub fn load_file(path: &std::path::Path) -> Result<Vec<RuleGroup>, RuleFileError> {
    let p = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| RuleFileError::Read {
        path: p(),
        reason: io_error(path, &e),
    })?;
    let file = parse_file(&text).map_err(|source| RuleFileError::Yaml { path: p(), source })?;
    let mut errs = validate_groups(&file.groups);
    if !errs.is_empty() {
        return Err(RuleFileError::Invalid {
            path: p(),
            first: errs.swap_remove(0),
        });
    }
    Ok(file.groups)
}

/// Why a local rule file cannot be used; the text starts with the file, as Loki's does.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    /// The file cannot be read (`reason` in Go's `open <path>: …` words).
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The file is not YAML of the rule format.
    #[error("{path}: {source}")]
    Yaml {
        /// The file.
        path: String,
        /// The YAML error.
        source: crate::rules::RuleFileYamlError,
    },
    /// A group or rule in the file is refused (the first problem found).
    #[error("{path}: {first}")]
    Invalid {
        /// The file.
        path: String,
        /// The first problem, in Loki's words.
        first: String,
    },
}

/// One group with its owner, for evaluation.
#[derive(Debug, Clone)]
pub struct OwnedGroup {
    /// The tenant.
    pub tenant: String,
    /// The namespace (rule file).
    pub namespace: String,
    /// The group.
    pub group: RuleGroup,
}

impl RuleStore {
    /// Every tenant's groups, for evaluation. A file or tenant that cannot be read is
    /// reported in the second list and skipped: one bad file never stops the others.
    pub async fn all_groups(&self) -> (Vec<OwnedGroup>, Vec<String>) {
        let tenants = match self.tenants().await {
            Ok(t) => t,
            Err(e) => return (Vec::new(), vec![e.to_string()]),
        };
        let mut out = Vec::new();
        let mut errs = Vec::new();
        for tenant in tenants {
            let (g, e) = self.tenant_groups(&tenant).await;
            out.extend(g);
            errs.extend(e);
        }
        (out, errs)
    }

    /// One tenant's valid groups (what the ruler runs), and the problems of the others. A
    /// tenant without rules has none and no problem.
    pub async fn tenant_groups(&self, tenant: &str) -> (Vec<OwnedGroup>, Vec<String>) {
        let mut out = Vec::new();
        let mut errs = Vec::new();
        let namespaces: Vec<Option<String>> = match &self.source {
            Source::Local(dir) => match std::fs::read_dir(dir.join(tenant)) {
                Ok(rd) => {
                    let mut n: Vec<Option<String>> = rd
                        .flatten()
                        .filter(|e| e.path().is_file())
                        .filter_map(|e| e.file_name().to_str().map(str::to_string))
                        .filter(|n| !n.starts_with('.'))
                        .map(Some)
                        .collect();
                    n.sort();
                    n
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (out, errs),
                Err(e) => {
                    errs.push(format!("unable to read rule dir of tenant {tenant}: {e}"));
                    return (out, errs);
                }
            },
            Source::Bucket(_) => vec![None],
        };
        for ns in namespaces {
            match self.list(tenant, ns.as_deref()).await {
                Ok(list) => {
                    for (namespace, groups) in list {
                        for group in groups {
                            out.push(OwnedGroup {
                                tenant: tenant.to_string(),
                                namespace: namespace.clone(),
                                group,
                            });
                        }
                    }
                }
                Err(e) => errs.push(format!("tenant {tenant}: {e}")),
            }
        }
        (out, errs)
    }
}
