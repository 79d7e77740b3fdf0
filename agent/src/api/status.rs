//! The one place where domain errors become gRPC statuses. A refused field
//! also travels as a `google.rpc.BadRequest` detail (field path and why), so a
//! program can tell which argument was refused without reading the message.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A status naming the request field at fault (`pack`, `args.count`, `grace`, ...).
pub fn bad_field(code: Code, field: &str, message: String) -> Status {
    Status::with_error_details(code, message.clone(), ErrorDetails::with_bad_request_violation(field, message))
}

/// INVALID_ARGUMENT about one field.
pub fn invalid_field(field: &str, message: String) -> Status {
    bad_field(Code::InvalidArgument, field, message)
}

use crate::{
    authz::Denied,
    distribution::dev_build::DevBuildError,
    exec::{output::FollowError, ExecError},
    packs::ResolveError,
    store::StoreError,
};

impl From<ResolveError> for Status {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::BadPackName(_) => invalid_field("pack", e.to_string()),
            ResolveError::BadActionName(_) => invalid_field("action", e.to_string()),
            ResolveError::NoPack(_) | ResolveError::NoAction { .. } => Status::not_found(e.to_string()),
        }
    }
}

impl From<ExecError> for Status {
    fn from(e: ExecError) -> Self {
        let code = match &e {
            ExecError::Args(a) if a.is_limit() => Code::ResourceExhausted,
            ExecError::Args(_) => Code::InvalidArgument,
            ExecError::Busy { .. } => Code::ResourceExhausted,
            ExecError::RunAs(_) | ExecError::RootForbidden { .. } => Code::FailedPrecondition,
            ExecError::KeyReused(_) => Code::AlreadyExists,
            ExecError::NotFound(_) => Code::NotFound,
            ExecError::Store(StoreError::Closed | StoreError::Reopening) => Code::Unavailable,
            ExecError::Store(StoreError::Full(_)) | ExecError::DiskFull { .. } => Code::ResourceExhausted,
            ExecError::Store(_) | ExecError::Io(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        if let ExecError::Args(a) = &e {
            return bad_field(code, &a.field(), e.to_string());
        }
        Status::new(code, e.to_string())
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        ExecError::Store(e).into()
    }
}

impl From<FollowError> for Status {
    fn from(e: FollowError) -> Self {
        match e {
            FollowError::NotFound(_) => Status::not_found(e.to_string()),
            FollowError::Exec(e) => e.into(),
            FollowError::ShuttingDown { .. } => Status::unavailable(e.to_string()),
            FollowError::Io { .. } => {
                tracing::error!(error = %e, "output read failed");
                Status::internal(e.to_string())
            }
        }
    }
}

impl From<Denied> for Status {
    fn from(e: Denied) -> Self {
        tracing::info!(target: "audit", identity = %e.identity, permission = %e.permission, pack = e.pack.as_deref(), "denied");
        Status::permission_denied(e.to_string())
    }
}

impl From<DevBuildError> for Status {
    fn from(e: DevBuildError) -> Self {
        let code = match &e {
            DevBuildError::NotConfigured => Code::FailedPrecondition,
            DevBuildError::Unnamed | DevBuildError::BadVersion(_) | DevBuildError::BadSha256(_) => {
                Code::InvalidArgument
            }
            DevBuildError::NotFound { .. } => Code::NotFound,
            DevBuildError::Refused { .. } => Code::FailedPrecondition,
        };
        tracing::warn!(error = %e, "dev build");
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use bolt_formats::params::ArgError;
    use tonic_types::StatusExt;

    use super::*;

    fn violations(s: &Status) -> Vec<String> {
        s.get_details_bad_request().map(|b| b.field_violations.into_iter().map(|v| v.field).collect()).unwrap_or_default()
    }

    #[test]
    fn a_refused_argument_is_named_in_a_bad_request_detail() {
        let s: Status = ExecError::Args(ArgError::Missing("days".into())).into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(violations(&s), ["args.days"]);
        assert!(s.message().contains("missing required argument \"days\""), "{}", s.message());
        let big: Status = ExecError::Args(ArgError::TooLarge { name: "msg".into(), size: 9, limit: 1 }).into();
        assert_eq!((big.code(), violations(&big)), (Code::ResourceExhausted, vec!["args.msg".to_owned()]));
    }

    #[test]
    fn names_point_at_pack_or_action_and_unknown_ones_at_nothing() {
        let pack: Status = ResolveError::BadPackName("A/..".into()).into();
        assert_eq!((pack.code(), violations(&pack)), (Code::InvalidArgument, vec!["pack".to_owned()]));
        let action: Status = ResolveError::BadActionName("x y".into()).into();
        assert_eq!(violations(&action), ["action"]);
        let missing: Status = ResolveError::NoPack("nope".into()).into();
        assert_eq!((missing.code(), violations(&missing)), (Code::NotFound, Vec::<String>::new()));
    }

    #[test]
    fn what_the_agent_cannot_do_as_configured_is_a_failed_precondition() {
        let s: Status = ExecError::RootForbidden { pack: "p".into() }.into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        let busy: Status =
            ExecError::Busy { what: "running".into(), limit: 1, setting: "limits.max_running" }.into();
        assert_eq!(busy.code(), Code::ResourceExhausted);
        assert!(violations(&busy).is_empty());
    }
}
