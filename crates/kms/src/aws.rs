//! AWS KMS (or an API-compatible server such as moto).

use crate::KekProvider;
use crate::blob::{ContextBinding, KekRef, WrappedDek};
use crate::context::WrapContext;
use crate::error::{KmsError, ProviderKind, clip};
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use backon::Retryable;
use keyturn_format::SecretKey;
use keyturn_keys::SecretString;
use std::fmt;
use std::time::Duration;
use zeroize::Zeroizing;

const P: ProviderKind = ProviderKind::AwsKms;

/// Where the AWS credentials come from.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum AwsCredentials {
    /// The SDK's standard chain: environment (`AWS_ACCESS_KEY_ID`, ...),
    /// shared config/credentials files and profiles, `credential_process`,
    /// web identity, ECS and EC2 instance metadata. (SSO profiles are not
    /// built in.)
    #[default]
    DefaultChain,
    /// Fixed keys, for tests against moto and for tooling that already holds
    /// credentials.
    Static {
        /// The access key id (not secret: shown in `Debug`).
        access_key_id: String,
        /// The secret access key.
        secret_access_key: SecretString,
        /// The session token of temporary credentials, if any.
        session_token: Option<SecretString>,
    },
}

/// Configuration of an [`AwsKmsKek`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AwsKmsConfig {
    /// Key id, key ARN, alias name (`alias/app`) or alias ARN of a symmetric
    /// encryption KMS key.
    pub key_id: String,
    /// Region; by default the standard chain (`AWS_REGION`, profile...).
    pub region: Option<String>,
    /// Endpoint URL, for moto, LocalStack or a VPC endpoint.
    pub endpoint_url: Option<String>,
    /// Profile of the shared config files (default chain only).
    pub profile: Option<String>,
    /// Where the credentials come from (default: the SDK's standard chain).
    pub credentials: AwsCredentials,
    /// Limit for establishing a connection to the KMS endpoint (default 3 s).
    pub connect_timeout: Duration,
    /// Limit for one whole operation, retries included.
    pub operation_timeout: Duration,
    /// Attempts per operation (1 = no retry).
    pub max_attempts: u32,
    /// At most this many [`AwsKmsKek::re_encrypt_value`] and
    /// [`AwsKmsKek::describe_key`] calls at once (default: no limit).
    pub max_in_flight: Option<usize>,
    /// At most this many of those calls a second, evenly spaced (default:
    /// no cap; throttling answers are retried with backoff either way).
    pub max_requests_per_sec: Option<u32>,
}

impl AwsKmsConfig {
    /// A configuration with the defaults: standard credential and region
    /// chains, 3 s to connect, 15 s per operation, 3 attempts.
    pub fn new(key_id: &str) -> AwsKmsConfig {
        AwsKmsConfig {
            key_id: key_id.to_owned(),
            region: None,
            endpoint_url: None,
            profile: None,
            credentials: AwsCredentials::DefaultChain,
            connect_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(15),
            max_attempts: 3,
            max_in_flight: None,
            max_requests_per_sec: None,
        }
    }
}

/// What `ReEncrypt` answered for one value.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReEncrypted {
    /// The new ciphertext blob, under [`key_id`](Self::key_id).
    pub ciphertext: Vec<u8>,
    /// The ARN of the key the value was under.
    pub source_key_id: String,
    /// The ARN of the key the new blob is under.
    pub key_id: String,
}

impl fmt::Debug for ReEncrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReEncrypted")
            .field(
                "ciphertext",
                &format_args!("{} bytes", self.ciphertext.len()),
            )
            .field("source_key_id", &self.source_key_id)
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// Attempts of one [`AwsKmsKek::re_encrypt_value`] or
/// [`AwsKmsKek::describe_key`] call while KMS throttles or fails
/// transiently.
pub const AWS_ATTEMPTS: u32 = 6;

/// The pauses between [`AWS_ATTEMPTS`] attempts: 50 ms, doubling up to
/// 2.5 s, each lengthened by random jitter of up to its own length, so
/// pause `n` lies between half and all of `100 ms × 2ⁿ` (capped at 5 s):
/// the five pauses add up to 1.55–3.1 s. KMS throttles per account and
/// region, so many callers are throttled together; the jitter spreads their
/// retries out.
fn throttle_backoff() -> backon::ExponentialBuilder {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_factor(2.0)
        .with_max_delay(Duration::from_millis(2500))
        .with_jitter()
        .with_max_times(AWS_ATTEMPTS as usize - 1)
}

