//! `hookflow run WORKFLOW --event FILE [--header 'K: V']... [--send]`: one
//! event through one workflow, printed as a step trace. Nothing leaves the
//! machine unless `--send`: `http` steps show the request they would send.
//! The trace is printed from the run record, so secrets show as
//! `[redacted]` there as everywhere else; a switch's branch and a loop's
//! items are indented under their step. Retry waits and delays are not
//! waited for.

use super::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::expr::template::ProcessEnv;
use crate::inbound::Inbound;
use crate::record::{Branch, Run, StepKind, StepRecord, StepStatus};
use crate::script::Engine;
use crate::step::http::{Canned, Sender};
use crate::step::policy::OutboundPolicy;
use crate::testcase::runner::run_once;
use crate::workflow::compile::{compile, CompileEnv, ScriptDir};
use crate::workflow::registry;
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A workflow name (looked up in --workflows) or a workflow file.
    pub workflow: String,
    /// The event body (a .json file is sent as JSON).
    #[arg(long)]
    pub event: PathBuf,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Really send the outbound requests.
    #[arg(long)]
    pub send: bool,
    /// Print the run record as JSON instead of the trace.
    #[arg(long)]
    pub json: bool,
    /// Check the signature too (skipped by default).
    #[arg(long)]
    pub verify: bool,
    #[arg(long, env = "HOOKFLOW_WORKFLOWS", default_value = "./workflows")]
    pub workflows: PathBuf,
    #[arg(long, env = "HOOKFLOW_SCRIPTS", default_value = "./scripts")]
    pub scripts: PathBuf,
    /// Folder of connectors that `uses:` steps call.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
    /// With --send: also refuse loopback and private addresses.
    #[arg(long, env = "HOOKFLOW_DENY_PRIVATE_NETWORK")]
    pub deny_private_network: bool,
    /// The log's redactor: given the workflow's secrets once it compiles
    /// (set by `main`).
    #[arg(skip)]
    pub log_secrets: crate::secret::LogSecrets,
}

fn find_workflow(args: &RunArgs) -> Result<(PathBuf, String), String> {
    let direct = Path::new(&args.workflow);
    if direct.is_file() {
        let text = std::fs::read_to_string(direct)
            .map_err(|e| format!("cannot read {}: {e}", direct.display()))?;
        return Ok((direct.to_path_buf(), text));
    }
    let files = registry::workflow_files(std::slice::from_ref(&args.workflows))
        .map_err(|e| format!("cannot read {}: {e}", args.workflows.display()))?;
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            if registry::peek_name(&f, &text) == args.workflow {
                return Ok((f, text));
            }
        }
    }
    Err(format!(
        "no workflow named `{}` in {} (give a name or a file path)",
        args.workflow,
        args.workflows.display()
    ))
}

pub async fn run(args: RunArgs) -> i32 {
    let (file, text) = match find_workflow(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("hookflow run: {e}");
            return EXIT_USAGE;
        }
    };
    let engine = Engine::default();
    let scripts = ScriptDir(args.scripts.clone());
    let catalog = crate::workflow::connector::Catalog::load(&args.connectors, &engine);
    let wf = match compile(
        &file,
        &text,
        &CompileEnv {
            env: &ProcessEnv,
            scripts: &scripts,
            engine: &engine,
            connectors: &catalog,
        },
    ) {
        Ok(w) => w,
        Err(issues) => {
            for i in issues {
                eprintln!("{i}");
            }
            return EXIT_CHECK_FAILED;
        }
    };
    let body = match std::fs::read(&args.event) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hookflow run: cannot read {}: {e}", args.event.display());
            return EXIT_USAGE;
        }
    };
    let mut headers = BTreeMap::new();
    for h in &args.headers {
        let Some((k, v)) = h.split_once(':') else {
            eprintln!("hookflow run: --header takes `Name: value`, got `{h}`");
            return EXIT_USAGE;
        };
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let json = args.event.extension().is_some_and(|x| x == "json");
    headers.entry("content-type".into()).or_insert_with(|| {
        (if json {
            "application/json"
        } else {
            "text/plain"
        })
        .into()
    });
    let inbound = Inbound {
        method: wf.methods.first().cloned().unwrap_or_else(|| "POST".into()),
        hook_path: wf.path.clone(),
        target: crate::inbound::hooks_path(&wf.path),
        headers,
        query: BTreeMap::new(),
        body: body.into(),
        source: None,
    };
    let sender = if args.send {
        match Sender::live(OutboundPolicy {
            deny_private: args.deny_private_network,
        }) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("hookflow run: {e}");
                return 1;
            }
        }
    } else {
        Sender::Canned(Arc::new(Canned::default()))
    };
    let name = wf.name.clone();
    let version = wf.version.clone();
    let redactor = wf.redactor.clone();
    args.log_secrets.set(redactor.clone());
    let result = match run_once(Arc::new(wf), inbound, args.verify, sender, engine).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookflow run: {e}");
            return 1;
        }
    };
    // The run record is redacted already; why no run was made may quote
    // the event.
    let reason = result
        .reason
        .as_deref()
        .map(|r| redactor.redacted(r).into_owned());
    if args.json {
        let v = match &result.run {
            Some(run) => serde_json::to_value(run).unwrap_or_default(),
            None => serde_json::json!({ "status": result.status, "reason": reason }),
        };
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!("workflow {name} (version {version})");
        match &result.run {
            None => println!("no run: {} — {}", result.status, reason.unwrap_or_default()),
            Some(run) => print_trace(run, args.send),
        }
    }
    match result.status.as_str() {
        "succeeded" | "filtered" => EXIT_OK,
        _ => EXIT_CHECK_FAILED,
    }
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 300 {
        format!("{}…", s.chars().take(300).collect::<String>())
    } else {
        s
    }
}

