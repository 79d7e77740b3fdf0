//! The bucket packs are published to, through aws-sdk-s3. Only a handful of
//! operations are needed: conditional GET, HEAD, conditional PUT and LIST.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use aws_sdk_s3::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
    primitives::ByteStream,
};
use aws_smithy_http_client::tls;

use super::records::Layout;
use crate::config::S3Settings;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("no bucket configured (sync.bucket, --bucket or BOLT_S3_BUCKET)")]
    NoBucket,
    #[error("s3://{bucket}/{key}: {message}")]
    Request { bucket: String, key: String, message: String },
    #[error("s3://{bucket}/{key} is larger than {limit} bytes")]
    TooLarge { bucket: String, key: String, limit: u64 },
}

/// The answer to a conditional GET.
#[derive(Debug)]
pub enum Fetched {
    Found { bytes: Vec<u8>, etag: Option<String> },
    NotModified,
    NotFound,
}

/// The answer to a conditional PUT.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Written,
    /// The condition did not hold: the object exists, or changed since read.
    Conflict,
}

pub struct Remote {
    client: aws_sdk_s3::Client,
    bucket: String,
    pub layout: Layout,
    requests: AtomicU64,
    /// sync.request_timeout: for the answer, and for each gap in a body.
    timeout: Duration,
}

/// The slowest a body may arrive, on average: beyond the request timeout, a
/// body of N bytes gets N / MIN_BODY_RATE seconds, so a server that drips
/// (64 MiB at 1 KiB/s would take 18 hours) cannot hold the sync loop.
const MIN_BODY_RATE: u64 = 64 * 1024;

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("bucket", &self.bucket).field("layout", &self.layout).finish()
    }
}

impl Remote {
    /// A client for `settings`, with credentials from the usual AWS chain.
    pub async fn connect(settings: &S3Settings, timeout: Duration) -> Result<Self, RemoteError> {
        if settings.bucket.is_empty() {
            return Err(RemoteError::NoBucket);
        }
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .operation_timeout(timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .region(aws_config::Region::new(settings.region.clone()));
        if !settings.endpoint.is_empty() {
            loader = loader.endpoint_url(settings.endpoint.clone());
        }
        let shared = loader.load().await;
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(settings.path_style).build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
            layout: Layout::new(&settings.prefix),
            requests: AtomicU64::new(0),
            timeout,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn error<E>(&self, key: &str, e: SdkError<E, HttpResponse>) -> RemoteError
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let message = match &e {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let err = s.err();
                format!(
                    "{} (HTTP {status}){}",
                    err.code().unwrap_or("error"),
                    err.message().map(|m| format!(": {m}")).unwrap_or_default()
                )
            }
            other => aws_sdk_s3::error::DisplayErrorContext(other).to_string(),
        };
        RemoteError::Request { bucket: self.bucket.clone(), key: key.into(), message }
    }

    /// GETs `key` (at most `limit` bytes), with `If-None-Match` when an ETag
    /// is given.
    pub async fn get(
        &self,
        key: &str,
        if_none_match: Option<&str>,
        limit: u64,
    ) -> Result<Fetched, RemoteError> {
        self.count();
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(etag) = if_none_match {
            req = req.if_none_match(etag);
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                return match status(&e) {
                    Some(304) => Ok(Fetched::NotModified),
                    Some(404) if e.code() != Some("NoSuchBucket") => Ok(Fetched::NotFound),
                    _ => Err(self.error(key, e)),
                }
            }
        };
        let too_large = || RemoteError::TooLarge { bucket: self.bucket.clone(), key: key.into(), limit };
        if out.content_length().is_some_and(|n| n as u64 > limit) {
            return Err(too_large());
        }
        let etag = out.e_tag().map(str::to_owned);
        let expected = out.content_length().and_then(|n| u64::try_from(n).ok()).unwrap_or(limit);
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(expected / MIN_BODY_RATE);
        let failed = |message: String| RemoteError::Request { bucket: self.bucket.clone(), key: key.into(), message };
        let mut body = out.body;
        let mut bytes = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + self.timeout), body.try_next());
            let chunk = match next.await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(failed(e.to_string())),
                Err(_) => {
                    return Err(failed(format!(
                        "the body arrives too slowly ({} bytes so far; at least {} KiB/s after {:?})",
                        bytes.len(),
                        MIN_BODY_RATE / 1024,
                        self.timeout
                    )))
                }
            };
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Found { bytes, etag })
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        self.count();
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) && e.code() != Some("NoSuchBucket") => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// PUTs `key` only if it does not exist yet.
    pub async fn put_new(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<Put, RemoteError> {
        self.put(key, bytes, content_type, None).await
    }

    /// PUTs `key` if its ETag is still `etag` (or, with `None`, if it does
    /// not exist yet).
    pub async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        if_match: Option<&str>,
    ) -> Result<Put, RemoteError> {
        self.count();
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes));
        let req = match if_match {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match req.send().await {
            Ok(_) => Ok(Put::Written),
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(Put::Conflict),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Every key under `prefix`, in the bucket's (lexical) order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            self.count();
            let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix);
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let out = req.send().await.map_err(|e| self.error(prefix, e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            match out.next_continuation_token() {
                Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => break,
            }
        }
        Ok(keys)
    }
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}
