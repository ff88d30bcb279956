//! `hookflow test [PATH...]`: run every `*.test.yaml` suite (SPEC §7) with
//! outbound HTTP mocked, print one line per case and `N passed, N failed`
//! last. `--from-run RUN_ID` writes a stored run as a test case instead.

use super::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::expr::template::EnvLookup;
use crate::inbound::Inbound;
use crate::record::StepRecord;
use crate::script::Engine;
use crate::step::http::{Canned, CannedAnswer, Mock, Response, Sender, SentRequest};
use crate::step::{Action, Step};
use crate::testcase::compare::{child, first_difference, Difference};
use crate::testcase::runner::{run_once, CaseRun};
use crate::testcase::{CaseSpec, ItemExpect, RequestExpect, StepExpect, SuiteSpec};
use crate::workflow::compile::{compile, CompileEnv, ScriptDir};
use crate::workflow::registry::{self, is_test_file};
use crate::workflow::yaml::{self, Spanned, YNode};
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Test suites or folders holding them (default ./workflows).
    pub paths: Vec<PathBuf>,
    /// Folder of workflows the suites name (also searched: the suites' folders).
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
    /// Folder of Rhai scripts referenced with `file:`.
    #[arg(long, env = "HOOKFLOW_SCRIPTS", default_value = "./scripts")]
    pub scripts: PathBuf,
    /// Folder of connectors that `uses:` steps call.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
    /// Write the stored run RUN_ID as a test case instead of running tests.
    #[arg(long, value_name = "RUN_ID")]
    pub from_run: Option<String>,
    /// The server to read the run from (with --from-run).
    #[arg(long, env = "HOOKFLOW_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Where to write the test case (with --from-run; default: print it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// API token for the server (with --from-run).
    #[arg(long, env = "HOOKFLOW_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<crate::secret::Secret>,
}

