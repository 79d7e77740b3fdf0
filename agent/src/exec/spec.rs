//! What the supervisor runs (`spec.json`), assembled from the action, its
//! bound arguments and the new record: a pure function, tested alone.

use super::executor::ExecutorConfig;
use crate::{
    execdir::{Origin, Spec},
    host::{
        caps::{CapsMode, CapsSpec, Limits},
        runas::RunAs,
    },
    packs::{BoundArgs, LoadedAction},
    store::ExecRecord,
};

/// The spec of the execution `record` of `action`: argv, the environment
/// (base, virtualenv, user, `BOLT_*`, then the arguments), caps and origin.
pub(super) fn assemble(
    cfg: &ExecutorConfig,
    action: &LoadedAction,
    bound: BoundArgs,
    record: &ExecRecord,
    run_as: Option<RunAs>,
) -> Spec {
    let mut env = cfg.base_env.clone();
    if let Some(venv) = &action.venv {
        for (k, v) in &mut env {
            if k == "PATH" {
                *v = format!("{}:{v}", venv.join("bin").display());
            }
        }
        env.push(("VIRTUAL_ENV".to_owned(), venv.to_string_lossy().into_owned()));
    }
    if let Some(r) = &run_as {
        env.retain(|(k, _)| !matches!(k.as_str(), "HOME" | "USER" | "LOGNAME"));
        env.extend([
            ("HOME".to_owned(), r.home.clone()),
            ("USER".to_owned(), r.user.clone()),
            ("LOGNAME".to_owned(), r.user.clone()),
        ]);
    }
    env.extend([
        ("BOLT_EXECUTION_ID".to_owned(), record.id.clone()),
        ("BOLT_PACK".to_owned(), record.pack.clone()),
        ("BOLT_PACK_VERSION".to_owned(), record.pack_version.clone()),
        ("BOLT_ACTION".to_owned(), record.action.clone()),
    ]);
    env.extend(bound.env);
    let mut argv = vec![action.entrypoint.to_string_lossy().into_owned()];
    argv.extend(bound.argv);
    Spec {
        execution_id: record.id.clone(),
        argv,
        env,
        cwd: action.pack_dir.clone(),
        timeout_ms: record.timeout_ms,
        kill_grace_ms: cfg.kill_grace.as_millis() as u64,
        output_max: cfg.output_max,
        nice: cfg.nice,
        caps: caps_for(cfg, action, &record.id),
        run_as,
        origin: Some(Origin {
            pack: record.pack.clone(),
            action: record.action.clone(),
            pack_version: record.pack_version.clone(),
            args: record.args.clone(),
            caller: record.caller.clone(),
            idempotency_key: record.idempotency_key.clone(),
            request_hash: record.request_hash.clone(),
            timeout_ms: record.timeout_ms,
            created_at_ms: record.created_at_ms,
            dev_dir: record.dev_dir.clone(),
        }),
    }
}

