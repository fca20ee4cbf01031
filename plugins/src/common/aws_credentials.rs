//! The AWS credential chain (outputs.cloudwatch, outputs.http with aws_service), built with
//! `aws-config`, and a cache that refreshes credentials
//! before they expire.
//!
//! Order (the AWS SDKs' and Telegraf's): `access_key`/`secret_key` from the config; else the
//! default chain — environment variables, the shared config and credentials files (with
//! `profile` and `shared_credential_file`), a web identity token (`AWS_WEB_IDENTITY_TOKEN_FILE`
//! and `AWS_ROLE_ARN`), the ECS container endpoint, EC2 instance metadata (IMDSv2). With
//! `role_arn`, those credentials are the source for an STS AssumeRole, or, with
//! `web_identity_token_file`, the token file is exchanged with STS AssumeRoleWithWebIdentity.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::{StaticConfiguration, WebIdentityTokenCredentialsProvider};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls;

/// What the config says about credentials.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub region: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub token: Option<String>,
    pub role_arn: Option<String>,
    pub role_session_name: Option<String>,
    pub web_identity_token_file: Option<std::path::PathBuf>,
    pub profile: Option<String>,
    pub shared_credential_file: Option<std::path::PathBuf>,
}

/// The resolved chain: a provider and the region.
pub struct Chain {
    pub provider: SharedCredentialsProvider,
    pub region: String,
    /// Which source was configured, for the startup log (never a secret).
    pub describe: String,
}

/// Builds the chain. Nothing is fetched yet: the first [`Cache::get`] does that.
#[allow(deprecated)] // ProfileFiles: the alias aws-config itself takes
pub async fn chain(s: &Settings) -> anyhow::Result<Chain> {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http.clone());
    if let Some(r) = &s.region {
        loader = loader.region(aws_config::Region::new(r.clone()));
    }
    if let Some(p) = &s.profile {
        loader = loader.profile_name(p);
    }
    if let Some(f) = &s.shared_credential_file {
        use aws_config::profile::profile_file::{ProfileFileKind, ProfileFiles};
        loader = loader.profile_files(
            ProfileFiles::builder()
                .include_default_config_file(true)
                .with_file(ProfileFileKind::Credentials, f)
                .build(),
        );
    }
    let mut describe = "the default credential chain".to_string();
    if s.access_key.is_some() || s.secret_key.is_some() {
        loader = loader.credentials_provider(Credentials::new(
            s.access_key.clone().unwrap_or_default(),
            s.secret_key.clone().unwrap_or_default(),
            s.token.clone(),
            None,
            "sonde-config",
        ));
        describe = "access_key from the config".into();
    } else if let Some(p) = &s.profile {
        describe = format!("the default credential chain with profile {p:?}");
    }
    let sdk = loader.load().await;
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| anyhow::anyhow!("no AWS region: set region (or AWS_REGION)"))?;
    let base = sdk
        .credentials_provider()
        .ok_or_else(|| anyhow::anyhow!("no credential provider"))?;
    let session = || {
        s.role_session_name.clone().unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            format!("sonde-{t}")
        })
    };
    let provider = match (&s.role_arn, &s.web_identity_token_file) {
        (Some(role), Some(file)) => {
            describe = format!("web identity token file {} for role {role}", file.display());
            let conf = ProviderConfig::without_region()
                .with_region(Some(aws_config::Region::new(region.clone())))
                .with_http_client(http);
            SharedCredentialsProvider::new(
                WebIdentityTokenCredentialsProvider::builder()
                    .configure(&conf)
                    .static_configuration(StaticConfiguration {
                        web_identity_token_file: file.clone(),
                        role_arn: role.clone(),
                        session_name: session(),
                    })
                    .build(),
            )
        }
        (Some(role), None) => {
            describe = format!("role {role} assumed with {describe}");
            SharedCredentialsProvider::new(
                AssumeRoleProvider::builder(role.clone())
                    .session_name(session())
                    .configure(&sdk)
                    .build()
                    .await,
            )
        }
        _ => base,
    };
    Ok(Chain {
        provider,
        region,
        describe,
    })
}

