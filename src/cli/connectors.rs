//! `hookflow connectors [NAME]`: the connectors of `--connectors`, their
//! actions and parameters. With a connector's name (or `name.action`):
//! that connector in full — its API reference, auth and the variables it
//! reads, and each action's parameters with type, default and
//! description. Invalid connector files are listed with their problems
//! (exit 1); an unknown name is a usage error (exit 2).

use super::{EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE};
use crate::script::Engine;
use crate::workflow::connector::{base_url_variable, param_type, Catalog, Connector, Lookup};
use crate::workflow::yaml::did_you_mean;
use clap::Args;
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ConnectorsArgs {
    /// A connector (`slack`) or one of its actions (`slack.post_message`).
    pub name: Option<String>,
    /// Folder of connectors.
    #[arg(long, env = "HOOKFLOW_CONNECTORS", default_value = "./connectors")]
    pub connectors: PathBuf,
}

pub fn run(args: ConnectorsArgs) -> i32 {
    let catalog = Catalog::load(&args.connectors, &Engine::default());
    let Some(name) = &args.name else {
        print!("{}", list(&catalog));
        return if catalog.issues().next().is_some() {
            EXIT_CHECK_FAILED
        } else {
            EXIT_OK
        };
    };
    let (cname, action) = match name.split_once('.') {
        Some((c, a)) => (c, Some(a)),
        None => (name.as_str(), None),
    };
    match catalog.lookup(cname) {
        Lookup::Found(c) => {
            if let Some(a) = action {
                if c.spec.actions.get(a).is_none() {
                    let hint = match did_you_mean(a, c.spec.actions.keys()) {
                        Some(x) => format!("; did you mean `{x}`?"),
                        None => String::new(),
                    };
                    eprintln!("hookflow connectors: `{cname}` has no action `{a}`{hint}");
                    return EXIT_USAGE;
                }
            }
            print!("{}", describe(c, action));
            EXIT_OK
        }
        Lookup::Invalid(file) => {
            println!("{cname}: invalid ({})", file.display());
            for f in catalog.files.iter().filter(|f| f.name == cname) {
                for i in &f.issues {
                    println!("  {i}");
                }
            }
            EXIT_CHECK_FAILED
        }
        Lookup::Missing => {
            let hint = match did_you_mean(cname, catalog.names()) {
                Some(x) => format!("; did you mean `{x}`?"),
                None => format!(" in {}", args.connectors.display()),
            };
            eprintln!("hookflow connectors: no connector `{cname}`{hint}");
            EXIT_USAGE
        }
    }
}

/// One block per connector: its actions, each with its parameters.
fn list(catalog: &Catalog) -> String {
    let mut out = String::new();
    for c in catalog.iter() {
        let _ = writeln!(
            out,
            "{} — {}",
            c.name,
            c.spec.description.as_deref().unwrap_or("")
        );
        for (aname, a) in &c.spec.actions.0 {
            let params: Vec<String> = a
                .value
                .params
                .0
                .iter()
                .map(|(p, spec)| {
                    if spec.value.required == Some(true) {
                        format!("{}*", p.value)
                    } else {
                        p.value.clone()
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "  {}.{}({})  {}",
                c.name,
                aname.value,
                params.join(", "),
                a.value.description.as_deref().unwrap_or("")
            );
        }
    }
    for f in catalog.files.iter().filter(|f| !f.issues.is_empty()) {
        let _ = writeln!(out, "{}: invalid ({})", f.name, f.file.display());
        for i in &f.issues {
            let _ = writeln!(out, "  {i}");
        }
    }
    if catalog.files.is_empty() {
        let place = catalog
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let _ = writeln!(out, "no connectors in {place}");
    } else {
        let _ = writeln!(
            out,
            "(* required; `hookflow connectors NAME` for parameters and settings)"
        );
    }
    out
}

/// A connector in full, or one of its actions.
fn describe(c: &Connector, only: Option<&str>) -> String {
    let spec = &c.spec;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {}",
        c.name,
        spec.description.as_deref().unwrap_or("")
    );
    let _ = writeln!(out, "  file:     {}", c.file.display());
    if let Some(d) = &spec.docs {
        let _ = writeln!(out, "  docs:     {d}");
    }
    if let Some(b) = &spec.base_url {
        let _ = writeln!(
            out,
            "  base url: {} (set {} to send elsewhere)",
            b.value,
            base_url_variable(&c.name)
        );
    }
    let _ = writeln!(out, "  auth:     {}", c.auth_kind());
    let actions: Vec<&str> = match only {
        Some(a) => vec![a],
        None => spec.actions.keys().collect(),
    };
    let vars = c.env_vars(actions.iter().copied());
    if !vars.is_empty() {
        let names: Vec<String> = vars
            .iter()
            .map(|v| {
                if v.optional {
                    format!("{} (optional)", v.name)
                } else {
                    v.name.clone()
                }
            })
            .collect();
        let _ = writeln!(out, "  reads:    {}", names.join(", "));
    }
    if spec.webhook.is_some() {
        let _ = writeln!(
            out,
            "  webhooks: `provider: {}` verifies and sorts what it sends",
            c.name
        );
    }
    for (aname, a) in &spec.actions.0 {
        if !actions.contains(&aname.value.as_str()) {
            continue;
        }
        let a = &a.value;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{}.{} — {}",
            c.name,
            aname.value,
            a.description.as_deref().unwrap_or("")
        );
        if let Some(d) = &a.docs {
            let _ = writeln!(out, "  docs: {d}");
        }
        if a.params.0.is_empty() {
            let _ = writeln!(out, "  (no parameters)");
        }
        for (pname, p) in &a.params.0 {
            let p = &p.value;
            let mut kind = param_type(p).name().to_string();
            if let Some(values) = &p.enum_ {
                let values: Vec<String> = values
                    .iter()
                    .map(|v| crate::expr::template::value_text(&v.value.to_json()))
                    .collect();
                let _ = write!(kind, " ({})", values.join(", "));
            }
            if p.required == Some(true) {
                kind.push_str(", required");
            }
            if let Some(d) = &p.default {
                let _ = write!(
                    kind,
                    ", default {}",
                    crate::expr::template::value_text(&d.value.to_json())
                );
            }
            let _ = writeln!(
                out,
                "  {:<16} {:<28} {}",
                pname.value,
                kind,
                p.description.as_deref().unwrap_or("")
            );
        }
    }
    out
}
