//! The loaded workflows: which workflows serve a path and method, the state
//! of every file (loaded, or invalid with its problems), and every version a
//! queued or replayed run may still need. Loading also decides what only a
//! server may: a workflow whose verify secret is a demo value (a `??`
//! fallback literal) is invalid unless it is served locally ([`Serving`]).

use super::compile::{compile, Bundle, CompileEnv, Issue, ScriptDir};
use super::connector::{Catalog, ConnectorUse};
use super::{Serving, Workflow};
use crate::expr::template::EnvLookup;
use crate::script::Engine;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Loaded,
    Invalid,
}

/// What `GET /api/workflows` shows for one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub name: String,
    pub file: PathBuf,
    pub path: Option<String>,
    pub enabled: bool,
    pub status: FileStatus,
    pub errors: Vec<String>,
    pub version: Option<String>,
    /// For an invalid file: the earlier version that is still being served.
    pub serving_version: Option<String>,
    /// The connectors its `uses` steps name, and the state of the
    /// variables they read (read from the file even when it is invalid).
    pub connectors: Vec<ConnectorUse>,
    #[serde(skip)]
    pub source: String,
}

/// One consistent set of workflows. Replaced whole, never mutated.
#[derive(Default)]
pub struct Registry {
    pub workflows: Vec<Arc<Workflow>>,
    pub files: Vec<FileReport>,
    /// The connectors they were compiled with.
    pub catalog: Arc<Catalog>,
}

impl Registry {
    /// Enabled workflows served at `path` (under `/hooks`).
    pub fn at_path<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a Arc<Workflow>> + 'a {
        self.workflows.iter().filter(move |w| w.path == path)
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Workflow>> {
        self.workflows.iter().find(|w| w.name == name)
    }

    pub fn file(&self, name: &str) -> Option<&FileReport> {
        self.files.iter().find(|f| f.name == name)
    }

    pub fn issues(&self) -> impl Iterator<Item = &String> {
        self.files.iter().flat_map(|f| f.errors.iter())
    }
}

/// Workflow files under `paths` (files are taken as given; folders are
/// searched recursively for `*.yaml`/`*.yml`, skipping `*.test.yaml`).
pub fn workflow_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    out.sort();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out)?;
        } else if is_workflow_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

pub fn is_workflow_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (name.ends_with(".yaml") || name.ends_with(".yml")) && !is_test_file(path)
}

pub fn is_test_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.ends_with(".test.yaml") || name.ends_with(".test.yml")
}

/// Just enough of a workflow file to name it when it does not compile.
#[derive(Deserialize)]
struct Peek {
    name: Option<String>,
    trigger: Option<PeekTrigger>,
}

#[derive(Deserialize)]
struct PeekTrigger {
    webhook: Option<PeekWebhook>,
}

#[derive(Deserialize)]
struct PeekWebhook {
    path: Option<String>,
}

/// Compile every file. One broken file never hides another's problems or
/// keeps the valid ones from loading. `serving` says where the workflows
/// will answer senders.
pub fn load(
    files: &[PathBuf],
    env: &dyn EnvLookup,
    scripts_dir: &Path,
    catalog: Arc<Catalog>,
    engine: &Engine,
    serving: Serving,
) -> Registry {
    let scripts = ScriptDir(scripts_dir.to_path_buf());
    let cenv = CompileEnv {
        env,
        scripts: &scripts,
        engine,
        connectors: &catalog,
    };
    let mut reg = Registry::default();
    for file in files {
        let (source, result) = match std::fs::read_to_string(file) {
            Ok(text) => {
                let r = compile(file, &text, &cenv);
                (text, r)
            }
            Err(e) => (
                String::new(),
                Err(vec![Issue {
                    file: file.clone(),
                    line: 1,
                    col: 1,
                    message: format!("cannot read the file: {e}"),
                }]),
            ),
        };
        let uses = super::connector::uses_of(&source, &catalog, env);
        match result {
            Ok(w) => {
                if let Some(issue) = demo_secret_issue(&w, serving) {
                    reg.files.push(invalid(file, &source, vec![issue], uses));
                    continue;
                }
                if let Some(first) = reg.by_name(&w.name) {
                    let msg = Issue {
                        file: file.clone(),
                        line: 1,
                        col: 1,
                        message: format!(
                            "workflow name `{}` is already used by {}; names must be unique",
                            w.name,
                            first.file.display()
                        ),
                    };
                    reg.files.push(invalid(file, &source, vec![msg], uses));
                    continue;
                }
                reg.files.push(FileReport {
                    name: w.name.clone(),
                    file: file.clone(),
                    path: Some(w.path.clone()),
                    enabled: w.enabled,
                    status: FileStatus::Loaded,
                    errors: Vec::new(),
                    version: Some(w.version.clone()),
                    serving_version: None,
                    connectors: uses,
                    source,
                });
                reg.workflows.push(Arc::new(w));
            }
            Err(issues) => reg.files.push(invalid(file, &source, issues, uses)),
        }
    }
    reg.catalog = catalog;
    reg
}

