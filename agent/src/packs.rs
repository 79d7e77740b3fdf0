//! Packs: versioned folders of whitelisted actions described by `pack.toml`.

pub mod installed;
pub mod registry;
pub mod venv;

// The formats themselves (pack.toml, arguments, archives, pack files) live
// in the `bolt-formats` crate, shared with the fuzz targets.
pub use bolt_formats::{archive, files, manifest, params};

pub use manifest::{ActionSpec, ManifestError, PackManifest, ParamSpec, ParamType};
pub use params::{ArgError, ArgLimits, BoundArgs};
pub use registry::{LoadedAction, LoadedPack, PackLoadError, Registry, ResolveError, Snapshot};