pub async fn run(args: TestArgs) -> i32 {
    if let Some(run_id) = &args.from_run {
        return from_run(&args, run_id).await;
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("./workflows")]
    } else {
        args.paths.clone()
    };
    let mut suites = Vec::new();
    for p in &paths {
        if !p.exists() {
            eprintln!("hookflow test: {} does not exist", p.display());
            return EXIT_USAGE;
        }
        if let Err(e) = collect_suites(p, &mut suites) {
            eprintln!("hookflow test: cannot read {}: {e}", p.display());
            return EXIT_USAGE;
        }
    }
    suites.sort();
    if suites.is_empty() {
        eprintln!(
            "hookflow test: no test suites (*.test.yaml) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return EXIT_USAGE;
    }
    let mut roots: Vec<PathBuf> = paths.iter().filter(|p| p.is_dir()).cloned().collect();
    roots.extend(
        suites
            .iter()
            .filter_map(|s| s.parent().map(Path::to_path_buf)),
    );
    if args.workflows.is_dir() {
        roots.push(args.workflows.clone());
    }
    roots.sort();
    roots.dedup();
    let mut by_name: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    for file in registry::workflow_files(&roots).unwrap_or_default() {
        if let Ok(text) = std::fs::read_to_string(&file) {
            by_name
                .entry(registry::peek_name(&file, &text))
                .or_insert((file, text));
        }
    }
    let engine = Engine::default();
    let catalog = crate::workflow::connector::Catalog::load(&args.connectors, &engine);
    let (mut passed, mut failed) = (0usize, 0usize);
    for suite in &suites {
        let text = match std::fs::read_to_string(suite) {
            Ok(t) => t,
            Err(e) => {
                println!("FAIL {}: cannot read: {e}", suite.display());
                failed += 1;
                continue;
            }
        };
        let (spec, problems) = yaml::from_str::<SuiteSpec>(&text);
        if !problems.is_empty() || spec.is_none() {
            for p in &problems {
                println!(
                    "FAIL {}:{}:{}: {}",
                    suite.display(),
                    p.pos.line,
                    p.pos.col,
                    p.message
                );
            }
            failed += 1;
            continue;
        }
        let Some(spec) = spec else { continue };
        let Some((wf_file, wf_text)) = by_name.get(&spec.workflow.value) else {
            println!(
                "FAIL {}:{}:{}: no workflow named `{}` (looked in {})",
                suite.display(),
                spec.workflow.pos.line,
                spec.workflow.pos.col,
                spec.workflow.value,
                roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            failed += spec.cases.len().max(1);
            continue;
        };
        for case in &spec.cases {
            let label = format!("{}: {}", suite.display(), case.value.name);
            let files = CaseFiles {
                suite,
                wf_file,
                wf_text,
                scripts: &args.scripts,
                catalog: &catalog,
            };
            match run_case(&case.value, &files, &engine).await {
                Ok(()) => {
                    println!("ok   {label}");
                    passed += 1;
                }
                Err(why) => {
                    println!("FAIL {label}");
                    for line in why.lines() {
                        println!("     {line}");
                    }
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    }
}

fn collect_suites(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if p.is_file() {
        out.push(p.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(p)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        if path.is_dir() {
            collect_suites(&path, out)?;
        } else if is_test_file(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// The case's env over the process environment.
struct CaseEnv<'a>(&'a BTreeMap<String, String>);

impl EnvLookup for CaseEnv<'_> {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }
}

/// What a case is run with: its suite, the workflow, scripts, connectors.
struct CaseFiles<'a> {
    suite: &'a Path,
    wf_file: &'a Path,
    wf_text: &'a str,
    scripts: &'a Path,
    catalog: &'a crate::workflow::connector::Catalog,
}

async fn run_case(case: &CaseSpec, files: &CaseFiles<'_>, engine: &Engine) -> Result<(), String> {
    let CaseFiles {
        suite,
        wf_file,
        wf_text,
        scripts,
        catalog,
    } = *files;
    let env = CaseEnv(&case.env);
    let dir = ScriptDir(scripts.to_path_buf());
    let cenv = CompileEnv {
        env: &env,
        scripts: &dir,
        engine,
        connectors: catalog,
    };
    let wf = compile(wf_file, wf_text, &cenv).map_err(|issues| {
        issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    let places = step_places(&wf.steps);
    let inbound = inbound_for(case, suite, &wf.path)?;
    let canned = Arc::new(Canned::with_mocks(mocks(&case.mock, &places)?));
    let result = run_once(
        Arc::new(wf),
        inbound,
        case.verify,
        Sender::Canned(canned.clone()),
        engine.clone(),
    )
    .await?;
    check(case, &result, &canned.sent_requests(), &places)
}

/// Every step of a workflow, nested ones included, by id: whether it runs
/// inside a `for_each` (its innermost loop's id).
fn step_places(steps: &[Step]) -> BTreeMap<String, Option<String>> {
    fn walk(steps: &[Step], in_loop: Option<&str>, out: &mut BTreeMap<String, Option<String>>) {
        for s in steps {
            out.insert(s.id.clone(), in_loop.map(String::from));
            let inner = match &s.action {
                Action::ForEach(_) => Some(s.id.as_str()),
                Action::Filter(_)
                | Action::Transform(_)
                | Action::Http(_)
                | Action::Switch(_)
                | Action::Delay(_)
                | Action::Respond(_) => in_loop,
            };
            walk(
                &s.action.children().into_iter().cloned().collect::<Vec<_>>(),
                inner,
                out,
            );
        }
    }
    let mut out = BTreeMap::new();
    walk(steps, None, &mut out);
    out
}

fn inbound_for(case: &CaseSpec, suite: &Path, hook_path: &str) -> Result<Inbound, String> {
    let r = &case.request;
    let mut headers: BTreeMap<String, String> = r
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let (body, default_type) = match (&r.event, &r.event_file, &r.body) {
        (Some(e), None, None) => (
            serde_json::to_vec(&e.value.to_json()).map_err(|e| e.to_string())?,
            "application/json",
        ),
        (None, Some(f), None) => {
            let path = suite.parent().unwrap_or(Path::new(".")).join(&f.value);
            let bytes =
                std::fs::read(&path).map_err(|e| format!("event_file {}: {e}", path.display()))?;
            let json = path.extension().is_some_and(|x| x == "json");
            (
                bytes,
                if json {
                    "application/json"
                } else {
                    "text/plain"
                },
            )
        }
        (None, None, Some(b)) => (b.clone().into_bytes(), "text/plain"),
        (None, None, None) => (b"{}".to_vec(), "application/json"),
        _ => return Err("request: give only one of `event`, `event_file` or `body`".into()),
    };
    headers
        .entry("content-type".into())
        .or_insert_with(|| default_type.into());
    Ok(Inbound {
        method: r
            .method
            .clone()
            .unwrap_or_else(|| "POST".into())
            .to_ascii_uppercase(),
        hook_path: hook_path.to_string(),
        target: crate::inbound::hooks_path(hook_path),
        headers,
        query: r.query.clone(),
        body: body.into(),
        source: None,
    })
}

/// The mocks of a case. A list for a step inside a loop has one entry per
/// item (an answer, or a list of answers per attempt); elsewhere one
/// answer per attempt.
fn mocks(
    spec: &BTreeMap<String, Spanned<YNode>>,
    places: &BTreeMap<String, Option<String>>,
) -> Result<BTreeMap<String, Mock>, String> {
    let mut out = BTreeMap::new();
    for (id, node) in spec {
        let Some(in_loop) = places.get(id) else {
            return Err(format!("mock for `{id}`: the workflow has no such step"));
        };
        let mock = match (node.value.to_json(), in_loop) {
            (Value::Array(items), Some(_)) => Mock::PerItem(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::Array(attempts) => answers(id, attempts),
                        one => answers(id, vec![one]),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (Value::Array(attempts), None) => Mock::Attempts(answers(id, attempts)?),
            (one, _) => Mock::Attempts(answers(id, vec![one])?),
        };
        out.insert(id.clone(), mock);
    }
    Ok(out)
}

/// Mock answers written as `{ status, headers, body }` or `{ error }`.
fn answers(id: &str, list: Vec<Value>) -> Result<Vec<CannedAnswer>, String> {
    let mut out = Vec::new();
    for a in list {
        let Value::Object(m) = a else {
            return Err(format!(
                "mock for `{id}`: each answer is a mapping like {{ status: 200, body: ok }}"
            ));
        };
        if let Some(e) = m.get("error") {
            out.push(Err(crate::expr::template::value_text(e)));
            continue;
        }
        let status = m.get("status").and_then(Value::as_u64).unwrap_or(200);
        let status =
            u16::try_from(status).map_err(|_| format!("mock for `{id}`: bad status {status}"))?;
        let headers = m
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), crate::expr::template::value_text(v)))
                    .collect()
            })
            .unwrap_or_default();
        let body = match m.get("body") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s.clone().into_bytes(),
            Some(v) => v.to_string().into_bytes(),
        };
        out.push(Ok(Response::new(status, headers, body)));
    }
    Ok(out)
}

/// Where a step's record is among a list of records.
enum Found<'a> {
    Here(&'a StepRecord),
    /// Inside the items of this loop: one record per item.
    InLoop(&'a str),
    Missing,
}

/// A step's record in a list: at its level, or inside a switch's branch
/// (which shares the level's scope); a step inside a loop is found per
/// item only.
fn find<'a>(records: &'a [StepRecord], id: &str) -> Found<'a> {
    for r in records {
        if r.id == id {
            return Found::Here(r);
        }
        match find(r.steps.as_deref().unwrap_or_default(), id) {
            Found::Missing => {}
            found => return found,
        }
        let in_items = r
            .items
            .iter()
            .flatten()
            .any(|i| !matches!(find(&i.steps, id), Found::Missing));
        if in_items {
            return Found::InLoop(&r.id);
        }
    }
    Found::Missing
}

fn check(
    case: &CaseSpec,
    result: &CaseRun,
    sent: &[SentRequest],
    places: &BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    let expected_status = case.expect.status.as_ref().map(|s| s.value.clone());
    if let Some(want) = &expected_status {
        if *want != result.status {
            let why = result
                .reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return Err(format!(
                "$.status: expected \"{want}\", got \"{}\"{why}",
                result.status
            ));
        }
    }
    if case.expect.steps.is_empty() {
        return Ok(());
    }
    let Some(run) = &result.run else {
        return Err(format!("$.steps: no run was created ({})", result.status));
    };
    let scope = Level {
        path: "$.steps".to_string(),
        items: Vec::new(),
        sent,
        places,
    };
    check_steps(&scope, &case.expect.steps, &run.steps)
}

/// Where expectations are checked: their path in messages, the loop items
/// they are in, and what the run sent.
struct Level<'a> {
    path: String,
    items: Vec<usize>,
    sent: &'a [SentRequest],
    places: &'a BTreeMap<String, Option<String>>,
}

