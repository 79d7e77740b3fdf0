//! The binary's subcommands beyond `run`: development certificates and the
//! publisher's `pack` commands.

pub mod certs;
pub mod pack;
