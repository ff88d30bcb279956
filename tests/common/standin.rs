//! Stand-ins for providers' APIs: a real HTTP server on a loopback port,
//! built from a list of routes. Each route checks a request the way the
//! provider's API reference says (method, path, auth form, content type,
//! required fields, body shape) and answers the provider's documented
//! bodies. A request that breaks a check is answered `400` with the reason
//! and kept as a violation, so a test that expects success sees both the
//! failed step and why; `violations()` lists them.
//!
//! A connector test points the connector at a stand-in with the connector's
//! `<NAME>_BASE_URL` variable (see `connectors/README.md`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// A request as a stand-in received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
    /// The `{name}` segments of the route's pattern, decoded.
    pub params: BTreeMap<String, String>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        serde_urlencoded::from_bytes(&self.body).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The token of `Authorization: Bearer <token>`.
    pub fn bearer(&self) -> Option<&str> {
        self.header("authorization")?.strip_prefix("Bearer ")
    }

    /// User and password of `Authorization: Basic <base64>`.
    pub fn basic(&self) -> Option<(String, String)> {
        let b64 = self.header("authorization")?.strip_prefix("Basic ")?;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }
}

/// An answer: status, headers, raw body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.to_string(),
        }
    }

    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

type CheckFn = Arc<dyn Fn(&Request) -> Result<(), String> + Send + Sync>;
type ReplyFn = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

/// One endpoint of a stand-in.
#[derive(Clone)]
pub struct Route {
    method: Method,
    /// Segments; `{name}` captures one segment.
    pattern: Vec<String>,
    /// Who may call: a failing check answers with `denied` (the provider's
    /// documented answer to bad credentials), not a violation.
    auth: Option<(CheckFn, ReplyFn)>,
    checks: Vec<CheckFn>,
    reply: ReplyFn,
}

impl Route {
    pub fn new(method: &str, pattern: &str) -> Route {
        Route {
            method: Method::from_bytes(method.as_bytes()).expect("a method"),
            pattern: pattern
                .trim_start_matches('/')
                .split('/')
                .map(str::to_string)
                .collect(),
            auth: None,
            checks: Vec::new(),
            reply: Arc::new(|_| Reply::empty(200)),
        }
    }

    pub fn post(pattern: &str) -> Route {
        Route::new("POST", pattern)
    }

    /// The key under which replies are queued: `POST /a/{b}`.
    pub fn key(&self) -> String {
        format!("{} /{}", self.method, self.pattern.join("/"))
    }

    /// Only callers that pass `allowed` are served; others get `denied`.
    pub fn auth(
        mut self,
        allowed: impl Fn(&Request) -> bool + Send + Sync + 'static,
        denied: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Route {
        self.auth = Some((
            Arc::new(move |r| {
                if allowed(r) {
                    Ok(())
                } else {
                    Err("refused".into())
                }
            }),
            Arc::new(denied),
        ));
        self
    }

    /// `Authorization: Bearer <token>` with exactly this token.
    pub fn bearer(self, token: &str, denied: Reply) -> Route {
        let token = token.to_string();
        self.auth(
            move |r| r.bearer() == Some(token.as_str()),
            move |_| denied.clone(),
        )
    }

    /// A check of the request's shape; a request that fails it is a
    /// violation.
    pub fn check(
        mut self,
        check: impl Fn(&Request) -> Result<(), String> + Send + Sync + 'static,
    ) -> Route {
        self.checks.push(Arc::new(check));
        self
    }

    /// The request's `Content-Type` starts with `ct`.
    pub fn content_type(self, ct: &'static str) -> Route {
        self.check(move |r| match r.header("content-type") {
            Some(v) if v.starts_with(ct) => Ok(()),
            other => Err(format!("Content-Type must be {ct}, got {other:?}")),
        })
    }

    /// The header is present with this value.
    pub fn header(self, name: &'static str, value: &'static str) -> Route {
        self.check(move |r| match r.header(name) {
            Some(v) if v == value => Ok(()),
            other => Err(format!("header {name} must be {value:?}, got {other:?}")),
        })
    }

    /// The header is present (any value).
    pub fn has_header(self, name: &'static str) -> Route {
        self.check(move |r| match r.header(name) {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(format!("header {name} is required")),
        })
    }

    /// The JSON body is an object holding each of these fields, none null.
    pub fn json_fields(self, fields: &'static [&'static str]) -> Route {
        self.check(move |r| {
            let body = r.json();
            let Some(obj) = body.as_object() else {
                return Err(format!("the body must be a JSON object, got {}", r.text()));
            };
            for f in fields {
                match obj.get(*f) {
                    None | Some(Value::Null) => return Err(format!("field `{f}` is required")),
                    Some(_) => {}
                }
            }
            Ok(())
        })
    }

