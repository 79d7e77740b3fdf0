//! Packs: versioned folders of whitelisted actions described by `pack.toml`.

pub mod archive;
pub mod files;
pub mod manifest;
pub mod params;
pub mod registry;

pub use manifest::{ActionSpec, ManifestError, PackManifest, ParamSpec, ParamType};
pub use params::{ArgError, ArgLimits, BoundArgs};
pub use registry::{LoadedAction, LoadedPack, PackLoadError, Registry, ResolveError, Snapshot};
