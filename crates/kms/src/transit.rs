//! The transit secrets engine of Vault or OpenBao, over its HTTP API.

use crate::KekProvider;
use crate::blob::{ContextBinding, KekRef, WrappedDek};
use crate::context::WrapContext;
use crate::error::{KmsError, ProviderKind, clip};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyturn_format::SecretKey;
use keyturn_keys::{SecretSource, SecretString};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

const P: ProviderKind = ProviderKind::Transit;
const DEK_LEN: usize = 32;

/// Reads the transit token: from `source`, else `VAULT_TOKEN`, then
/// `BAO_TOKEN`. Never from the command line.
fn load_token(source: Option<&SecretSource>) -> Result<SecretString, KmsError> {
    let cfg = |m: String| KmsError::config(P, m);
    let read = |s: &SecretSource| {
        s.read_secret("token file").map_err(|e| match e {
            keyturn_keys::KeyError::EnvMissing(var) => {
                cfg(format!("no token: environment variable {var} is not set"))
            }
            keyturn_keys::KeyError::Empty(_) => cfg("the token is empty".into()),
            other => cfg(format!("token: {other}")),
        })
    };
    if let Some(s) = source {
        return read(s);
    }
    for var in ["VAULT_TOKEN", "BAO_TOKEN"] {
        if std::env::var_os(var).is_some() {
            return read(&SecretSource::Env(var.into()));
        }
    }
    Err(cfg(
        "no token: set VAULT_TOKEN or BAO_TOKEN, or configure a token file".into(),
    ))
}

/// Configuration of a [`TransitKek`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TransitConfig {
    /// Server address, `http://host:port` or `https://host:port`.
    pub address: String,
    /// Mount path of the transit engine (default `transit`).
    pub mount: String,
    /// Name of the transit key (type aes256-gcm96 or chacha20-poly1305).
    pub key_name: String,
    /// Where the token comes from; `None`: `VAULT_TOKEN`, then `BAO_TOKEN`.
    pub token: Option<SecretSource>,
    /// Enterprise/OpenBao namespace (`X-Vault-Namespace`), if any.
    pub namespace: Option<String>,
    /// How new wraps bind their context. Existing blobs keep theirs.
    pub binding: ContextBinding,
    /// A PEM file of CA certificates to trust for `https://` (a private CA);
    /// `None`: `VAULT_CACERT` if set, else the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Limit for establishing a connection to the server (default 3 s).
    pub connect_timeout: Duration,
    /// Limit for one whole request.
    pub timeout: Duration,
}

impl TransitConfig {
    /// A configuration with the defaults: mount `transit`, token from
    /// `VAULT_TOKEN`/`BAO_TOKEN`, context embedded in the wrapped payload
    /// (so that transit's `rewrap` can move the DEK to a new key version
    /// without it leaving the server; see [`ContextBinding`]), 3 s to
    /// connect, 10 s per request.
    pub fn new(address: &str, key_name: &str) -> TransitConfig {
        TransitConfig {
            address: address.to_owned(),
            mount: "transit".to_owned(),
            key_name: key_name.to_owned(),
            token: None,
            namespace: None,
            binding: ContextBinding::Embedded,
            ca_file: None,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
        }
    }
}

