//! What every pod relevo builds shares: the hardened security contexts, the data volume's
//! name, scratch volumes and mounts.

use k8s_openapi::api::core::v1::{
    Capabilities, EmptyDirVolumeSource, PodSecurityContext, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};

use crate::protocol::layout;

pub use crate::protocol::names::DATA_VOLUME;

/// The pod security of every pod that runs the postgres image (instances, repo host, backup
/// Jobs): uid/gid/fsGroup postgres, seccomp RuntimeDefault. Only chown a volume that is not
/// already ours: a recursive chown of a large PGDATA on every start would delay failover.
pub fn postgres_pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(layout::POSTGRES_UID),
        run_as_group: Some(layout::POSTGRES_UID),
        fs_group: Some(layout::POSTGRES_UID),
        fs_group_change_policy: Some("OnRootMismatch".into()),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..SeccompProfile::default() }),
        ..PodSecurityContext::default()
    }
}

/// Every relevo container: non-root, no capabilities, no privilege escalation, and a
/// read-only root filesystem (writable paths are emptyDirs).
pub fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Capabilities::default() }),
        ..SecurityContext::default()
    }
}

/// A scratch volume; `medium` "Memory" for tmpfs.
pub fn empty_dir(name: &str, medium: Option<&str>) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: medium.map(String::from),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}