/// Holds the current credentials and fetches new ones when they near their expiry: with
/// five minutes left, or half their lifetime for short-lived ones.
pub struct Cache {
    provider: SharedCredentialsProvider,
    current: Option<(Credentials, Option<SystemTime>)>,
}

impl Cache {
    pub fn new(provider: SharedCredentialsProvider) -> Cache {
        Cache {
            provider,
            current: None,
        }
    }

    /// Current credentials, fetched (again) when needed. The error never carries a secret.
    pub async fn get(&mut self) -> Result<Credentials, String> {
        if let Some((c, refresh_at)) = &self.current
            && refresh_at.is_none_or(|t| SystemTime::now() < t)
        {
            return Ok(c.clone());
        }
        let fetched = SystemTime::now();
        match self.provider.provide_credentials().await {
            Ok(c) => {
                let refresh_at = c.expiry().map(|exp| {
                    let life = exp.duration_since(fetched).unwrap_or(Duration::ZERO);
                    exp - (life / 2).min(Duration::from_secs(300))
                });
                tracing::debug!(
                    access_key_id = c.access_key_id(),
                    expires = ?c.expiry(),
                    "got AWS credentials"
                );
                self.current = Some((c.clone(), refresh_at));
                Ok(c)
            }
            Err(e) => {
                // Keep using unexpired credentials while the source is down.
                if let Some((c, _)) = &self.current
                    && c.expiry().is_none_or(|t| SystemTime::now() < t)
                {
                    tracing::warn!(error = %crate::common::http::error_chain(&e), "refreshing AWS credentials failed; using the current ones until they expire");
                    return Ok(c.clone());
                }
                Err(format!(
                    "loading AWS credentials: {}",
                    crate::common::http::error_chain(&e)
                ))
            }
        }
    }

    /// Forgets the current credentials (after the server said they are expired or unknown).
    pub fn invalidate(&mut self) {
        self.current = None;
    }
}

/// SigV4 headers for a request to `service` in `region` (`authorization`, `x-amz-date`, and
/// with a session token `x-amz-security-token`), signing `headers` and the body.
#[allow(clippy::too_many_arguments)]
pub fn sign_headers(
    creds: &Credentials,
    region: &str,
    service: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(&'static str, String)>, String> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let identity = creds.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("signing: {e}"))?
        .into();
    let req = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("signing: {e}"))?;
    let (instructions, _) = sign(req, &params)
        .map_err(|e| format!("signing: {e}"))?
        .into_parts();
    let (hs, _) = instructions.into_parts();
    Ok(hs
        .into_iter()
        .map(|h| (h.name(), h.value().to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Counting(Arc<AtomicUsize>, Duration);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(SystemTime::now() + self.1),
                "test",
            )))
        }
    }

    #[tokio::test]
    async fn refreshes_before_expiry() {
        let n = Arc::new(AtomicUsize::new(0));
        let mut long = Cache::new(SharedCredentialsProvider::new(Counting(
            n.clone(),
            Duration::from_secs(3600),
        )));
        assert_eq!(long.get().await.unwrap().access_key_id(), "AKID0");
        assert_eq!(long.get().await.unwrap().access_key_id(), "AKID0");
        long.invalidate();
        assert_eq!(long.get().await.unwrap().access_key_id(), "AKID1");
        // Short-lived: refreshed after half its life.
        let m = Arc::new(AtomicUsize::new(0));
        let mut short = Cache::new(SharedCredentialsProvider::new(Counting(
            m.clone(),
            Duration::from_millis(200),
        )));
        assert_eq!(short.get().await.unwrap().access_key_id(), "AKID0");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(short.get().await.unwrap().access_key_id(), "AKID1");
    }

    #[tokio::test]
    async fn explicit_keys_come_first() {
        let s = Settings {
            region: Some("eu-west-1".into()),
            access_key: Some("AKIDCONFIG".into()),
            secret_key: Some("s3cr3t".into()),
            token: Some("tok".into()),
            ..Default::default()
        };
        let chain = chain(&s).await.unwrap();
        assert_eq!(chain.region, "eu-west-1");
        let mut cache = Cache::new(chain.provider);
        let c = cache.get().await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDCONFIG");
        assert_eq!(c.secret_access_key(), "s3cr3t");
        assert_eq!(c.session_token(), Some("tok"));
        // Debug output never shows the secret.
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