/// A KEK in the transit engine of Vault or OpenBao.
///
/// `wrap` calls `POST /v1/<mount>/encrypt/<name>`, `unwrap` calls
/// `/decrypt/<name>`, `rewrap` calls `/rewrap/<name>` for blobs whose context
/// is embedded (transit's rewrap does not take associated data). The key
/// version of each ciphertext (`vault:vN:`) is recorded in the blob.
pub struct TransitKek {
    address: String,
    namespace: Option<String>,
    mount: String,
    key_name: String,
    binding: ContextBinding,
    timeout: Duration,
    pub(crate) client: reqwest::Client,
    /// Set once the key was seen to exist (see `ensure_key`).
    key_checked: OnceCell<()>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
pub(crate) struct Errors {
    #[serde(default)]
    pub(crate) errors: Vec<String>,
}

#[derive(Deserialize)]
struct CipherData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlainData {
    plaintext: String,
}

#[derive(Deserialize)]
struct KeyData {
    latest_version: u64,
    #[serde(rename = "type")]
    key_type: String,
}

fn valid_name(s: &str, allow_slash: bool) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'_' | b'-' | b'.')
                || (allow_slash && b == b'/')
        })
        && !s.starts_with('/')
        && !s.ends_with('/')
        && !s
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// The key version of a transit ciphertext `vault:v<N>:...`.
pub(crate) fn ciphertext_version(ct: &str) -> Option<u64> {
    let rest = ct.strip_prefix("vault:v")?;
    let (n, body) = rest.split_once(':')?;
    if body.is_empty() {
        return None;
    }
    n.parse().ok()
}