/// The cgroup and limits of one execution; the pack's caps win over the defaults.
fn caps_for(cfg: &ExecutorConfig, action: &LoadedAction, id: &str) -> CapsSpec {
    let d = &cfg.default_limits;
    let cgroup = (cfg.caps_mode != CapsMode::None)
        .then(|| format!("{}/{id}", cfg.cgroup_name));
    CapsSpec {
        cgroup,
        parents: cfg.cgroup_parents.clone(),
        clone_into_cgroup: cfg.clone_into_cgroup,
        limits: Limits {
            memory_max: action.spec.memory_max.map(|m| m.as_u64()).or(d.memory_max),
            cpu_max: action.spec.cpu_max.or(d.cpu_max),
            pids_max: action.spec.pids_max.map(u64::from).or(d.pids_max),
        },
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::{path::Path, sync::Arc, time::Duration};

    use super::*;
    use crate::packs::{registry::load_pack, venv::Venvs, ArgLimits};

    /// A one-action pack in `dir`, loaded as the registry loads it.
    pub(in crate::exec) fn action(root: &Path, caps: &str) -> Arc<LoadedAction> {
        let dir = &root.join("t");
        std::fs::create_dir_all(dir).expect("pack folder");
        std::fs::write(
            dir.join("pack.toml"),
            format!(
                "name = \"t\"\nversion = \"1.2.3\"\n[[actions]]\nname = \"a\"\nentrypoint = \"run.sh\"\n{caps}\n[actions.params.n]\ntype = \"int\"\ndefault = 3\n"
            ),
        )
        .expect("pack.toml");
        std::fs::write(dir.join("run.sh"), "#!/bin/sh\n").expect("entrypoint");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let venvs = Venvs::new(root.join(".venvs"), "python3".into(), Duration::from_secs(5));
        let pack = load_pack(dir, &venvs).expect("loads");
        pack.actions.get("a").expect("action").clone()
    }

    pub(in crate::exec) fn config(caps_mode: CapsMode) -> ExecutorConfig {
        ExecutorConfig {
            default_timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(5),
            nice: 7,
            output_max: 1 << 20,
            max_running: 2,
            max_running_per_pack: 1,
            max_pending: 1,
            arg_limits: ArgLimits { max_arg_bytes: 1024, max_args_bytes: 4096 },
            base_env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("HOME".into(), "/root".into())],
            root_packs: Vec::new(),
            self_exe: "/bin/true".into(),
            caps_mode,
            cgroup_parents: [("".to_owned(), "/system.slice/bolt.service".to_owned())].into(),
            cgroup_name: "bolt".into(),
            clone_into_cgroup: true,
            default_limits: Limits { memory_max: Some(1 << 30), cpu_max: Some(1.0), pids_max: Some(100) },
            min_free_bytes: 0,
        }
    }

    fn record() -> ExecRecord {
        ExecRecord {
            id: "0190-x".into(),
            pack: "t".into(),
            action: "a".into(),
            pack_version: "1.2.3".into(),
            caller: "alice".into(),
            timeout_ms: 60_000,
            ..Default::default()
        }
    }

    #[test]
    fn the_environment_layers_base_venv_user_bolt_then_arguments() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut action = (*action(d.path(), "")).clone();
        action.venv = Some("/data/venvs/abc".into());
        let cfg = config(CapsMode::None);
        let bound = action.bind(&[("n".to_owned(), "5".to_owned())].into(), cfg.arg_limits).expect("binds");
        let run_as = RunAs { user: "svc".into(), uid: 1000, gid: 1000, home: "/home/svc".into() };
        let spec = assemble(&cfg, &action, bound, &record(), Some(run_as.clone()));
        let env: std::collections::HashMap<_, _> = spec.env.iter().cloned().collect();
        assert_eq!(env["PATH"], "/data/venvs/abc/bin:/usr/bin:/bin");
        assert_eq!(env["VIRTUAL_ENV"], "/data/venvs/abc");
        assert_eq!((env["HOME"].as_str(), env["USER"].as_str()), ("/home/svc", "svc"));
        assert_eq!(spec.env.iter().filter(|(k, _)| k == "HOME").count(), 1, "one HOME: {:?}", spec.env);
        assert_eq!(env["BOLT_EXECUTION_ID"], "0190-x");
        assert_eq!(env["BOLT_ARG_N"], "5");
        assert_eq!(spec.argv, [action.entrypoint.display().to_string(), "--n=5".into()]);
        assert_eq!(spec.cwd, action.pack_dir);
        assert_eq!((spec.nice, spec.kill_grace_ms, spec.timeout_ms), (7, 5000, 60_000));
        assert_eq!(spec.run_as, Some(run_as));
        assert_eq!(spec.origin.expect("origin").caller, "alice");
    }

    #[test]
    fn caps_name_a_cgroup_only_where_there_are_cgroups_and_the_pack_wins() {
        let d = tempfile::tempdir().expect("tempdir");
        let capped = action(d.path(), "memory_max = \"64MiB\"\npids_max = 10");
        let caps = caps_for(&config(CapsMode::Cgroup2), &capped, "id1");
        assert_eq!(caps.cgroup.as_deref(), Some("bolt/id1"));
        assert_eq!(caps.limits.memory_max, Some(64 << 20));
        assert_eq!(caps.limits.pids_max, Some(10));
        assert_eq!(caps.limits.cpu_max, Some(1.0), "the default where the pack sets none");
        let none = caps_for(&config(CapsMode::None), &capped, "id1");
        assert_eq!(none.cgroup, None);
        assert_eq!(none.parents["" ], "/system.slice/bolt.service");
    }
}
