//! The one short, stable hash of names (32-bit FNV-1a): it keeps names that relevo derives
//! and must cut to a length limit (Kubernetes objects, PostgreSQL slots) distinct and the same
//! on every run. Not for anything secret.

/// 32-bit FNV-1a of `bytes`.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
