use super::*;
use crate::pki::{self, CertificateAuthority};
use crate::switchover::instance_channel::{ClusterTls, Endpoint, push, push_rebuild};

fn rebuild(token: &str, source: &str) -> RebuildMarkers {
    RebuildMarkers { rebuild: Some(token.into()), rebuild_source: Some(source.into()) }
}

#[test]
fn a_pushed_rebuild_acts_before_the_file_shows_it() {
    let mut pushed = Some(Pushed { wanted: rebuild("t2", "demo-2"), file_at_push: None });
    // The file still has the fence and an older rebuild: the pushed rebuild wins, the fence
    // passes through.
    let file = Markers {
        fence: Some("so-1".into()),
        rebuild: Some("t1".into()),
        rebuild_source: Some("demo-3".into()),
        ..Markers::default()
    };
    let now = Pushed::effective(&mut pushed, &file);
    assert_eq!((now.rebuild.as_deref(), now.rebuild_source.as_deref()), (Some("t2"), Some("demo-2")));
    assert_eq!(now.fence.as_deref(), Some("so-1"));
    assert!(pushed.is_some(), "in force until the file catches up");
    // kubelet caught up: the push is spent and the file speaks again.
    let caught_up = Markers { rebuild: Some("t2".into()), rebuild_source: Some("demo-2".into()), ..file };
    assert_eq!(Pushed::effective(&mut pushed, &caught_up), caught_up);
    assert!(pushed.is_none());
}

#[test]
fn a_newer_rebuild_in_the_file_wins_over_an_older_push() {
    let mut pushed = Some(Pushed { wanted: rebuild("t2", "demo-2"), file_at_push: None });
    let _ = Pushed::effective(&mut pushed, &Markers::default());
    let newer =
        Markers { rebuild: Some("t3".into()), rebuild_source: Some("demo-1".into()), ..Markers::default() };
    assert_eq!(Pushed::effective(&mut pushed, &newer).rebuild.as_deref(), Some("t3"));
    assert!(pushed.is_none());
}

fn file_markers(fence: Option<&str>) -> Markers {
    Markers { fence: fence.map(str::to_owned), rebuild: Some("r1".into()), ..Markers::default() }
}

#[test]
fn a_push_overrides_the_file_until_the_file_catches_up() {
    let mut pushed = Some(Pushed {
        wanted: FenceMarkers { fence: Some("so-1".into()), restore_primary: None },
        file_at_push: None,
    });
    // The file still shows the old state: the push wins, rebuild markers pass through.
    let now = Pushed::effective(&mut pushed, &file_markers(None));
    assert_eq!((now.fence.as_deref(), now.rebuild.as_deref()), (Some("so-1"), Some("r1")));
    assert!(pushed.is_some());
    // kubelet caught up: the push is spent.
    assert_eq!(Pushed::effective(&mut pushed, &file_markers(Some("so-1"))).fence.as_deref(), Some("so-1"));
    assert!(pushed.is_none());
}

#[test]
fn a_newer_file_wins_over_an_older_push() {
    let mut pushed = Some(Pushed {
        wanted: FenceMarkers { fence: Some("so-1".into()), restore_primary: None },
        file_at_push: None,
    });
    let _ = Pushed::effective(&mut pushed, &file_markers(None));
    // The file moved on to something else than when the push came: a newer write.
    assert_eq!(Pushed::effective(&mut pushed, &file_markers(Some("so-2"))).fence.as_deref(), Some("so-2"));
    assert!(pushed.is_none());
}

struct Pki {
    dir: std::path::PathBuf,
    tls: ClusterTls,
}

fn pki_in(dir: &str, cluster: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("relevo-control-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = CertificateAuthority::generate(cluster).unwrap();
    let leaf = pki::pgbackrest_leaf(&ca, cluster, "db").unwrap();
    std::fs::write(dir.join("ca.crt"), &ca.pem().cert_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
    let tls = ClusterTls {
        ca_pem: ca.pem().cert_pem.clone().into_bytes(),
        cert_pem: leaf.cert_pem.clone().into_bytes(),
        key_pem: leaf.key_pem.clone().into_bytes(),
    };
    Pki { dir, tls }
}

#[tokio::test]
async fn only_a_client_of_the_same_ca_is_heard() {
    let ours = pki_in("ours", "demo");
    let theirs = pki_in("theirs", "demo");
    let config =
        server_config(&ours.dir.join("ca.crt"), &ours.dir.join("tls.crt"), &ours.dir.join("tls.key"))
            .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = tcp.local_addr().unwrap().port();
    let channel = Arc::new(Channel::default());
    let server = tokio::spawn(serve_on(tcp, config, channel.clone()));
    let name = "demo-1-0.demo.db.svc";
    let wanted = FenceMarkers { fence: Some("so-9".into()), restore_primary: None };
    let at = |server_name| Endpoint { address: "127.0.0.1", port, server_name };

    // Another cluster's certificate is refused (by the client, which does not trust that
    // server, and by the server, which does not trust that client).
    let foreign = push(theirs.tls.client_config().unwrap(), &at(name), &wanted).await;
    assert!(foreign.is_err(), "{foreign:?}");
    assert_eq!(channel.effective(&Markers::default()).fence, None);

    // Trusting our server is not enough: the client's certificate must be of our CA too.
    let impostor = ClusterTls {
        ca_pem: ours.tls.ca_pem.clone(),
        cert_pem: theirs.tls.cert_pem.clone(),
        key_pem: theirs.tls.key_pem.clone(),
    };
    let refused = push(impostor.client_config().unwrap(), &at(name), &wanted).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(channel.effective(&Markers::default()).fence, None);

    // A name the certificate does not carry is refused too.
    let wrong_name = push(ours.tls.client_config().unwrap(), &at("demo-1-0.other.db.svc"), &wanted).await;
    assert!(wrong_name.is_err(), "{wrong_name:?}");

    let woken = channel.wake.notified();
    push(ours.tls.client_config().unwrap(), &at(name), &wanted).await.expect("delivered");
    tokio::time::timeout(std::time::Duration::from_secs(1), woken).await.expect("the supervisor is woken");
    assert_eq!(channel.effective(&Markers::default()).fence.as_deref(), Some("so-9"));

    // A rebuild travels the same way, and only whole: a token without its source is refused.
    let config = || ours.tls.client_config().unwrap();
    let half = RebuildMarkers { rebuild: Some("t-7".into()), rebuild_source: None };
    let refused = push_rebuild(config(), &at(name), &half).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("400")), "{refused:?}");
    let whole = RebuildMarkers { rebuild: Some("t-7".into()), rebuild_source: Some("demo-2".into()) };
    push_rebuild(config(), &at(name), &whole).await.expect("delivered");
    let now = channel.effective(&Markers::default());
    assert_eq!((now.rebuild.as_deref(), now.rebuild_source.as_deref()), (Some("t-7"), Some("demo-2")));
    assert_eq!(now.fence.as_deref(), Some("so-9"), "the fence push stays in force beside it");
    server.abort();
    for p in [ours, theirs] {
        let _ = std::fs::remove_dir_all(p.dir);
    }
}