/// One failed attempt of a call retried under [`throttle_backoff`]: the
/// error as the caller gets it, and whether another attempt may succeed
/// ([`retryable`]).
struct Failed {
    error: KmsError,
    retry: bool,
}

/// Spaces calls evenly: at most `per_sec` a second across every caller.
#[derive(Debug)]
struct Pacer {
    gap: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_sec: u32) -> Pacer {
        Pacer {
            gap: Duration::from_secs(1) / per_sec.max(1),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this call's slot.
    async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.gap;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// Calls at once and a second, shared by every call of one client.
#[derive(Debug, Default)]
struct Limits {
    in_flight: Option<tokio::sync::Semaphore>,
    pacer: Option<Pacer>,
}

/// Whether an SDK failure is worth retrying: throttling, a 5xx, KMS's
/// internal errors, a dropped connection or timeout.
fn retryable<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
) -> bool {
    match e {
        SdkError::ServiceError(s) => {
            matches!(
                s.err().code(),
                Some(
                    "ThrottlingException"
                        | "Throttling"
                        | "LimitExceededException"
                        | "TooManyRequestsException"
                        | "RequestLimitExceeded"
                        | "KMSInternalException"
                        | "DependencyTimeoutException"
                        | "ServiceUnavailableException"
                        | "InternalFailure"
                )
            ) || s.raw().status().as_u16() >= 500
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(d) => d.is_io() || d.is_timeout(),
        _ => false,
    }
}

/// A KEK in AWS KMS: `Encrypt`/`Decrypt` with the encryption context
/// `{catalog, key_id, dek_alg}`, `ReEncrypt` for in-KMS rewrap.
///
/// Wrapped DEKs record the key ARN that KMS reports, so a KEK named by alias
/// stays unwrappable after the alias moves to a new key.
pub struct AwsKmsKek {
    key_id: String,
    address: String,
    region: String,
    /// Whose credentials these are, as far as the configuration tells (the
    /// access key id, or the default chain and its profile): part of
    /// [`KekProvider::rewrap_domain`], since `ReEncrypt` runs under one
    /// principal, which must be allowed on both keys.
    principal: String,
    client: Client,
    limits: std::sync::Arc<Limits>,
}

impl AwsKmsKek {
    /// Loads the SDK configuration (credentials, region) and builds the
    /// client. Makes no request to KMS.
    pub async fn connect(cfg: AwsKmsConfig) -> Result<AwsKmsKek, KmsError> {
        if cfg.key_id.trim().is_empty() {
            return Err(KmsError::config(P, "key_id is empty"));
        }
        if cfg.max_attempts == 0 {
            return Err(KmsError::config(P, "max_attempts must be at least 1"));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(cfg.connect_timeout)
                    .operation_timeout(cfg.operation_timeout)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(cfg.max_attempts));
        if let Some(r) = &cfg.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(url) = &cfg.endpoint_url {
            let parsed = reqwest::Url::parse(url).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.password().is_none()
            });
            if parsed.is_none() {
                return Err(KmsError::config(
                    P,
                    format!("endpoint_url {:?} is not an http(s) URL", clip(url)),
                ));
            }
            loader = loader.endpoint_url(url.trim_end_matches('/'));
        }
        if let Some(p) = &cfg.profile {
            loader = loader.profile_name(p);
        }
        let principal = match &cfg.credentials {
            AwsCredentials::Static { access_key_id, .. } => format!("access key {access_key_id}"),
            AwsCredentials::DefaultChain => format!(
                "default chain, profile {}",
                cfg.profile.as_deref().unwrap_or("-")
            ),
        };
        if let AwsCredentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } = &cfg.credentials
        {
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key.expose(),
                session_token.as_ref().map(|t| t.expose().to_owned()),
                None,
                "keyturn-static",
            ));
        }
        let sdk = loader.load().await;
        let region = sdk.region().map(|r| r.to_string());
        if region.is_none() {
            return Err(KmsError::config(
                P,
                "no region: set region in the configuration, AWS_REGION, or a profile's region",
            ));
        }
        let address = match (&cfg.endpoint_url, &region) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(r)) => format!("AWS KMS in {r}"),
            (None, None) => "AWS KMS".to_owned(),
        };
        Ok(AwsKmsKek {
            key_id: cfg.key_id.trim().to_owned(),
            address,
            region: region.unwrap_or_default(),
            principal,
            client: Client::new(&sdk),
            limits: std::sync::Arc::new(Limits {
                in_flight: cfg
                    .max_in_flight
                    .map(|n| tokio::sync::Semaphore::new(n.max(1))),
                pacer: cfg.max_requests_per_sec.map(Pacer::new),
            }),
        })
    }

    /// The SDK client, for administration (creating keys in tests, say).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The endpoint URL, or `AWS KMS in <region>`, for messages.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The configured key id, ARN or alias.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn is_alias(id: &str) -> bool {
        id.starts_with("alias/") || id.contains(":alias/")
    }

    /// Whether a blob's key ARN is the configured key, as far as can be told
    /// without asking KMS (an alias could point anywhere).
    fn may_be_mine(&self, arn: &str) -> bool {
        let me = self.key_id.as_str();
        if Self::is_alias(me) {
            return true;
        }
        if me.starts_with("arn:") {
            return arn == me;
        }
        arn == me || arn.ends_with(&format!(":key/{me}"))
    }

    pub(crate) fn err<E>(
        &self,
        e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
        kek: &str,
        ctx: Option<&WrapContext>,
    ) -> KmsError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let chain = error_chain(&e);
        match &e {
            SdkError::ServiceError(s) => {
                let err = s.err();
                let code = err.code().unwrap_or("Unknown");
                let detail = match err.message() {
                    Some(m) if !m.is_empty() => format!("{code}: {}", clip(m)),
                    _ => code.to_owned(),
                };
                let kek = kek.to_owned();
                match code {
                    "NotFoundException" => KmsError::KeyNotFound {
                        provider: P,
                        kek,
                        detail,
                    },
                    "AccessDeniedException" => KmsError::AccessDenied {
                        provider: P,
                        kek,
                        detail,
                    },
                    "IncorrectKeyException" => KmsError::WrongKek {
                        expected: kek,
                        found: format!("another KMS key ({detail})"),
                    },
                    "InvalidCiphertextException" => match ctx {
                        Some(c) => KmsError::WrongContext {
                            provider: P,
                            kek,
                            catalog: c.catalog().to_owned(),
                            key_id: c.key_id().as_str().to_owned(),
                        },
                        None => {
                            KmsError::Malformed(format!("KMS rejected the ciphertext ({detail})"))
                        }
                    },
                    "DisabledException"
                    | "KMSInvalidStateException"
                    | "KeyUnavailableException"
                    | "InvalidKeyUsageException" => KmsError::KeyUnusable {
                        provider: P,
                        kek,
                        detail,
                    },
                    "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "InvalidClientTokenId"
                    | "IncompleteSignature"
                    | "MissingAuthenticationToken" => KmsError::InvalidCredentials {
                        provider: P,
                        address: self.address.clone(),
                        detail,
                    },
                    _ => KmsError::Backend {
                        provider: P,
                        address: self.address.clone(),
                        message: detail,
                    },
                }
            }
            SdkError::TimeoutError(_) => KmsError::Unreachable {
                provider: P,
                address: self.address.clone(),
                reason: "the operation timed out".to_owned(),
            },
            SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => KmsError::Unreachable {
                provider: P,
                address: self.address.clone(),
                reason: chain,
            },
            SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_)
                if chain.contains("credentials") =>
            {
                KmsError::config(
                    P,
                    format!(
                        "no usable AWS credentials ({chain}); set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or an instance role"
                    ),
                )
            }
            SdkError::DispatchFailure(_) => KmsError::Unreachable {
                provider: P,
                address: self.address.clone(),
                reason: chain,
            },
            _ => KmsError::Backend {
                provider: P,
                address: self.address.clone(),
                message: chain,
            },
        }
    }

    pub(crate) fn missing(&self, what: &str) -> KmsError {
        KmsError::Backend {
            provider: P,
            address: self.address.clone(),
            message: format!("the answer has no {what}"),
        }
    }

    /// Waits for a slot under `max_in_flight` and `max_requests_per_sec`;
    /// the permit is held for the call.
    async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        let permit = match &self.limits.in_flight {
            // The semaphore is never closed: acquire cannot fail.
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        if let Some(p) = &self.limits.pacer {
            p.wait().await;
        }
        permit
    }

    /// Runs `attempt` (one SDK call, which takes its own [`Self::slot`]:
    /// no slot is held during a pause) again under [`throttle_backoff`]
    /// while it fails with a retryable error, logging a warning before each
    /// retry; the last error otherwise.
    async fn with_backoff<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, KmsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failed>>,
    {
        attempt
            .retry(throttle_backoff())
            .when(|f: &Failed| f.retry)
            .notify(|f: &Failed, pause: Duration| {
                tracing::warn!(
                    "aws-kms {what} at {}: {}; retrying in {} ms",
                    self.address,
                    f.error,
                    pause.as_millis()
                );
            })
            .await
            .map_err(|f| f.error)
    }

    /// `DescribeKey`: the ARN of `key` (key id, ARN, alias name or alias
    /// ARN). Fails if the key does not exist, is disabled or does not
    /// encrypt (`key_not_found`, `key_unusable`); throttling is retried.
    pub async fn describe_key(&self, key: &str) -> Result<String, KmsError> {
        self.describe_metadata(key).await.map(|(arn, _)| arn)
    }

    /// `DescribeKey`, checked: the ARN and the current key material id.
    async fn describe_metadata(&self, key: &str) -> Result<(String, Option<String>), KmsError> {
        let out = self
            .with_backoff("DescribeKey", || async {
                let _permit = self.slot().await;
                self.client
                    .describe_key()
                    .key_id(key)
                    .send()
                    .await
                    .map_err(|e| Failed {
                        retry: retryable(&e),
                        error: self.err(e, key, None),
                    })
            })
            .await?;
        let md = out
            .key_metadata()
            .ok_or_else(|| self.missing("KeyMetadata"))?;
        let arn = md.arn().unwrap_or(md.key_id()).to_owned();
        if !md.enabled() {
            return Err(KmsError::KeyUnusable {
                provider: P,
                kek: arn,
                detail: format!(
                    "the key is disabled (state {})",
                    md.key_state().map(|s| s.as_str()).unwrap_or("unknown")
                ),
            });
        }
        if let Some(u) = md.key_usage()
            && u.as_str() != "ENCRYPT_DECRYPT"
        {
            return Err(KmsError::KeyUnusable {
                provider: P,
                kek: arn,
                detail: format!("its usage is {}, not ENCRYPT_DECRYPT", u.as_str()),
            });
        }
        Ok((arn, md.current_key_material_id().map(str::to_owned)))
    }

    /// `ReEncrypt` of one ciphertext blob (an `Encrypt` output) to
    /// `destination_key_id`, inside KMS: the plaintext never leaves it.
    /// KMS finds the source key in the blob. The contexts are the
    /// encryption contexts the value was encrypted with and is to be
    /// encrypted with (empty: none).
    ///
    /// Errors that concern this value alone (`InvalidCiphertextException`:
    /// damaged, not this KMS's, or another encryption context;
    /// `IncorrectKeyException`; `ValidationException`) are `malformed`,
    /// `wrong_kek` (see [`KmsError::is_per_value`]); throttling, KMS's
    /// internal errors and dropped connections are retried with
    /// exponential backoff and jitter ([`AWS_ATTEMPTS`] attempts); anything
    /// else (credentials, access, a disabled or missing destination key,
    /// unreachable) is the server's.
    pub async fn re_encrypt_value(
        &self,
        blob: &[u8],
        destination_key_id: &str,
        source_context: &std::collections::HashMap<String, String>,
        destination_context: &std::collections::HashMap<String, String>,
    ) -> Result<ReEncrypted, KmsError> {
        let ctx =
            |c: &std::collections::HashMap<String, String>| (!c.is_empty()).then(|| c.clone());
        let out = self
            .with_backoff("ReEncrypt", || async {
                let _permit = self.slot().await;
                self.client
                    .re_encrypt()
                    .ciphertext_blob(Blob::new(blob.to_vec()))
                    .set_source_encryption_context(ctx(source_context))
                    .destination_key_id(destination_key_id)
                    .set_destination_encryption_context(ctx(destination_context))
                    .send()
                    .await
                    .map_err(|e| Failed {
                        retry: retryable(&e),
                        error: self.re_encrypt_err(e, destination_key_id),
                    })
            })
            .await?;
        let ciphertext = out
            .ciphertext_blob()
            .ok_or_else(|| self.missing("CiphertextBlob"))?
            .as_ref()
            .to_vec();
        Ok(ReEncrypted {
            ciphertext,
            source_key_id: out
                .source_key_id()
                .ok_or_else(|| self.missing("SourceKeyId"))?
                .to_owned(),
            key_id: out
                .key_id()
                .ok_or_else(|| self.missing("KeyId"))?
                .to_owned(),
        })
    }

    /// A `ReEncrypt` failure: the value's own problems in fixed words (a
    /// server message might describe the value), the rest as [`Self::err`].
    fn re_encrypt_err(
        &self,
        e: SdkError<
            aws_sdk_kms::operation::re_encrypt::ReEncryptError,
            aws_sdk_kms::config::http::HttpResponse,
        >,
        destination: &str,
    ) -> KmsError {
        if let SdkError::ServiceError(s) = &e {
            match s.err().code() {
                Some("InvalidCiphertextException") => {
                    return KmsError::Malformed(
                        "KMS refused the ciphertext (InvalidCiphertextException): damaged, not a ciphertext of this KMS, or encrypted with another encryption context".into(),
                    );
                }
                Some("IncorrectKeyException") => {
                    return KmsError::WrongKek {
                        expected: "the key the ciphertext names".into(),
                        found: "another KMS key (IncorrectKeyException)".into(),
                    };
                }
                Some("ValidationException") => {
                    return KmsError::Malformed(
                        "KMS refused the ciphertext (ValidationException): not a valid ciphertext blob".into(),
                    );
                }
                _ => {}
            }
        }
        self.err(e, destination, None)
    }
}