fn check_steps(
    level: &Level,
    expects: &BTreeMap<String, Spanned<StepExpect>>,
    records: &[StepRecord],
) -> Result<(), String> {
    for (id, exp) in expects {
        let path = child(&level.path, id);
        let step = match find(records, id) {
            Found::Here(step) => step,
            Found::InLoop(each) => {
                return Err(format!(
                    "{path}: `{id}` runs once per item of `{each}`; put its expectations under `{each}: {{ items: [ {{ steps: {{ {id}: … }} }} ] }}`"
                ))
            }
            Found::Missing if level.places.contains_key(id) => {
                return Err(format!(
                    "{path}: step `{id}` has no record here (it is in a branch that was not taken, or in another loop)"
                ))
            }
            Found::Missing => return Err(format!("{path}: the workflow has no step `{id}`")),
        };
        check_step(level, &path, id, &exp.value, step)?;
    }
    Ok(())
}

fn check_step(
    level: &Level,
    path: &str,
    id: &str,
    exp: &StepExpect,
    step: &StepRecord,
) -> Result<(), String> {
    let fail = |d: Difference| Err::<(), String>(d.to_string());
    if let Some(want) = &exp.status {
        let got = serde_json::to_value(step.status).unwrap_or(Value::Null);
        if got != Value::String(want.clone()) {
            let err = step
                .error
                .as_ref()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default();
            return Err(format!(
                "{path}.status: expected \"{want}\", got {got}{err}"
            ));
        }
    }
    if let Some(out) = &exp.output {
        if let Some(d) = first_difference(
            &out.value.to_json(),
            step.output.as_ref(),
            &format!("{path}.output"),
            false,
        ) {
            return fail(d);
        }
    }
    if let Some(sub) = &exp.contains {
        if let Some(d) = first_difference(
            &sub.value.to_json(),
            step.output.as_ref(),
            &format!("{path}.output"),
            true,
        ) {
            return fail(d);
        }
    }
    if let Some(want) = &exp.error {
        let got = step.error.clone().unwrap_or_default();
        if !got.contains(want.as_str()) {
            return Err(format!(
                "{path}.error: expected it to contain \"{want}\", got \"{got}\""
            ));
        }
    }
    if let Some(req) = &exp.request {
        let last = level
            .sent
            .iter()
            .rev()
            .find(|s| s.step_id == id && s.items == level.items)
            .map(|s| &s.request);
        check_request(&format!("{path}.request"), req, last)?;
    }
    if let Some(want) = &exp.branch {
        let got = serde_json::to_value(step.branch).unwrap_or(Value::Null);
        if let Some(d) = first_difference(
            &want.value.to_json(),
            Some(&got),
            &format!("{path}.branch"),
            false,
        ) {
            return fail(d);
        }
    }
    if let Some(want) = &exp.items {
        check_items(level, path, &want.value, step)?;
    }
    Ok(())
}