/// SPEC §5: a secret that is a `??` fallback literal is served only on a
/// loopback address. The shipped examples' demo secrets are public, so off
/// loopback anyone could sign with them.
fn demo_secret_issue(w: &Workflow, serving: Serving) -> Option<Issue> {
    let fallback = w.verify.as_ref()?.fallback.as_ref()?;
    match serving {
        Serving::Local => None,
        Serving::Network(addr) => Some(Issue {
            file: w.file.clone(),
            line: fallback.pos.line,
            col: fallback.pos.col,
            message: format!(
                "secret: `{var}` is not set, so the secret is the `??` fallback written in the workflow, a demo secret served only while `serve` listens on a loopback address (it listens on {addr}); set `{var}` to the sender's signing secret",
                var = fallback.variable
            ),
        }),
    }
}

/// The name a workflow file declares (or its file stem), even when the
/// file does not compile.
pub fn peek_name(file: &Path, source: &str) -> String {
    let (peek, _) = super::yaml::from_str::<Peek>(source);
    name_or_stem(file, peek.as_ref())
}

fn name_or_stem(file: &Path, peek: Option<&Peek>) -> String {
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    peek.and_then(|p| p.name.clone()).unwrap_or(stem)
}

fn invalid(
    file: &Path,
    source: &str,
    issues: Vec<Issue>,
    connectors: Vec<ConnectorUse>,
) -> FileReport {
    let (peek, _) = super::yaml::from_str::<Peek>(source);
    let name = name_or_stem(file, peek.as_ref());
    let path = peek
        .and_then(|p| p.trigger)
        .and_then(|t| t.webhook)
        .and_then(|w| w.path)
        .map(|p| super::compile::normalize_path(&p));
    FileReport {
        name,
        file: file.to_path_buf(),
        path,
        enabled: false,
        status: FileStatus::Invalid,
        errors: issues.iter().map(ToString::to_string).collect(),
        version: None,
        serving_version: None,
        connectors,
        source: source.to_string(),
    }
}

/// The registry after a reload: `fresh` as loaded, except that a file
/// which no longer compiles keeps serving the version it had in `old`
/// (shown as invalid, with its errors and the version still served).
/// Deleted files are gone.
pub fn merge(old: &Registry, mut fresh: Registry) -> Registry {
    for report in fresh
        .files
        .iter_mut()
        .filter(|f| f.status == FileStatus::Invalid)
    {
        let Some(prev) = old.workflows.iter().find(|w| w.file == report.file) else {
            continue;
        };
        if fresh.workflows.iter().any(|w| w.name == prev.name) {
            continue;
        }
        report.name = prev.name.clone();
        report.path = Some(prev.path.clone());
        report.enabled = prev.enabled;
        report.serving_version = Some(prev.version.clone());
        fresh.workflows.push(Arc::clone(prev));
    }
    fresh
}

/// The live set of workflows plus every version seen, shared by the HTTP
/// handlers and the workers. A version that is not in memory (after a
/// restart) is rebuilt from its stored sources: its YAML, scripts and the
/// connector files it used.
pub struct Workflows {
    current: RwLock<Arc<Registry>>,
    versions: Mutex<HashMap<String, Arc<Workflow>>>,
    engine: Engine,
    store: Store,
}

impl Workflows {
    pub fn new(store: Store, engine: Engine) -> Workflows {
        Workflows {
            current: RwLock::new(Arc::new(Registry::default())),
            versions: Mutex::new(HashMap::new()),
            engine,
            store,
        }
    }

    pub fn current(&self) -> Arc<Registry> {
        self.current
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// Make `reg` the live set; keep each version's sources in the store.
    pub async fn replace(&self, reg: Registry) -> Result<(), crate::store::StoreError> {
        for w in &reg.workflows {
            let bundle = serde_json::to_string(&w.bundle).expect("a bundle is plain data");
            self.store.put_version(&w.version, &bundle).await?;
            if let Ok(mut v) = self.versions.lock() {
                v.insert(w.version.clone(), Arc::clone(w));
            }
        }
        if let Ok(mut cur) = self.current.write() {
            *cur = Arc::new(reg);
        }
        Ok(())
    }

    /// The workflow at `version`: from memory, or rebuilt from the sources
    /// kept in the store (after a restart, or for a replay on the recorded
    /// version).
    pub async fn version(&self, version: &str) -> Result<Arc<Workflow>, String> {
        if let Some(w) = self
            .versions
            .lock()
            .ok()
            .and_then(|v| v.get(version).cloned())
        {
            return Ok(w);
        }
        let stored = self
            .store
            .version(version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("workflow version {version} is not in the store"))?;
        let bundle: Bundle = serde_json::from_str(&stored)
            .map_err(|e| format!("workflow version {version} cannot be read: {e}"))?;
        let env = crate::expr::template::ProcessEnv;
        let catalog = bundle.catalog(&self.engine);
        let cenv = CompileEnv {
            env: &env,
            scripts: &bundle,
            engine: &self.engine,
            connectors: &catalog,
        };
        let w = compile(&bundle.file, &bundle.yaml, &cenv).map_err(|issues| {
            let first = issues.first().map(ToString::to_string).unwrap_or_default();
            format!("workflow version {version} no longer compiles: {first}")
        })?;
        let w = Arc::new(w);
        if let Ok(mut v) = self.versions.lock() {
            v.insert(version.to_string(), Arc::clone(&w));
        }
        Ok(w)
    }
}