/// The messages of an error and its sources, joined by ": ", with the
/// repetitions the SDK's layers add removed. Debug formatting is avoided:
/// it would drag in request internals.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let m = err.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = err.source();
    }
    clip(&parts.join(": "))
}

impl fmt::Debug for AwsKmsKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SDK client's own Debug is large; credentials are never shown.
        f.debug_struct("AwsKmsKek")
            .field("key_id", &self.key_id)
            .field("address", &self.address)
            .field("credentials", &"redacted")
            .finish()
    }
}

#[async_trait::async_trait]
impl KekProvider for AwsKmsKek {
    fn describe(&self) -> KekRef {
        KekRef {
            provider: P,
            key: self.key_id.clone(),
            version: None,
        }
    }

    /// `DescribeKey`: the key's ARN and current key material id; fails if the
    /// key is disabled or not a symmetric encryption key.
    async fn resolve(&self) -> Result<KekRef, KmsError> {
        let (arn, material) = self.describe_metadata(&self.key_id).await?;
        Ok(KekRef {
            provider: P,
            key: arn,
            version: material,
        })
    }

    async fn wrap(&self, dek: &SecretKey, ctx: &WrapContext) -> Result<WrappedDek, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(dek.expose_bytes().to_vec()))
            .set_encryption_context(Some(ctx.aws_context(dek.algorithm())))
            .send()
            .await
            .map_err(|e| self.err(e, &self.key_id, Some(ctx)))?;
        let ct = out
            .ciphertext_blob()
            .ok_or_else(|| self.missing("CiphertextBlob"))?
            .as_ref()
            .to_vec();
        Ok(WrappedDek::new(
            KekRef {
                provider: P,
                key: out.key_id().unwrap_or(&self.key_id).to_owned(),
                // Encrypt does not report which key material it used.
                version: None,
            },
            dek.algorithm(),
            ContextBinding::Aad,
            ct,
        ))
    }

    async fn unwrap(&self, wrapped: &WrappedDek, ctx: &WrapContext) -> Result<SecretKey, KmsError> {
        let me = self.describe();
        wrapped.expect_provider(&me)?;
        let blob_key = wrapped.kek().key.as_str();
        if !self.may_be_mine(blob_key) {
            return Err(KmsError::WrongKek {
                expected: me.to_string(),
                found: wrapped.kek().to_string(),
            });
        }
        let out = self
            .client
            .decrypt()
            .key_id(blob_key)
            .ciphertext_blob(Blob::new(wrapped.ciphertext().to_vec()))
            .set_encryption_context(Some(ctx.aws_context(wrapped.dek_algorithm())))
            .send()
            .await
            .map_err(|e| self.err(e, blob_key, Some(ctx)))?;
        let plain = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| self.missing("Plaintext"))?
                .into_inner(),
        );
        SecretKey::from_bytes(wrapped.dek_algorithm(), &plain).map_err(|_| KmsError::Backend {
            provider: P,
            address: self.address.clone(),
            message: format!("Decrypt returned {} bytes, not a 32-byte DEK", plain.len()),
        })
    }

    fn rewrap_domain(&self) -> Option<String> {
        Some(format!(
            "aws-kms {} region {} as {}",
            self.address, self.region, self.principal
        ))
    }

    fn rewraps_in_kms(&self, wrapped: &WrappedDek) -> bool {
        wrapped.kek().provider == P
    }

    fn check_owner(&self, wrapped: &WrappedDek) -> Result<(), KmsError> {
        let me = self.describe();
        wrapped.expect_provider(&me)?;
        if !self.may_be_mine(&wrapped.kek().key) {
            return Err(KmsError::WrongKek {
                expected: me.to_string(),
                found: wrapped.kek().to_string(),
            });
        }
        Ok(())
    }

    /// `ReEncrypt` from the key the blob names to the configured key: the DEK
    /// never leaves KMS. Moves DEKs to a new key when the configured alias or
    /// key id changed.
    async fn rewrap(
        &self,
        wrapped: &WrappedDek,
        ctx: &WrapContext,
    ) -> Result<WrappedDek, KmsError> {
        wrapped.expect_provider(&self.describe())?;
        let src = wrapped.kek().key.as_str();
        let ec = ctx.aws_context(wrapped.dek_algorithm());
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(wrapped.ciphertext().to_vec()))
            .source_key_id(src)
            .set_source_encryption_context(Some(ec.clone()))
            .destination_key_id(&self.key_id)
            .set_destination_encryption_context(Some(ec))
            .send()
            .await
            .map_err(|e| self.err(e, src, Some(ctx)))?;
        let ct = out
            .ciphertext_blob()
            .ok_or_else(|| self.missing("CiphertextBlob"))?
            .as_ref()
            .to_vec();
        Ok(WrappedDek::new(
            KekRef {
                provider: P,
                key: out.key_id().unwrap_or(&self.key_id).to_owned(),
                version: out.destination_key_material_id().map(str::to_owned),
            },
            wrapped.dek_algorithm(),
            ContextBinding::Aad,
            ct,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_matching() {
        let k = |id: &str| AwsKmsKek {
            key_id: id.to_owned(),
            address: "x".into(),
            region: "us-east-1".into(),
            principal: "default chain, profile -".into(),
            client: Client::from_conf(
                aws_sdk_kms::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .build(),
            ),
            limits: Default::default(),
        };
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert!(k("1234abcd-12ab-34cd-56ef-1234567890ab").may_be_mine(arn));
        assert!(k(arn).may_be_mine(arn));
        assert!(k("alias/app").may_be_mine(arn));
        assert!(k("arn:aws:kms:us-east-1:123456789012:alias/app").may_be_mine(arn));
        assert!(!k("ffffffff-12ab-34cd-56ef-1234567890ab").may_be_mine(arn));
        assert!(!k(&arn.replace("us-east-1", "eu-west-1")).may_be_mine(arn));
    }

    fn service_error(
        code: &str,
        status: u16,
    ) -> SdkError<
        aws_sdk_kms::operation::re_encrypt::ReEncryptError,
        aws_sdk_kms::config::http::HttpResponse,
    > {
        let meta = aws_sdk_kms::error::ErrorMetadata::builder()
            .code(code)
            .message("from a unit test")
            .build();
        SdkError::service_error(
            aws_sdk_kms::operation::re_encrypt::ReEncryptError::generic(meta),
            aws_sdk_kms::config::http::HttpResponse::new(
                status.try_into().expect("a valid HTTP status"),
                "".into(),
            ),
        )
    }

    #[test]
    fn throttling_and_server_failures_are_retried_the_rest_is_not() {
        for code in [
            "ThrottlingException",
            "LimitExceededException",
            "KMSInternalException",
            "DependencyTimeoutException",
        ] {
            assert!(retryable(&service_error(code, 400)), "{code}");
        }
        assert!(retryable(&service_error("SomethingNew", 503)));
        for code in [
            "AccessDeniedException",
            "NotFoundException",
            "DisabledException",
            "InvalidCiphertextException",
            "IncorrectKeyException",
            "ValidationException",
            "UnrecognizedClientException",
        ] {
            assert!(!retryable(&service_error(code, 400)), "{code}");
        }
        assert!(retryable(&SdkError::<
            aws_sdk_kms::operation::re_encrypt::ReEncryptError,
            _,
        >::timeout_error("timed out")));
        assert!(!retryable(&SdkError::<
            aws_sdk_kms::operation::re_encrypt::ReEncryptError,
            aws_sdk_kms::config::http::HttpResponse,
        >::construction_failure(
            "no credentials"
        )));
    }

    #[test]
    fn throttle_backoff_is_bounded_and_jittered() {
        use backon::BackoffBuilder;
        let pauses: Vec<Duration> = throttle_backoff().build().collect();
        assert_eq!(pauses.len(), AWS_ATTEMPTS as usize - 1);
        // Pause n between half and all of 100 ms × 2ⁿ (1 ms of slack: backon
        // computes in f32).
        let slack = Duration::from_millis(1);
        for (n, p) in pauses.iter().enumerate() {
            let base = Duration::from_millis(100) * (1 << n);
            assert!(*p + slack >= base / 2 && *p <= base + slack, "{n}: {p:?}");
        }
        assert_ne!(pauses, throttle_backoff().build().collect::<Vec<_>>());
    }

    /// A throttled call is made [`AWS_ATTEMPTS`] times, then fails with
    /// KMS's error; an error that is not retried fails at once.
    #[tokio::test(start_paused = true)]
    async fn with_backoff_gives_up_after_the_attempts() {
        let kek = AwsKmsKek {
            key_id: "alias/app".into(),
            address: "x".into(),
            region: "us-east-1".into(),
            principal: "default chain, profile -".into(),
            client: Client::from_conf(
                aws_sdk_kms::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .region(Region::new("us-east-1"))
                    .build(),
            ),
            limits: Default::default(),
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let throttled = || KmsError::Backend {
            provider: P,
            address: "x".into(),
            message: "ThrottlingException: Rate exceeded".into(),
        };
        let r: Result<(), KmsError> = kek
            .with_backoff("ReEncrypt", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(Failed {
                    error: throttled(),
                    retry: true,
                })
            })
            .await;
        assert_eq!(r, Err(throttled()));
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::Relaxed),
            AWS_ATTEMPTS
        );
        let calls = std::sync::atomic::AtomicU32::new(0);
        let r: Result<(), KmsError> = kek
            .with_backoff("ReEncrypt", || async {
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(Failed {
                    error: KmsError::Malformed("damaged".into()),
                    retry: false,
                })
            })
            .await;
        assert!(matches!(r, Err(KmsError::Malformed(_))));
        assert_eq!(calls.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    /// `ReEncrypt` runs under one set of credentials: two KEKs at the same
    /// endpoint and region but under different credentials are not one
    /// rewrap domain (keyturn unwraps with the old, wraps with the new).
    #[tokio::test]
    async fn rewrap_domain_includes_the_credentials() {
        let kek = |access: &str, profile: Option<&str>, static_creds: bool| {
            let mut cfg = AwsKmsConfig::new("alias/app");
            cfg.region = Some("us-east-1".into());
            cfg.endpoint_url = Some("http://127.0.0.1:9".into());
            cfg.profile = profile.map(str::to_owned);
            if static_creds {
                cfg.credentials = AwsCredentials::Static {
                    access_key_id: access.into(),
                    secret_access_key: SecretString::new("not-a-real-secret".into()),
                    session_token: None,
                };
            }
            AwsKmsKek::connect(cfg)
        };
        let a1 = kek("AKIAEXAMPLEONE", None, true).await.unwrap();
        let a1_again = kek("AKIAEXAMPLEONE", None, true).await.unwrap();
        let a2 = kek("AKIAEXAMPLETWO", None, true).await.unwrap();
        assert_eq!(a1.rewrap_domain(), a1_again.rewrap_domain());
        assert_ne!(a1.rewrap_domain(), a2.rewrap_domain());
        let d = a1.rewrap_domain().unwrap();
        assert!(!d.contains("not-a-real-secret"), "{d}");
        let chain = kek("", None, false).await.unwrap();
        let chain_again = kek("", None, false).await.unwrap();
        let other_profile = kek("", Some("other"), false).await.unwrap();
        assert_eq!(chain.rewrap_domain(), chain_again.rewrap_domain());
        assert_ne!(chain.rewrap_domain(), other_profile.rewrap_domain());
        assert_ne!(chain.rewrap_domain(), a1.rewrap_domain());
    }
}
