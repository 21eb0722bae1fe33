//! Services: `-rw` follows the primary, `-ro` the standbys, `-r` every instance, and a
//! headless Service gives each pod a stable DNS name. The role selectors work because the
//! operator labels pods with the role PostgreSQL reports.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::protocol::layout;
use crate::protocol::names::{self, RoleLabel};

use super::Owner;

pub fn build(owner: &Owner) -> Vec<Service> {
    let cluster = &owner.name;
    vec![
        service(owner, names::service_rw(cluster), Some(RoleLabel::Primary), false),
        service(owner, names::service_ro(cluster), Some(RoleLabel::Standby), false),
        service(owner, names::service_r(cluster), None, false),
        service(owner, names::service_headless(cluster), None, true),
    ]
}

fn service(owner: &Owner, name: String, role: Option<RoleLabel>, headless: bool) -> Service {
    let mut selector: BTreeMap<String, String> = names::postgres_selector(&owner.name);
    if let Some(role) = role {
        selector.insert(names::LABEL_ROLE.into(), role.as_str().into());
    }
    Service {
        metadata: owner.child_meta(name, "postgres"),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("postgres".into()),
                port: layout::POSTGRES_PORT,
                target_port: Some(IntOrString::String("postgres".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            // The headless Service exists for DNS: a pod must be resolvable before it is
            // ready, because a standby clones from and streams to names, not IPs.
            cluster_ip: headless.then(|| "None".to_string()),
            publish_not_ready_addresses: headless.then_some(true),
            type_: Some("ClusterIP".into()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgcluster::test_fixtures::cluster_from_yaml;

    fn by_name(name: &str) -> ServiceSpec {
        let services = build(&Owner::of(&cluster_from_yaml("spec: {}")).unwrap());
        services.into_iter().find(|s| s.metadata.name.as_deref() == Some(name)).unwrap().spec.unwrap()
    }

    #[test]
    fn rw_selects_the_primary_and_ro_the_standbys() {
        assert_eq!(by_name("demo-rw").selector.unwrap()["relevo.dev/role"], "primary");
        assert_eq!(by_name("demo-ro").selector.unwrap()["relevo.dev/role"], "standby");
        let all = by_name("demo-r").selector.unwrap();
        assert!(!all.contains_key("relevo.dev/role"));
        assert_eq!(all["relevo.dev/cluster"], "demo");
    }

    #[test]
    fn headless_service_publishes_pods_before_they_are_ready() {
        let headless = by_name("demo");
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        assert_eq!(by_name("demo-rw").publish_not_ready_addresses, None);
    }

    #[test]
    fn every_service_targets_the_named_postgres_port() {
        for name in ["demo-rw", "demo-ro", "demo-r", "demo"] {
            let port = &by_name(name).ports.unwrap()[0];
            assert_eq!(port.port, 5432);
            assert_eq!(port.target_port, Some(IntOrString::String("postgres".into())));
        }
    }
}
