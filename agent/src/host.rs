//! Facilities of the host an agent runs on: cgroups ([`caps`]), facts read
//! from /proc ([`procfs`]), allocator tuning ([`memory`]) and the user an
//! action runs as ([`runas`]). Leaves: they know nothing of Bolt's other modules.

pub mod caps;
pub mod cgroupfs;
pub mod memory;
pub mod procfs;
pub mod runas;