impl TransitKek {
    /// Builds the provider and reads the token. Makes no request.
    pub fn new(cfg: TransitConfig) -> Result<TransitKek, KmsError> {
        let address = cfg.address.trim().trim_end_matches('/').to_owned();
        let url = reqwest::Url::parse(&address).map_err(|_| {
            KmsError::config(
                P,
                format!(
                    "address {:?} is not a URL like http://127.0.0.1:8200",
                    clip(&address)
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(KmsError::config(
                P,
                format!(
                    "address {:?} must be http:// or https:// with a host",
                    clip(&address)
                ),
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(KmsError::config(
                P,
                "the address must not carry credentials; supply the token through VAULT_TOKEN, BAO_TOKEN or a token file",
            ));
        }
        if !valid_name(&cfg.mount, true) {
            return Err(KmsError::config(
                P,
                format!(
                    "mount {:?} must be path segments of A-Z a-z 0-9 . _ -",
                    clip(&cfg.mount)
                ),
            ));
        }
        if !valid_name(&cfg.key_name, false) {
            return Err(KmsError::config(
                P,
                format!(
                    "key name {:?} must be A-Z a-z 0-9 . _ -",
                    clip(&cfg.key_name)
                ),
            ));
        }
        let token = load_token(cfg.token.as_ref())?;
        let mut headers = HeaderMap::new();
        let mut tok = HeaderValue::from_str(token.expose()).map_err(|_| {
            KmsError::config(P, "the token has characters not allowed in an HTTP header")
        })?;
        tok.set_sensitive(true);
        headers.insert("X-Vault-Token", tok);
        headers.insert("X-Vault-Request", HeaderValue::from_static("true"));
        if let Some(ns) = &cfg.namespace {
            let v = HeaderValue::from_str(ns)
                .map_err(|_| KmsError::config(P, "the namespace is not a valid header value"))?;
            headers.insert("X-Vault-Namespace", v);
        }
        let mut builder = reqwest::Client::builder();
        let ca = cfg.ca_file.clone().or_else(|| {
            std::env::var_os("VAULT_CACERT")
                .filter(|v| !v.is_empty())
                .map(Into::into)
        });
        if let Some(path) = ca {
            let pem = std::fs::read(&path)
                .map_err(|e| KmsError::config(P, format!("CA file {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|_| {
                KmsError::config(
                    P,
                    format!("CA file {}: no PEM certificate in it", path.display()),
                )
            })?;
            if certs.is_empty() {
                return Err(KmsError::config(
                    P,
                    format!("CA file {}: no PEM certificate in it", path.display()),
                ));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .default_headers(headers)
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| KmsError::config(P, format!("HTTP client setup failed: {e}")))?;
        Ok(TransitKek {
            address,
            namespace: cfg.namespace,
            mount: cfg.mount,
            key_name: cfg.key_name,
            binding: cfg.binding,
            timeout: cfg.timeout,
            client,
            key_checked: OnceCell::new(),
        })
    }

    /// Transit's encrypt creates a missing key on the fly ("upsert") when
    /// the token may, so a mistyped key name would silently start a new KEK.
    /// Before the first wrap, check that the key exists. A token that may
    /// not read the key's metadata skips the check (grant `read` on
    /// `<mount>/keys/<name>`, or set `disable_upsert` on the mount).
    async fn ensure_key(&self) -> Result<(), KmsError> {
        self.key_checked
            .get_or_try_init(|| async {
                match self.resolve().await {
                    Ok(_) | Err(KmsError::AccessDenied { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    /// The server address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The transit engine's mount path.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The transit key's name.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The same server, token and settings, for another key of the mount
    /// (a key named per row). Makes no request.
    pub fn for_key(&self, key_name: &str) -> Result<TransitKek, KmsError> {
        if !valid_name(key_name, false) {
            return Err(KmsError::config(
                P,
                format!("key name {:?} must be A-Z a-z 0-9 . _ -", clip(key_name)),
            ));
        }
        Ok(TransitKek {
            address: self.address.clone(),
            namespace: self.namespace.clone(),
            mount: self.mount.clone(),
            key_name: key_name.to_owned(),
            binding: self.binding,
            timeout: self.timeout,
            client: self.client.clone(),
            key_checked: OnceCell::new(),
        })
    }

    pub(crate) fn keys_url(&self, suffix: &str) -> String {
        format!(
            "{}/v1/{}/keys/{}{suffix}",
            self.address, self.mount, self.key_name
        )
    }

    fn kek_name(&self) -> String {
        format!("{}/{}", self.mount, self.key_name)
    }

    pub(crate) fn url(&self, op: &str) -> String {
        format!("{}/v1/{}/{op}/{}", self.address, self.mount, self.key_name)
    }

    pub(crate) fn unreachable(&self, e: &reqwest::Error) -> KmsError {
        let reason = if e.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else {
            // The innermost cause ("Connection refused (os error 111)") is
            // the useful part; reqwest's own text repeats the URL.
            let mut src: &dyn std::error::Error = e;
            while let Some(s) = src.source() {
                src = s;
            }
            format!("connection failed: {}", clip(&src.to_string()))
        };
        KmsError::Unreachable {
            provider: P,
            address: self.address.clone(),
            reason,
        }
    }

    /// Sends a request; returns the body of a 2xx answer, else the error.
    pub(crate) async fn call(
        &self,
        req: reqwest::RequestBuilder,
        ctx: Option<&WrapContext>,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let body = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| self.unreachable(&e))?
                .to_vec(),
        );
        if status.is_success() {
            return Ok(body);
        }
        let errors = serde_json::from_slice::<Errors>(&body)
            .map(|e| e.errors.join("; "))
            .unwrap_or_default();
        Err(self.classify(status, &errors, ctx).await)
    }

    pub(crate) async fn classify(
        &self,
        status: StatusCode,
        errors: &str,
        ctx: Option<&WrapContext>,
    ) -> KmsError {
        let detail = if errors.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {}: {}", status.as_u16(), clip(errors))
        };
        let kek = self.kek_name();
        match status {
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                // 403 means both "bad token" and "no policy for this path":
                // a token can always look itself up unless it is invalid.
                let url = format!("{}/v1/auth/token/lookup-self", self.address);
                match self.client.get(url).send().await.map(|r| r.status()) {
                    Ok(s) if s.is_success() => KmsError::AccessDenied {
                        provider: P,
                        kek,
                        detail: format!(
                            "{detail}; the token is valid but its policies do not allow this operation"
                        ),
                    },
                    _ => KmsError::InvalidCredentials {
                        provider: P,
                        address: self.address.clone(),
                        detail,
                    },
                }
            }
            StatusCode::NOT_FOUND if errors.contains("no handler for route") => {
                KmsError::KeyNotFound {
                    provider: P,
                    kek,
                    detail: format!("no transit engine is mounted at {}/ ({detail})", self.mount),
                }
            }
            StatusCode::NOT_FOUND => KmsError::KeyNotFound {
                provider: P,
                kek,
                detail: format!(
                    "no such transit key; create it with `bao write -f {}/keys/{}`",
                    self.mount, self.key_name
                ),
            },
            StatusCode::BAD_REQUEST if errors.contains("key not found") => KmsError::KeyNotFound {
                provider: P,
                kek,
                detail,
            },
            StatusCode::BAD_REQUEST if errors.contains("message authentication failed") => {
                match ctx {
                    Some(ctx) => KmsError::WrongContext {
                        provider: P,
                        kek,
                        catalog: ctx.catalog().to_owned(),
                        key_id: ctx.key_id().as_str().to_owned(),
                    },
                    None => KmsError::Backend {
                        provider: P,
                        address: self.address.clone(),
                        message: detail,
                    },
                }
            }
            StatusCode::BAD_REQUEST
                if errors.contains("disallowed by policy") || errors.contains("archived") =>
            {
                KmsError::KeyUnusable {
                    provider: P,
                    kek,
                    detail: format!("{detail} (the key version is below min_decryption_version?)"),
                }
            }
            _ => KmsError::Backend {
                provider: P,
                address: self.address.clone(),
                message: detail,
            },
        }
    }

    pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
        &self,
        body: &[u8],
        what: &str,
    ) -> Result<T, KmsError> {
        serde_json::from_slice::<Envelope<T>>(body)
            .ok()
            .and_then(|e| e.data)
            .ok_or_else(|| KmsError::Backend {
                provider: P,
                address: self.address.clone(),
                message: format!("unexpected answer to {what} (not transit's JSON)"),
            })
    }

    fn blob(
        &self,
        ciphertext: String,
        dek: &SecretKey,
        binding: ContextBinding,
    ) -> Result<WrappedDek, KmsError> {
        let version = ciphertext_version(&ciphertext).ok_or_else(|| KmsError::Backend {
            provider: P,
            address: self.address.clone(),
            message: "the server returned a ciphertext without a vault:vN: prefix".into(),
        })?;
        Ok(WrappedDek::new(
            KekRef {
                provider: P,
                key: self.kek_name(),
                version: Some(version.to_string()),
            },
            dek.algorithm(),
            binding,
            ciphertext.into_bytes(),
        ))
    }

    /// Checks that a blob belongs to this transit key and returns its
    /// ciphertext text.
    fn check_blob<'a>(&self, wrapped: &'a WrappedDek) -> Result<&'a str, KmsError> {
        let me = self.describe();
        wrapped.expect_provider(&me)?;
        if wrapped.kek().key != me.key {
            return Err(KmsError::WrongKek {
                expected: me.to_string(),
                found: wrapped.kek().to_string(),
            });
        }
        let ct = std::str::from_utf8(wrapped.ciphertext())
            .ok()
            .filter(|c| ciphertext_version(c).is_some())
            .ok_or_else(|| {
                KmsError::Malformed(
                    "transit ciphertext is not of the form vault:vN:<base64>".into(),
                )
            })?;
        Ok(ct)
    }
}

impl fmt::Debug for TransitKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitKek")
            .field("address", &self.address)
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .field("key_name", &self.key_name)
            .field("binding", &self.binding)
            .field("token", &"redacted")
            .finish()
    }
}

#[async_trait::async_trait]
impl KekProvider for TransitKek {
    fn describe(&self) -> KekRef {
        KekRef {
            provider: P,
            key: self.kek_name(),
            version: None,
        }
    }

    /// Reads the key (`GET /v1/<mount>/keys/<name>`): latest version and type.
    async fn resolve(&self) -> Result<KekRef, KmsError> {
        let url = format!("{}/v1/{}/keys/{}", self.address, self.mount, self.key_name);
        let body = self.call(self.client.get(url), None).await?;
        let data: KeyData = self.parse(&body, "a key read")?;
        if !matches!(
            data.key_type.as_str(),
            "aes256-gcm96" | "chacha20-poly1305" | "aes128-gcm96"
        ) {
            return Err(KmsError::KeyUnusable {
                provider: P,
                kek: self.kek_name(),
                detail: format!(
                    "its type is {}, which cannot encrypt; use aes256-gcm96",
                    clip(&data.key_type)
                ),
            });
        }
        Ok(KekRef {
            provider: P,
            key: self.kek_name(),
            version: Some(data.latest_version.to_string()),
        })
    }

    async fn wrap(&self, dek: &SecretKey, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        self.ensure_key().await?;
        let aad = ctx.aad(dek.algorithm());
        let mut body = serde_json::Map::new();
        let plaintext = match self.binding {
            ContextBinding::Embedded => {
                let mut p = Zeroizing::new(aad);
                p.extend_from_slice(dek.expose_bytes());
                Zeroizing::new(STANDARD.encode(&p[..]))
            }
            _ => {
                body.insert("associated_data".into(), STANDARD.encode(&aad).into());
                Zeroizing::new(STANDARD.encode(dek.expose_bytes()))
            }
        };
        body.insert("plaintext".into(), plaintext.as_str().into());
        let bytes = Zeroizing::new(serde_json::to_vec(&body).unwrap_or_default());
        if let Some(serde_json::Value::String(s)) = body.get_mut("plaintext") {
            zeroize::Zeroize::zeroize(s);
        }
        let resp = self
            .call(
                self.client
                    .post(self.url("encrypt"))
                    .header("Content-Type", "application/json")
                    .body(bytes.to_vec()),
                Some(ctx),
            )
            .await?;
        let data: CipherData = self.parse(&resp, "encrypt")?;
        self.blob(data.ciphertext, dek, self.binding)
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<SecretKey, KmsError> {
        let ct = self.check_blob(wrapped)?;
        let aad = ctx.aad(wrapped.dek_algorithm());
        let mut body = serde_json::json!({ "ciphertext": ct });
        let embedded = wrapped.binding() == ContextBinding::Embedded;
        if !embedded {
            body["associated_data"] = STANDARD.encode(&aad).into();
        }
        let resp = self
            .call(self.client.post(self.url("decrypt")).json(&body), Some(ctx))
            .await?;
        let data: PlainData = self.parse(&resp, "decrypt")?;
        let b64 = Zeroizing::new(data.plaintext);
        let plain =
            Zeroizing::new(
                STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| KmsError::Backend {
                        provider: P,
                        address: self.address.clone(),
                        message: "decrypt returned a plaintext that is not base64".into(),
                    })?,
            );
        let dek = if embedded {
            if plain.len() != aad.len() + DEK_LEN || plain[..aad.len()] != aad[..] {
                return Err(KmsError::WrongContext {
                    provider: P,
                    kek: self.kek_name(),
                    catalog: ctx.catalog().to_owned(),
                    key_id: ctx.key_id().as_str().to_owned(),
                });
            }
            &plain[aad.len()..]
        } else {
            &plain[..]
        };
        SecretKey::from_bytes(wrapped.dek_algorithm(), dek).map_err(|_| KmsError::Backend {
            provider: P,
            address: self.address.clone(),
            message: format!("decrypt returned {} bytes, not a 32-byte DEK", dek.len()),
        })
    }

    fn rewrap_domain(&self) -> Option<String> {
        Some(format!(
            "transit {} namespace {} key {}",
            self.address,
            self.namespace.as_deref().unwrap_or("-"),
            self.kek_name()
        ))
    }

    fn rewraps_in_kms(&self, wrapped: &WrappedDek) -> bool {
        wrapped.kek().provider == P && wrapped.binding() == ContextBinding::Embedded
    }

    fn check_owner(&self, wrapped: &WrappedDek) -> Result<(), KmsError> {
        self.check_blob(wrapped).map(|_| ())
    }

    /// `POST /v1/<mount>/keys/<name>/rotate`, then reads the key's latest
    /// version. Needs `update` on `<mount>/keys/<name>/rotate`.
    async fn new_key_version(&self) -> Result<KekRef, KmsError> {
        let url = format!(
            "{}/v1/{}/keys/{}/rotate",
            self.address, self.mount, self.key_name
        );
        self.call(self.client.post(url).json(&serde_json::json!({})), None)
            .await?;
        self.resolve().await
    }

    async fn rewrap(
        &self,
        wrapped: &WrappedDek,
        ctx: &WrapContext,
    ) -> Result<WrappedDek, KmsError> {
        if wrapped.binding() != ContextBinding::Embedded {
            // Transit's rewrap cannot pass associated data.
            let dek = self.unwrap(wrapped, ctx).await?;
            return self.wrap(&dek, ctx).await;
        }
        let ct = self.check_blob(wrapped)?;
        let body = serde_json::json!({ "ciphertext": ct });
        let resp = self
            .call(self.client.post(self.url("rewrap")).json(&body), Some(ctx))
            .await?;
        let data: CipherData = self.parse(&resp, "rewrap")?;
        let version = ciphertext_version(&data.ciphertext).ok_or_else(|| KmsError::Backend {
            provider: P,
            address: self.address.clone(),
            message: "rewrap returned a ciphertext without a vault:vN: prefix".into(),
        })?;
        Ok(WrappedDek::new(
            KekRef {
                provider: P,
                key: self.kek_name(),
                version: Some(version.to_string()),
            },
            wrapped.dek_algorithm(),
            ContextBinding::Embedded,
            data.ciphertext.into_bytes(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(ciphertext_version("vault:v1:abc"), Some(1));
        assert_eq!(ciphertext_version("vault:v12:abc"), Some(12));
        for bad in [
            "vault:v:abc",
            "vault:vx:abc",
            "vault:v1:",
            "v1:abc",
            "vault:v1",
        ] {
            assert_eq!(ciphertext_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn config_checks() {
        let tok = |mut c: TransitConfig| {
            c.token = Some(SecretSource::Value("s.secret-token-value".into()));
            c
        };
        for (addr, mount, name) in [
            ("127.0.0.1:8200", "transit", "k"),
            ("ftp://127.0.0.1", "transit", "k"),
            ("http://u:p@127.0.0.1", "transit", "k"),
            ("http://127.0.0.1:8200", "/transit", "k"),
            ("http://127.0.0.1:8200", "a/../b", "k"),
            ("http://127.0.0.1:8200", "transit", "a/b"),
            ("http://127.0.0.1:8200", "transit", ""),
        ] {
            let mut c = tok(TransitConfig::new(addr, name));
            c.mount = mount.into();
            let e = TransitKek::new(c).unwrap_err();
            assert_eq!(e.kind(), "config", "{addr} {mount} {name}: {e}");
            assert!(!e.to_string().contains("secret-token-value"));
        }
        let mut c = tok(TransitConfig::new("http://127.0.0.1:8200/", "app"));
        c.mount = "kv/transit-2".into();
        let k = TransitKek::new(c).unwrap();
        assert_eq!(k.describe().key, "kv/transit-2/app");
        assert_eq!(k.address(), "http://127.0.0.1:8200");
        assert!(!format!("{k:?}").contains("secret-token-value"));

        let mut c = TransitConfig::new("http://127.0.0.1:8200", "app");
        c.token = Some(SecretSource::Env("KEYTURN_TEST_SURELY_UNSET_TOKEN".into()));
        let e = TransitKek::new(c).unwrap_err();
        assert!(
            e.to_string().contains("KEYTURN_TEST_SURELY_UNSET_TOKEN"),
            "{e}"
        );
    }
}
