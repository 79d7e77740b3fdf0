//! `bolt-agent pack ...` and `bolt-agent keys ...`: the publisher's commands.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use bolt_agent::{
    config::{Config, S3Settings},
    distribution::{
        publish::{self, Publisher},
        records::{check_expiry, Stage},
        remote::Remote,
        signing::{self, SigningKey, TrustedKeys},
    },
    packs::{archive, manifest::PackManifest, ManifestError},
};

#[derive(Subcommand)]
pub enum PackCommand {
    /// Check a pack folder; every problem is listed with its file and field.
    Lint { dir: PathBuf },
    /// Write the reproducible archive OUT/NAME-VERSION.tar.gz.
    Build {
        dir: PathBuf,
        #[arg(long, default_value = "dist")]
        out: PathBuf,
        /// Version to build (must agree with pack.toml's, if it has one).
        #[arg(long)]
        version: Option<String>,
    },
    /// Build, upload and point a stage (dev or test) at the new version.
    Publish {
        dir: PathBuf,
        #[arg(long, value_enum)]
        stage: Stage,
        #[arg(long)]
        version: Option<String>,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Point the next stage at a version of the previous one (dev → test → prod).
    Promote {
        name: String,
        version: String,
        #[arg(long, value_enum)]
        to: Stage,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Re-sign stage indexes (all, or the one given) with a fresh expiry,
    /// changing nothing they serve: run it on a schedule (cron, CI) well
    /// within --index-valid-for, or agents stop taking updates.
    Refresh {
        #[arg(long, value_enum)]
        stage: Option<Stage>,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        s3: S3Args,
    },
    /// What each stage points to.
    List {
        #[arg(long, value_enum)]
        stage: Option<Stage>,
        /// Public keys to check each index's signature against (repeatable).
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Who published and promoted what, when (oldest first).
    Audit {
        #[arg(long)]
        pack: Option<String>,
        /// Public keys to check each record's signature against (repeatable).
        #[arg(long = "trusted-key")]
        trusted_keys: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        s3: S3Args,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Write an ed25519 key pair: DIR/NAME.key (private, 0600) and DIR/NAME.pub.
    Gen {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        name: String,
    },
}

#[derive(Args)]
pub struct SignerArgs {
    /// Private signing key (from `keys gen`).
    #[arg(long, env = "BOLT_SIGNING_KEY")]
    key: PathBuf,
    /// Who is publishing, as the audit trail records it (default USER@HOST).
    #[arg(long, env = "BOLT_IDENTITY")]
    identity: Option<String>,
    /// Other publishers' public keys whose statements in the bucket may be
    /// built on (repeatable; the own key is always trusted, and so are the
    /// `[sync] trusted_keys` of --config).
    #[arg(long = "trusted-key", env = "BOLT_TRUSTED_KEYS", value_delimiter = ',')]
    trusted_keys: Vec<PathBuf>,
    /// How long the stage index signed now stays valid for agents (e.g.
    /// 30d, 12h); an expired index is refused, so a replayed old one is too.
    #[arg(long, env = "BOLT_INDEX_VALID_FOR", default_value = "30d", value_parser = humantime::parse_duration)]
    index_valid_for: std::time::Duration,
}

/// Bucket settings: `--config`'s `[sync]` section, then flags and variables.
#[derive(Args)]
pub struct S3Args {
    /// An agent config file whose [sync] section names the bucket.
    #[arg(long, env = "BOLT_CONFIG")]
    config: Option<PathBuf>,
    #[arg(long, env = "BOLT_S3_BUCKET")]
    bucket: Option<String>,
    #[arg(long, env = "BOLT_S3_PREFIX")]
    prefix: Option<String>,
    #[arg(long, env = "BOLT_S3_REGION")]
    region: Option<String>,
    /// Endpoint URL of an S3-compatible server.
    #[arg(long, env = "BOLT_S3_ENDPOINT")]
    endpoint: Option<String>,
    #[arg(long, env = "BOLT_S3_PATH_STYLE")]
    path_style: bool,
}

impl S3Args {
    fn config(&self) -> anyhow::Result<Option<Config>> {
        let Some(path) = &self.config else { return Ok(None) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let c = Config::from_toml(&text).with_context(|| format!("{}", path.display()))?;
        Ok(Some(c))
    }

    fn settings(&self) -> anyhow::Result<(S3Settings, std::time::Duration)> {
        let (mut s, timeout) = match self.config()? {
            Some(c) => (c.sync.s3(), c.sync.request_timeout),
            None => (S3Settings::default(), std::time::Duration::from_secs(30)),
        };
        if let Some(v) = &self.bucket {
            s.bucket = v.clone();
        }
        if let Some(v) = &self.prefix {
            s.prefix = v.clone();
        }
        if let Some(v) = &self.region {
            s.region = v.clone();
        }
        if let Some(v) = &self.endpoint {
            s.endpoint = v.clone();
        }
        s.path_style |= self.path_style;
        Ok((s, timeout))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

async fn connect(s3: &S3Args) -> anyhow::Result<Remote> {
    let (settings, timeout) = s3.settings()?;
    Ok(Remote::connect(&settings, timeout).await?)
}

/// The signer's key and the keys it builds on: `--trusted-key`s and the
/// config's `[sync] trusted_keys`.
fn publisher<'a>(remote: &'a Remote, key: &'a SigningKey, signer: SignerArgs, s3: &S3Args) -> anyhow::Result<Publisher<'a>> {
    let mut paths = signer.trusted_keys;
    if let Some(c) = s3.config()? {
        paths.extend(c.sync.trusted_keys);
    }
    let trusted = TrustedKeys::load(&paths)?;
    if signer.index_valid_for < std::time::Duration::from_secs(60) {
        bail!("--index-valid-for {:?} is too short: agents would refuse the index before they read it", signer.index_valid_for);
    }
    Ok(Publisher::new(remote, key, identity(signer.identity), trusted).valid_for(signer.index_valid_for))
}

fn identity(given: Option<String>) -> String {
    given.filter(|s| !s.is_empty()).unwrap_or_else(|| {
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        format!("{user}@{}", bolt_agent::hostname())
    })
}

#[allow(clippy::print_stdout)]
pub fn pack(command: PackCommand) -> anyhow::Result<()> {
    match command {
        PackCommand::Lint { dir } => lint(&dir),
        PackCommand::Build { dir, out, version } => {
            let built = archive::build(&dir, version.as_deref())?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            let path = out.join(format!("{}-{}.tar.gz", built.name, built.version));
            std::fs::write(&path, &built.bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("sha256:{} {}", built.sha256, path.display());
            Ok(())
        }
        PackCommand::Publish { dir, stage, version, signer, s3 } => runtime()?.block_on(async {
            let remote = connect(&s3).await?;
            let key = SigningKey::load(&signer.key)?;
            let p = publisher(&remote, &key, signer, &s3)?;
            let done = p.publish(&dir, stage, version.as_deref()).await?;
            if !done.moved && !done.uploaded {
                println!(
                    "{} {} (sha256 {}) is already published to {}",
                    done.pack, done.version, done.sha256, done.stage
                );
                return Ok(());
            }
            println!(
                "published {} {} (sha256 {}, {} bytes{}) to {}",
                done.pack,
                done.version,
                done.sha256,
                done.size,
                if done.uploaded { "" } else { ", archive already in the bucket" },
                done.stage
            );
            Ok(())
        }),
        PackCommand::Promote { name, version, to, signer, s3 } => runtime()?.block_on(async {
            let remote = connect(&s3).await?;
            let key = SigningKey::load(&signer.key)?;
            let p = publisher(&remote, &key, signer, &s3)?;
            let done = p.promote(&name, &version, to).await?;
            let verb = if done.moved { "promoted" } else { "already in" };
            println!("{verb} {} {} (sha256 {}) to {}", done.pack, done.version, done.sha256, done.stage);
            Ok(())
        }),
        PackCommand::Refresh { stage, signer, s3 } => runtime()?.block_on(async {
            let remote = connect(&s3).await?;
            let key = SigningKey::load(&signer.key)?;
            let p = publisher(&remote, &key, signer, &s3)?;
            for stage in Stage::ALL.into_iter().filter(|s| stage.is_none_or(|o| o == *s)) {
                let expires = p.refresh(stage).await?;
                println!("re-signed the {stage} index; it expires at {expires}");
            }
            Ok(())
        }),
        PackCommand::List { stage, trusted_keys, json, s3 } => runtime()?.block_on(async {
            let remote = connect(&s3).await?;
            let trusted = TrustedKeys::load(&trusted_keys)?;
            let rows = publish::list(&remote, stage, &trusted).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            println!(
                "{:<6} {:<24} {:<16} {:<14} {:<14} {:<10} {:<20} TARGETS",
                "STAGE", "PACK", "VERSION", "SHA256", "GEN", "SIGNATURE", "EXPIRES"
            );
            for r in rows {
                let targets = r.targets.map_or("all".to_owned(), |t| t.join(","));
                let check = match r.verified {
                    Some(true) => "ok",
                    Some(false) => "UNTRUSTED",
                    None => "unchecked",
                };
                let now = std::time::SystemTime::now();
                let expires = match check_expiry(r.expires_at.as_deref(), now) {
                    Ok(_) => r.expires_at.clone().unwrap_or_default(),
                    Err(_) if r.expires_at.is_none() => "NEVER (refused)".to_owned(),
                    Err(_) => "EXPIRED".to_owned(),
                };
                println!(
                    "{:<6} {:<24} {:<16} {:<14} {:<14} {check:<10} {expires:<20} {targets}",
                    r.stage.as_str(),
                    r.pack,
                    r.version,
                    r.sha256.chars().take(12).collect::<String>(),
                    r.generation
                );
            }
            Ok(())
        }),
        PackCommand::Audit { pack, trusted_keys, json, s3 } => runtime()?.block_on(async {
            let remote = connect(&s3).await?;
            let trusted = TrustedKeys::load(&trusted_keys)?;
            let trail = publish::audit(&remote, pack.as_deref(), &trusted).await?;
            for (key, reason) in &trail.unreadable {
                eprintln!("warning: {key} is not an audit record ({reason}); skipped");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&trail.records)?);
                return Ok(());
            }
            for a in trail.records {
                let r = &a.record;
                let check = match a.verified {
                    Some(true) => "signature ok",
                    Some(false) => "SIGNATURE NOT TRUSTED",
                    None => "signature not checked",
                };
                let stages = match r.from_stage {
                    Some(from) => format!("{from} → {}", r.stage),
                    None => format!("to {}", r.stage),
                };
                println!(
                    "{}  {:<8} {} {} {stages}  by {} (key {}, on {})  [{check}]",
                    r.at, r.event, r.pack, r.version, r.identity, r.key_id, r.host
                );
            }
            Ok(())
        }),
    }
}

#[allow(clippy::print_stdout)]
fn lint(dir: &std::path::Path) -> anyhow::Result<()> {
    match PackManifest::load(dir) {
        Ok(m) => {
            let version = m.version.as_deref().unwrap_or("(no version: pass --version to build)");
            println!("{}: ok: {} {version}, {} actions", dir.display(), m.name, m.actions.len());
            Ok(())
        }
        Err(ManifestError::Invalid(problems)) => {
            for p in &problems {
                println!("{p}");
            }
            bail!("{} problems in {}", problems.len(), dir.display())
        }
        Err(e) => {
            println!("{e}");
            bail!("{} cannot be read", dir.display())
        }
    }
}

#[allow(clippy::print_stdout)]
pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Gen { out, name } => {
            let (files, id) = signing::generate(&out, &name)?;
            for f in files {
                println!("{}", f.display());
            }
            println!("key id {id}");
            Ok(())
        }
    }
}