fn check_items(
    level: &Level,
    path: &str,
    want: &[Spanned<ItemExpect>],
    step: &StepRecord,
) -> Result<(), String> {
    let items = step.items.as_deref().unwrap_or_default();
    if want.len() != items.len() {
        return Err(format!(
            "{path}.items: expected {} items, got {}",
            want.len(),
            items.len()
        ));
    }
    for (i, (exp, item)) in want.iter().zip(items).enumerate() {
        let at = format!("{path}.items[{i}]");
        let exp = &exp.value;
        if let Some(s) = &exp.status {
            if s != item.status.as_str() {
                return Err(format!(
                    "{at}.status: expected \"{s}\", got \"{}\"",
                    item.status.as_str()
                ));
            }
        }
        if let Some(out) = &exp.output {
            if let Some(d) = first_difference(
                &out.value.to_json(),
                Some(&item.output()),
                &format!("{at}.output"),
                false,
            ) {
                return Err(d.to_string());
            }
        }
        let mut items = level.items.clone();
        items.push(i);
        let inner = Level {
            path: format!("{at}.steps"),
            items,
            sent: level.sent,
            places: level.places,
        };
        check_steps(&inner, &exp.steps, &item.steps)?;
    }
    Ok(())
}

fn check_request(
    path: &str,
    want: &RequestExpect,
    got: Option<&crate::step::http::Prepared>,
) -> Result<(), String> {
    let Some(got) = got else {
        return Err(format!("{path}: the step sent no request"));
    };
    if let Some(m) = &want.method {
        if !m.eq_ignore_ascii_case(got.method.as_str()) {
            return Err(format!(
                "{path}.method: expected \"{m}\", got \"{}\"",
                got.method
            ));
        }
    }
    if let Some(u) = &want.url {
        if *u != got.url.as_str() {
            return Err(format!("{path}.url: expected \"{u}\", got \"{}\"", got.url));
        }
    }
    for (k, v) in &want.headers {
        let actual = got
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str());
        if actual != Some(v.as_str()) {
            return Err(format!(
                "{}: expected \"{v}\", got {}",
                child(&format!("{path}.headers"), k),
                actual
                    .map(|a| format!("\"{a}\""))
                    .unwrap_or_else(|| "nothing (missing)".into())
            ));
        }
    }
    if let Some(body) = &want.body {
        let actual = serde_json::from_slice::<Value>(&got.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&got.body).into_owned()));
        if let Some(d) = first_difference(
            &body.value.to_json(),
            Some(&actual),
            &format!("{path}.body"),
            false,
        ) {
            return Err(d.to_string());
        }
    }
    Ok(())
}

async fn from_run(args: &TestArgs, run_id: &str) -> i32 {
    let url = format!(
        "{}/api/runs/{run_id}/test-case",
        args.server.trim_end_matches('/')
    );
    let client = reqwest::Client::new();
    let mut req = client.get(&url);
    if let Some(t) = args
        .api_token
        .as_ref()
        .map(|t| t.expose())
        .filter(|t| !t.is_empty())
    {
        req = req.bearer_auth(t);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookflow test: cannot reach {url}: {e}");
            return EXIT_CHECK_FAILED;
        }
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(text);
        eprintln!("hookflow test: {url} answered {status}: {msg}");
        return EXIT_CHECK_FAILED;
    }
    match &args.out {
        Some(path) => match std::fs::write(path, &text) {
            Ok(()) => {
                eprintln!("wrote {}", path.display());
                EXIT_OK
            }
            Err(e) => {
                eprintln!("hookflow test: cannot write {}: {e}", path.display());
                EXIT_CHECK_FAILED
            }
        },
        None => {
            print!("{text}");
            EXIT_OK
        }
    }
}