    /// The JSON body holds only these fields (no null values either:
    /// providers reject `null` where a field is optional).
    pub fn json_only(self, allowed: &'static [&'static str]) -> Route {
        self.check(move |r| {
            let body = r.json();
            let Some(obj) = body.as_object() else {
                return Err("the body must be a JSON object".into());
            };
            for (k, v) in obj {
                if !allowed.contains(&k.as_str()) {
                    return Err(format!("field `{k}` is not part of this API"));
                }
                if v.is_null() {
                    return Err(format!("field `{k}` is null"));
                }
            }
            Ok(())
        })
    }

    /// The form body holds each of these fields.
    pub fn form_fields(self, fields: &'static [&'static str]) -> Route {
        self.check(move |r| {
            let form = r.form();
            for f in fields {
                if form.get(*f).is_none_or(|v| v.is_empty()) {
                    return Err(format!("form field `{f}` is required"));
                }
            }
            Ok(())
        })
    }

    /// The query holds this parameter with this value.
    pub fn query(self, name: &'static str, value: &'static str) -> Route {
        self.check(move |r| match r.query.get(name) {
            Some(v) if v == value => Ok(()),
            other => Err(format!("query {name} must be {value:?}, got {other:?}")),
        })
    }

    /// The answer when nothing is queued for this route.
    pub fn reply(mut self, reply: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Route {
        self.reply = Arc::new(reply);
        self
    }

    fn matches(&self, method: &Method, path: &str) -> Option<BTreeMap<String, String>> {
        if *method != self.method {
            return None;
        }
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if segs.len() != self.pattern.len() {
            return None;
        }
        let mut params = BTreeMap::new();
        for (p, s) in self.pattern.iter().zip(&segs) {
            // `{name}` is a whole segment; `{name}:verb` one that ends in
            // `:verb` (Google's custom methods).
            let capture = p
                .strip_prefix('{')
                .and_then(|p| p.split_once('}'))
                .and_then(|(name, suffix)| Some((name, s.strip_suffix(suffix)?)));
            match capture {
                Some((name, raw)) => {
                    let decoded = percent_encoding::percent_decode_str(raw)
                        .decode_utf8_lossy()
                        .into_owned();
                    params.insert(name.to_string(), decoded);
                }
                None if p == s => {}
                None => return None,
            }
        }
        Some(params)
    }
}

#[derive(Clone)]
struct Shared {
    routes: Arc<Vec<Route>>,
    queued: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    log: Arc<Mutex<Vec<Request>>>,
    violations: Arc<Mutex<Vec<String>>>,
    delay: Arc<Mutex<HashMap<String, Duration>>>,
    tx: mpsc::UnboundedSender<Request>,
}

/// A provider's stand-in, serving until dropped with the test's runtime.
pub struct StandIn {
    pub base: String,
    shared: Shared,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>,
}

impl StandIn {
    pub async fn start(routes: Vec<Route>) -> StandIn {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared {
            routes: Arc::new(routes),
            queued: Arc::default(),
            log: Arc::default(),
            violations: Arc::default(),
            delay: Arc::default(),
            tx,
        };
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stand-in");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn {
            base: format!("http://{addr}"),
            shared,
            rx: tokio::sync::Mutex::new(rx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answer the next requests to the route `key` (`POST /a/{b}`) with
    /// these, in order, before its usual answer.
    pub fn queue(&self, key: &str, replies: Vec<Reply>) {
        self.shared
            .queued
            .lock()
            .expect("lock")
            .entry(key.to_string())
            .or_default()
            .extend(replies);
    }

    /// Hold every answer of route `key` this long (to make callers overlap).
    pub fn delay(&self, key: &str, d: Duration) {
        self.shared
            .delay
            .lock()
            .expect("lock")
            .insert(key.to_string(), d);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().expect("lock").clone()
    }

    /// The requests received on one route.
    pub fn requests_to(&self, key: &str) -> Vec<Request> {
        let routes = &self.shared.routes;
        self.requests()
            .into_iter()
            .filter(|r| {
                let method = Method::from_bytes(r.method.as_bytes()).expect("method");
                routes
                    .iter()
                    .any(|route| route.key() == key && route.matches(&method, &r.path).is_some())
            })
            .collect()
    }

    /// Requests that broke a check of the provider's API reference.
    pub fn violations(&self) -> Vec<String> {
        self.shared.violations.lock().expect("lock").clone()
    }

    /// The next request, waiting a bounded time.
    pub async fn next(&self) -> Request {
        let mut rx = self.rx.lock().await;
        tokio::time::timeout(Duration::from_secs(15), rx.recv())
            .await
            .expect("the stand-in received a request in time")
            .expect("open")
    }
}

async fn serve(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let mut req = Request {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri
            .query()
            .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
        params: BTreeMap::new(),
    };
    let found = s
        .routes
        .iter()
        .find_map(|r| r.matches(&method, uri.path()).map(|p| (r, p)));
    let reply = match found {
        None => {
            let why = format!("no route for {method} {}", uri.path());
            s.violations.lock().expect("lock").push(why.clone());
            Reply::json(404, serde_json::json!({ "standin": why }))
        }
        Some((route, params)) => {
            req.params = params;
            let delay = s.delay.lock().expect("lock").get(&route.key()).copied();
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match &route.auth {
                Some((check, denied)) if check(&req).is_err() => denied(&req),
                _ => match route.checks.iter().find_map(|c| c(&req).err()) {
                    Some(why) => {
                        let why = format!("{}: {why}", route.key());
                        s.violations.lock().expect("lock").push(why.clone());
                        Reply::json(400, serde_json::json!({ "standin": why }))
                    }
                    None => {
                        let queued = s
                            .queued
                            .lock()
                            .expect("lock")
                            .get_mut(&route.key())
                            .and_then(VecDeque::pop_front);
                        queued.unwrap_or_else(|| (route.reply)(&req))
                    }
                },
            }
        }
    };
    s.log.lock().expect("lock").push(req.clone());
    let _ = s.tx.send(req);
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (k.parse::<axum::http::HeaderName>(), v.parse()) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}
