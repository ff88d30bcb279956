//! The harness of the connector tests: the real binary serving one
//! workflow with the shipped connectors (`connectors/`), its environment
//! set for the connector (tokens, and `<NAME>_BASE_URL` pointing the
//! connector at its stand-in), on a new store of the backend the test
//! runs on (sled or PostgreSQL, see [`super::Backend`]), and helpers to
//! post an event and read the run, the events and the log back.

use super::{wait_run_at, Backend, BinServer};
use serde_json::Value;

pub struct Harness {
    pub server: BinServer,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The shipped connectors folder.
pub fn shipped() -> String {
    format!("{}/connectors", env!("CARGO_MANIFEST_DIR"))
}

impl Harness {
    /// Serve `workflow` (YAML, served at the path it names) with the
    /// shipped connectors and this environment, on a new store of
    /// `backend`.
    pub fn start(backend: Backend, workflow: &str, env: &[(&str, &str)]) -> Harness {
        Self::start_with(backend, workflow, env, &shipped())
    }

    /// Like [`Harness::start`], with another connectors folder.
    pub fn start_with(
        backend: Backend,
        workflow: &str,
        env: &[(&str, &str)],
        connectors: &str,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tmp");
        let wf = dir.path().join("workflows");
        super::write_files(&wf, &[("wf.yaml", workflow)]);
        let mut args = vec![
            "--workflows".to_string(),
            wf.display().to_string(),
            "--connectors".to_string(),
            connectors.to_string(),
        ];
        // Kept with the other arguments: a restart comes back on the same
        // store (the same folder, or the same database).
        args.extend(backend.store_args(dir.path()));
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Everything the server logs is searched for secrets by the tests.
        env.push(("HOOKFLOW_LOG".into(), "debug".into()));
        let server = Self::spawn(&args, &env);
        Harness {
            server,
            client: super::client(),
            dir,
            args,
            env,
        }
    }

    fn spawn(args: &[String], env: &[(String, String)]) -> BinServer {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        BinServer::start(&args, &env)
    }

    /// Stop the server (SIGTERM) and start it again on the same store.
    pub fn restart(self) -> Harness {
        let Harness {
            server,
            client,
            dir,
            args,
            env,
        } = self;
        let log = server.log.clone();
        server.terminate();
        let server = Self::spawn(&args, &env);
        // Keep the first life's log for the secret checks.
        let before = log.lock().expect("log").clone();
        server.log.lock().expect("log").splice(0..0, before);
        Harness {
            server,
            client,
            dir,
            args,
            env,
        }
    }

    /// The folder holding this server's workflows and data.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// POST a JSON event to `/hooks<path>`; the answer's status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(self.server.url(&format!("/hooks{path}")))
            .json(body)
            .send()
            .await
            .expect("sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POST a JSON event and wait for its one run to finish.
    pub async fn run(&self, path: &str, body: &Value) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 202, "{answer}");
        let id = answer["runs"][0].as_str().expect("one run").to_string();
        wait_run_at(&self.client, &self.server.base, &id).await
    }

    /// GET an API path as text (to search it for secrets).
    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(self.server.url(path))
            .send()
            .await
            .expect("sent")
            .text()
            .await
            .expect("text")
    }

    /// The loaded workflows, as `/api/workflows` shows them.
    pub async fn workflows(&self) -> Value {
        serde_json::from_str(&self.text("/api/workflows").await).expect("json")
    }

    /// Every stored run and event, and the log so far, as one text.
    pub async fn history_and_log(&self) -> String {
        let runs = self.text("/api/runs?limit=500").await;
        let events = self.text("/api/events?limit=500").await;
        let log = self.server.log.lock().expect("log").join("\n");
        format!("{runs}\n{events}\n{log}")
    }
}

/// The record of step `id` in a run.
pub fn step<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == id))
        .unwrap_or_else(|| panic!("no step {id} in {run}"))
}
