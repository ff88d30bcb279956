//! Property tests over hostile input: randomly mutated workflow files,
//! connector files, conditions, templates and signature headers must give
//! an answer (a value or an error), never a panic. Seeded and bounded, so every run is the
//! same and stops by itself.

use hookflow::expr::condition::Condition;
use hookflow::expr::template::{Template, TemplateEnv, UrlTemplate};
use hookflow::script::Engine;
use hookflow::signature::{Algorithm, Encoding, Scheme, DEFAULT_TOLERANCE};
use hookflow::workflow::compile::{compile, Bundle, CompileEnv};
use hookflow::workflow::connector::Catalog;
use hookflow::workflow::yaml::{self, Spanned, YNode};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

const CASES: usize = 3000;
const SPICE: &[&str] = &[
    "{{", "}}", "$", "[", "]", "'", "\"", ":", "\n", "  ", "- ", "??", "*", "?@", "\\", "\u{0}",
    "é", "{", "}", "#", "&a", "!tag", "|", ">", "%", "env.", "..", "..",
];

fn mutate(rng: &mut fastrand::Rng, seed: &str) -> String {
    let mut s: Vec<char> = seed.chars().collect();
    for _ in 0..rng.usize(1..6) {
        let at = rng.usize(0..=s.len());
        match rng.u8(0..4) {
            0 if !s.is_empty() => {
                let end = (at + rng.usize(1..8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let piece = SPICE[rng.usize(0..SPICE.len())];
                s.splice(at..at, piece.chars());
            }
            2 => s.insert(at, char::from_u32(rng.u32(0..0x3000)).unwrap_or('x')),
            _ => {
                if !s.is_empty() {
                    let from = rng.usize(0..s.len());
                    let c = s[from];
                    s.insert(at, c);
                }
            }
        }
    }
    s.into_iter().collect()
}

const WORKFLOW: &str = r#"name: p
trigger:
  webhook:
    path: /p
    verify: { hmac: { secret: k, header: X-Sig, algorithm: sha256, encoding: hex } }
    dedupe: { key: "{{ $.event.id }}", window: 1h }
  when:
    any: [ { $.event.type: a }, { $.event.n: { gte: 3, in: [3, 4] } } ]
steps:
  - id: f
    filter: { not: { $.event.x: { matches: "^a+$" } }, expr: 'event.n > 1' }
  - id: t
    transform:
      script: |
        let x = event.n * 2;
        #{ y: x, s: `n=${x}` }
  - id: h
    if: { $.steps.t.y: { exists: true } }
    http:
      url: "https://example.test/a/{{ $.steps.t.y }}?q={{ $.event.id ?? 'none' }}"
      headers: { X-A: "{{ $.steps.t.s }}" }
      body: { a: "{{ $.steps.t }}", b: [1, "{{ $.event.n }}"] }
      retry: { attempts: 3, backoff: 1s }
      success: ["2xx", 404]
"#;

#[test]
fn the_workflow_loader_never_panics() {
    let mut rng = fastrand::Rng::with_seed(7);
    let engine = Engine::default();
    let scripts = Bundle {
        file: "p.yaml".into(),
        yaml: String::new(),
        scripts: BTreeMap::new(),
        connectors: BTreeMap::new(),
    };
    let env = |_: &str| -> Option<String> { None };
    let catalog = Catalog::default();
    let cenv = CompileEnv {
        env: &env,
        scripts: &scripts,
        engine: &engine,
        connectors: &catalog,
    };
    assert!(
        compile(Path::new("p.yaml"), WORKFLOW, &cenv).is_ok(),
        "the seed compiles"
    );
    let mut failures = 0;
    for _ in 0..CASES {
        let text = mutate(&mut rng, WORKFLOW);
        if let Err(issues) = compile(Path::new("p.yaml"), &text, &cenv) {
            failures += 1;
            assert!(!issues.is_empty());
            for i in &issues {
                assert!(i.line >= 1 && !i.message.is_empty(), "{i:?}");
            }
        }
    }
    assert!(
        failures > CASES / 4,
        "mutations were mostly rejected, with reasons ({failures})"
    );
}

const CONNECTOR: &str = r#"connector: shop
description: A shop
docs: https://shop.example.com/docs
base_url: "{{ env.SHOP_URL ?? 'https://shop.example.com/api' }}"
headers: { Accept: application/json }
auth:
  oauth2: { token_url: https://shop.example.com/token, client_id: "{{ env.SHOP_ID ?? 'id' }}", client_secret: "{{ env.SHOP_SECRET ?? 's' }}", scopes: [a] }
webhook:
  verify: { hmac: { secret: k, header: X-Sig } }
  dedupe: { key: "{{ $.event.id }}" }
  event_type: "{{ $.event.type }}"
actions:
  create:
    params:
      name: { type: string, required: true, description: d }
      n: { type: integer, enum: [1, 2], default: 1 }
      tags: { type: array }
    http:
      path: "/orders/{{ $.params.name }}"
      query: { n: "{{ $.params.n }}" }
      body: { name: "{{ $.params.name }}", tags: "{{ $.params.tags }}" }
      retry: { attempts: 2, backoff: 1s }
    ok_when: { $.response.body.ok: true }
    error: "{{ $.response.body.error }}"
"#;

const USES: &str = r#"name: u
trigger:
  webhook: { path: /u, provider: shop }
  events: [a]
steps:
  - id: s
    uses: shop.create
    with: { name: "{{ $.event.name }}", n: 2, tags: [x] }
"#;

/// Mutated connector files, and a workflow compiled against each: always
/// an answer with a position, never a panic.
#[test]
fn the_connector_loader_never_panics() {
    let mut rng = fastrand::Rng::with_seed(17);
    let engine = Engine::default();
    let scripts = Bundle {
        file: "u.yaml".into(),
        yaml: String::new(),
        scripts: BTreeMap::new(),
        connectors: BTreeMap::new(),
    };
    let env = |_: &str| -> Option<String> { None };
    let seed = Catalog::from_sources(vec![("shop.yaml".into(), CONNECTOR.into())], &engine);
    assert_eq!(
        seed.issues().count(),
        0,
        "{:?}",
        seed.issues().collect::<Vec<_>>()
    );
    let compiled = |catalog: &Catalog, wf: &str| {
        let cenv = CompileEnv {
            env: &env,
            scripts: &scripts,
            engine: &engine,
            connectors: catalog,
        };
        compile(Path::new("u.yaml"), wf, &cenv)
    };
    assert!(compiled(&seed, USES).is_ok(), "the seed compiles");
    let mut rejected = 0;
    for i in 0..CASES {
        let text = mutate(&mut rng, CONNECTOR);
        let catalog = Catalog::from_sources(vec![("shop.yaml".into(), text)], &engine);
        for issue in catalog.issues() {
            assert!(issue.line >= 1 && !issue.message.is_empty(), "{issue:?}");
        }
        if catalog.issues().next().is_some() {
            rejected += 1;
        }
        // Half the time, the workflow is mutated too.
        let wf = if i % 2 == 0 {
            mutate(&mut rng, USES)
        } else {
            USES.to_string()
        };
        if let Err(issues) = compiled(&catalog, &wf) {
            assert!(issues.iter().all(|i| i.line >= 1 && !i.message.is_empty()));
        }
    }
    assert!(
        rejected > CASES / 4,
        "mutations were mostly rejected ({rejected})"
    );
}

#[test]
fn conditions_never_panic_on_any_data() {
    let mut rng = fastrand::Rng::with_seed(11);
    let engine = Engine::default();
    let seed = "any: [ { $.event.type: a }, { $.event.n: { gte: 3, in: [3, 4] } } ]\nnot: { $.event.x: { matches: '^a+$', contains: b, starts_with: c } }\n$.event.list[*].k: { exists: true }\n";
    let docs = [
        json!({"event": {"type": "a", "n": 3, "x": "aaa", "list": [{"k": 1}]}}),
        json!({"event": {"type": 5, "n": "3", "x": null, "list": "nope"}}),
        json!({"event": [1, 2, {"n": {"deep": [true]}}]}),
        json!(null),
    ];
    for _ in 0..CASES {
        let text = mutate(&mut rng, seed);
        let (node, mut problems) = yaml::from_str::<Spanned<YNode>>(&text);
        if let Some(node) = node {
            if let Some(c) = Condition::compile(&node, &engine, &mut problems) {
                for d in &docs {
                    let _ = c.eval(d);
                }
            }
        }
    }
}

#[test]
fn templates_never_panic() {
    let mut rng = fastrand::Rng::with_seed(13);
    let env = |n: &str| (n == "HOME_URL").then(|| "https://x.test/a b".to_string());
    let seed = "https://h.test/{{ $.event.id }}/x?q={{ $.event['a b'] ?? env.HOME_URL ?? 'dflt' }}&n={{ $.event.list[*] }}";
    let ctx = json!({"event": {"id": "a/b", "a b": null, "list": [1, "two", {"three": 3}]}});
    for _ in 0..CASES {
        let text = mutate(&mut rng, seed);
        let mut secrets = Vec::new();
        let mut tenv = TemplateEnv {
            env: &env,
            secrets: &mut secrets,
        };
        if let Ok(t) = UrlTemplate::compile(&text, &mut tenv) {
            let rendered = t.render_text(&ctx);
            if let Ok(url) = url::Url::parse(&rendered) {
                let _ = t.check(&url);
            }
        }
        let mut tenv = TemplateEnv {
            env: &env,
            secrets: &mut secrets,
        };
        if let Ok(t) = Template::compile(&text, &mut tenv) {
            let _ = t.render_value(&ctx);
        }
    }
}

#[test]
fn signature_parsers_never_panic() {
    let mut rng = fastrand::Rng::with_seed(17);
    let schemes = [
        (
            Scheme::Stripe {
                tolerance: DEFAULT_TOLERANCE,
            },
            "stripe-signature",
            "t=1700000000,v1=abcdef0123,v1=zz,v0=1",
        ),
        (
            Scheme::Github,
            "x-hub-signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        (Scheme::Shopify, "x-shopify-hmac-sha256", "dGVzdA=="),
        (
            Scheme::Slack {
                tolerance: DEFAULT_TOLERANCE,
            },
            "x-slack-signature",
            "v0=abcdef",
        ),
        (
            Scheme::Standard {
                tolerance: DEFAULT_TOLERANCE,
            },
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,x",
        ),
        (
            Scheme::Hmac {
                header: "X-Sig".into(),
                algorithm: Algorithm::Sha1,
                encoding: Encoding::Base64,
                prefix: "sha1=".into(),
            },
            "x-sig",
            "sha1=AAAA",
        ),
        (
            Scheme::Gitlab,
            "x-gitlab-token",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        (
            Scheme::Twilio,
            "x-twilio-signature",
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
        ),
        (
            Scheme::Linear {
                tolerance: DEFAULT_TOLERANCE,
            },
            "linear-signature",
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        (
            Scheme::Hubspot {
                tolerance: DEFAULT_TOLERANCE,
            },
            "x-hubspot-signature-v3",
            "dGVzdA==",
        ),
    ];
    for (scheme, header, seed) in &schemes {
        for _ in 0..CASES / 3 {
            let mut headers = BTreeMap::new();
            headers.insert(header.to_string(), mutate(&mut rng, seed));
            headers.insert(
                "x-slack-request-timestamp".to_string(),
                mutate(&mut rng, "1700000000"),
            );
            headers.insert("webhook-id".to_string(), mutate(&mut rng, "msg_1"));
            headers.insert(
                "webhook-timestamp".to_string(),
                mutate(&mut rng, "1700000000"),
            );
            headers.insert(
                "x-hubspot-request-timestamp".to_string(),
                mutate(&mut rng, "1700000000000"),
            );
            let secret = mutate(&mut rng, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
            let body = mutate(&mut rng, "{\"a\":1,\"webhookTimestamp\":1700000000000}");
            assert!(
                scheme
                    .verify(secret.as_bytes(), &headers, body.as_bytes(), 1700000000)
                    .is_err()
                    || body == "{\"a\":1,\"webhookTimestamp\":1700000000000}"
            );
            // The schemes that sign the URL, with a mangled one.
            let url = mutate(
                &mut rng,
                "https://h.example.com/hooks/x?a=%3A&bodySHA256=ab",
            );
            let signed = hookflow::signature::Signed {
                method: "POST",
                url: &url,
                headers: &headers,
                body: body.as_bytes(),
            };
            let _ = scheme.verify_request(secret.as_bytes(), &signed, 1700000000);
        }
    }
}