fn print_trace(run: &Run, sent: bool) {
    print_steps(&run.steps, "", sent);
    println!(
        "run {}: {}{}",
        run.id,
        run.status.as_str(),
        run.error
            .as_ref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    );
}

/// One line per step, its details below it; a switch's branch and a
/// loop's items indented under it.
fn print_steps(steps: &[StepRecord], indent: &str, sent: bool) {
    for step in steps {
        let mark = match step.status {
            StepStatus::Succeeded => "ok  ",
            StepStatus::Filtered => "STOP",
            StepStatus::Skipped => "skip",
            StepStatus::Failed => "FAIL",
            StepStatus::Waiting => "wait",
            StepStatus::Pending | StepStatus::Running | StepStatus::Retrying => "  - ",
        };
        let ms = step
            .duration_ms
            .map(|d| format!("{d} ms"))
            .unwrap_or_default();
        // A `uses` step shows its connector action.
        let kind = step.uses.as_deref().unwrap_or(step.kind.as_str());
        println!(
            "{indent}{mark} {:<20} {:<10} {:<10} {ms}",
            step.id,
            kind,
            step.status.as_str()
        );
        print_details(step, indent, sent);
        if let Some(branch) = step.branch {
            let which = match branch {
                Branch::Case(i) => format!("branch {i} (case {i})"),
                Branch::Default => "branch default".to_string(),
                Branch::None => "no branch (no case held, and there is no default)".to_string(),
            };
            println!("{indent}       {which}");
            print_steps(
                step.steps.as_deref().unwrap_or_default(),
                &format!("{indent}    "),
                sent,
            );
        }
        for item in step.items.iter().flatten() {
            println!(
                "{indent}       item {}: {}",
                item.index,
                item.status.as_str()
            );
            print_steps(&item.steps, &format!("{indent}        "), sent);
        }
    }
}

fn print_details(step: &StepRecord, indent: &str, sent: bool) {
    for line in &step.logs {
        println!("{indent}       log: {line}");
    }
    for a in &step.attempts {
        let how = if sent {
            "sent"
        } else {
            "would send (dry run; --send to send)"
        };
        println!(
            "{indent}       attempt {}: {how} {} {}",
            a.n, a.request.method, a.request.url
        );
        for (k, v) in &a.request.headers {
            println!("{indent}         {k}: {v}");
        }
        if !a.request.body.is_null() {
            println!("{indent}         {}", short(&a.request.body));
        }
        if sent {
            match (&a.response, &a.error) {
                (Some(r), _) => println!("{indent}       answer: {} {}", r.status, short(&r.body)),
                (None, Some(e)) => println!("{indent}       error: {e}"),
                (None, None) => {}
            }
        }
    }
    if let Some(out) = &step.output {
        // A loop's output is its items' outputs, shown with each item.
        let shown = match step.kind {
            StepKind::Http => sent,
            StepKind::ForEach => false,
            StepKind::Filter
            | StepKind::Transform
            | StepKind::Switch
            | StepKind::Delay
            | StepKind::Respond => true,
        };
        if shown {
            println!("{indent}       output: {}", short(out));
        }
    }
    if let Some(e) = &step.error {
        println!("{indent}       error: {e}");
    }
}
