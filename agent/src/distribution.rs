//! Pack distribution through S3: signed releases, stage indexes and audit
//! records ([`records`]), the bucket ([`remote`]), the publisher's commands
//! ([`publish`]), the agent's sync loop ([`sync`]), the ed25519 keys and
//! envelopes everything is signed with ([`signing`]) and dev builds fetched
//! for one execution ([`dev_build`]).

pub mod dev_build;
pub mod publish;
pub mod records;
pub mod remote;
pub mod signing;
pub mod sync;
