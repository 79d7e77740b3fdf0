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
