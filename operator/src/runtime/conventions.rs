//! The conventions every reader and writer of the Kubernetes API in relevo shares, with no
//! dependency on the rest of the operator (the in-pod instance manager uses them too): the
//! one field manager, what an API error code means, and when a pod is ready.

use k8s_openapi::api::core::v1::Pod;

/// The one field manager of every write the operator makes (server-side apply and creates).
pub const FIELD_MANAGER: &str = "relevo";

/// HTTP 409: the object was changed since it was read, or (on create) it already exists.
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 409)
}

/// HTTP 404.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The pod's Ready condition is True (kubelet's readiness probe passed).
pub fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_a_true_ready_condition() {
        let pod = |status: &str| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "pg-1-0"},
                "status": {"conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": status},
                ]},
            }))
            .unwrap()
        };
        assert!(is_ready(&pod("True")));
        assert!(!is_ready(&pod("False")));
        assert!(!is_ready(&Pod::default()));
    }

    #[test]
    fn conflicts_and_absence_are_recognised() {
        let api = |code| kube::Error::Api(kube::core::Status::failure("x", "X").with_code(code).boxed());
        assert!(is_conflict(&api(409)) && !is_conflict(&api(404)));
        assert!(is_not_found(&api(404)) && !is_not_found(&api(409)));
    }
}
