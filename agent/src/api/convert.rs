//! Domain types to and from the proto's messages.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bolt_proto::v1 as pb;
use tonic::Status;

use super::status::invalid_field;

use crate::{
    exec::output::Chunk,
    files,
    packs::{LoadedAction, ParamType},
    store::{ExecRecord, ExecState},
};

pub fn timestamp_ms(ms: u64) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: (ms / 1000) as i64, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    timestamp_ms(files::unix_ms(t))
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// A proto duration as a std one; negative or out-of-range is an error.
#[allow(clippy::result_large_err)]
pub fn from_duration(field: &str, d: &prost_types::Duration) -> Result<Duration, Status> {
    if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
        return Err(invalid_field(field, format!("{field} must be a non-negative duration")));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// Unix milliseconds of a proto timestamp (clamped at the epoch).
pub fn from_timestamp(t: &prost_types::Timestamp) -> u64 {
    SystemTime::try_from(*t)
        .ok()
        .and_then(|s| s.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn state(s: ExecState) -> pb::State {
    match s {
        ExecState::Pending => pb::State::Pending,
        ExecState::Running => pb::State::Running,
        ExecState::Succeeded => pb::State::Succeeded,
        ExecState::Failed => pb::State::Failed,
        ExecState::TimedOut => pb::State::TimedOut,
        ExecState::Killed => pb::State::Killed,
        ExecState::OomKilled => pb::State::OomKilled,
        ExecState::Lost => pb::State::Lost,
    }
}

#[allow(clippy::result_large_err)]
pub fn state_from(v: i32) -> Result<ExecState, Status> {
    Ok(match pb::State::try_from(v) {
        Ok(pb::State::Pending) => ExecState::Pending,
        Ok(pb::State::Running) => ExecState::Running,
        Ok(pb::State::Succeeded) => ExecState::Succeeded,
        Ok(pb::State::Failed) => ExecState::Failed,
        Ok(pb::State::TimedOut) => ExecState::TimedOut,
        Ok(pb::State::Killed) => ExecState::Killed,
        Ok(pb::State::OomKilled) => ExecState::OomKilled,
        Ok(pb::State::Lost) => ExecState::Lost,
        _ => return Err(invalid_field("states", format!("unknown state {v}"))),
    })
}

pub fn execution(r: &ExecRecord) -> pb::Execution {
    pb::Execution {
        execution_id: r.id.clone(),
        pack: r.pack.clone(),
        action: r.action.clone(),
        state: state(r.state) as i32,
        exit_code: r.exit_code,
        signal: r.signal,
        pack_version: r.pack_version.clone(),
        args: r.args.clone().into_iter().collect(),
        caller: r.caller.clone(),
        idempotency_key: r.idempotency_key.clone(),
        timeout: Some(duration(Duration::from_millis(r.timeout_ms))),
        created_at: Some(timestamp_ms(r.created_at_ms)),
        started_at: r.started_at_ms.map(timestamp_ms),
        ended_at: r.ended_at_ms.map(timestamp_ms),
        cpu_time: Some(duration(Duration::from_micros(r.cpu_time_us))),
        peak_memory_bytes: r.peak_rss_bytes,
        stdout_bytes: r.stdout_bytes,
        stderr_bytes: r.stderr_bytes,
        output_truncated: r.truncated,
        error: r.error.clone(),
        killed_by: r.killed_by.clone(),
        supervisor_pid: if r.state.is_terminal() { 0 } else { r.supervisor_pid },
    }
}

pub fn chunk(c: Chunk) -> pb::OutputChunk {
    pb::OutputChunk {
        stream: i32::from(c.stream),
        offset: c.offset,
        data: c.data,
        time: Some(timestamp_ms(c.time_ms)),
        end: false,
        execution: None,
    }
}

pub fn action(a: &LoadedAction, default_timeout: Duration) -> pb::Action {
    let params = a
        .spec
        .params
        .iter()
        .map(|(name, p)| pb::Param {
            name: name.clone(),
            r#type: match p.kind {
                ParamType::String => pb::ParamType::String,
                ParamType::Int => pb::ParamType::Int,
                ParamType::Bool => pb::ParamType::Bool,
                ParamType::Enum => pb::ParamType::Enum,
            } as i32,
            description: p.description.clone(),
            required: p.required,
            default: p.default_text(),
            min: p.min,
            max: p.max,
            pattern: p.pattern.clone().unwrap_or_default(),
            values: p.values.clone(),
            max_length: p.max_length.unwrap_or(0),
        })
        .collect();
    pb::Action {
        pack: a.pack.clone(),
        pack_version: a.pack_version.clone(),
        name: a.spec.name.clone(),
        description: a.spec.description.clone(),
        timeout: Some(duration(a.spec.timeout.unwrap_or(default_timeout))),
        read_only: a.spec.read_only,
        params,
        memory_max_bytes: a.spec.memory_max.map_or(0, |m| m.as_u64()),
        cpu_max: a.spec.cpu_max.unwrap_or(0.0),
    }
}

/// A pack or action name used as a filter: empty (no filter) or valid.
#[allow(clippy::result_large_err)]
pub fn name_filter(field: &str, name: &str) -> Result<(), Status> {
    if name.is_empty() || crate::packs::manifest::valid_name(name) {
        Ok(())
    } else {
        Err(invalid_field(field, format!(
            "invalid {field} {:?}: names are [a-z0-9][a-z0-9-]*",
            name.chars().take(80).collect::<String>()
        )))
    }
}

/// Execution ids are UUIDs; checking the form first keeps any other text
/// (paths, traversal) away from the file system.
#[allow(clippy::result_large_err)]
pub fn execution_id(id: &str) -> Result<String, Status> {
    uuid::Uuid::try_parse(id).map(|u| u.hyphenated().to_string()).map_err(|_| {
        invalid_field("execution_id", format!(
            "{:?} is not an execution id",
            id.chars().take(80).collect::<String>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(execution_id("../../etc/passwd").is_err());
        assert!(execution_id("").is_err());
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(execution_id(&id).ok(), Some(id));
    }

    #[test]
    fn durations_and_times() {
        assert!(from_duration("timeout", &prost_types::Duration { seconds: -1, nanos: 0 }).is_err());
        assert_eq!(
            from_duration("t", &duration(Duration::from_millis(1500))).ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(from_timestamp(&timestamp_ms(1_700_000_000_123)), 1_700_000_000_123);
    }
}
