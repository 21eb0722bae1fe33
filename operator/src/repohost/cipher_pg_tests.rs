//! Integration test: an encrypted repository (`spec.backup.encryption`), with the same real
//! processes as [`super`]. Both sides hold the passphrase in their environment, as the repo
//! host, the backup Jobs and the instances' postgres container get `PGBACKREST_REPO1_CIPHER_PASS`.
//!
//! Compression is off on both sides (`PGBACKREST_COMPRESS_TYPE=none`), so that only the
//! encryption can hide the marker rows from a reader of the repository's files.

use super::*;
use crate::pgbackrest::config::CIPHER_PASS_ENV;
use crate::pgcluster::passwords::generate_password;

const MARKER: &str = "relevo-plaintext-marker-7f3a";
const CHECKSUM_QUERY: &str = "SELECT md5(string_agg(v, ',' ORDER BY v)) FROM marker";

fn with_env(runner: &Runner, name: &str, value: &str) -> Runner {
    let mut runner = runner.clone();
    runner.env.push((name.into(), value.into()));
    runner
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> (usize, Vec<PathBuf>) {
    let (mut seen, mut found) = (0, Vec::new());
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            pending.extend(fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(bytes) = fs::read(&path) {
            seen += 1;
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    (seen, found)
}

/// Stops the restored PostgreSQL when the test ends, pass or fail.
struct Restored<'a> {
    bed: &'a Bed,
    data: PathBuf,
}

impl Drop for Restored<'_> {
    fn drop(&mut self) {
        let mut argv = args(["stop", "-m", "immediate", "-D"]);
        argv.push(self.data.clone().into());
        let _ = self.bed.pg_side.run(&self.bed.pg_bin.join("pg_ctl"), &argv);
    }
}

#[test]
fn an_encrypted_repository_backs_up_and_restores_and_reveals_nothing_without_its_passphrase() {
    let mut bed = Bed::new();
    let passphrase = generate_password().unwrap();
    // pgBackRest 2.45's archive-push on the pg host reads the encrypted archive.info itself:
    // without the passphrase it fails ("key/value found outside of section"), so the
    // instance's postgres container gets it, and the cipher type, too.
    let pg_side = with_env(&bed.pg_side, "PGBACKREST_COMPRESS_TYPE", "none");
    let pg_side = with_env(&pg_side, "PGBACKREST_REPO1_CIPHER_TYPE", "aes-256-cbc");
    bed.pg_side = with_env(&pg_side, CIPHER_PASS_ENV, &passphrase);
    let repo_without_pass = with_env(&bed.repo_side, "PGBACKREST_COMPRESS_TYPE", "none");
    bed.repo_side = with_env(&repo_without_pass, CIPHER_PASS_ENV, &passphrase);
    let Started { pg_port, pg_conf, repo_conf, .. } = start(&mut bed, true);
    let repo_conf_text = fs::read_to_string(&repo_conf).unwrap();
    assert!(repo_conf_text.contains("repo1-cipher-type=aes-256-cbc\n"), "{repo_conf_text}");

    // The marker rows are in the database, in plain text in its heap file.
    bed.psql(
        pg_port,
        &format!("CREATE TABLE marker AS SELECT '{MARKER}-' || g AS v FROM generate_series(1, 5000) g"),
    );
    bed.psql(pg_port, "CHECKPOINT");
    let source_checksum = bed.psql(pg_port, CHECKSUM_QUERY);
    let (_, in_data) = files_containing(&bed.path("data").join("base"), MARKER.as_bytes());
    assert!(!in_data.is_empty(), "the marker is plain text in the data directory");

    // A full backup from the repo side; the segment holding the rows is archived too.
    let repo =
        Pgbackrest::new(&names::stanza(CLUSTER)).unwrap().with_config(&repo_conf.display().to_string());
    let output = bed.pgbackrest(&bed.repo_side, repo.backup(BackupType::Full)).unwrap_or_else(|e| {
        panic!("full backup failed: {e}\npg server log:\n{}", bed.log_tail("pg-server.log"))
    });
    let info_json = bed.pgbackrest(&bed.repo_side, repo.info_json()).unwrap();
    let stanzas = info::parse(&info_json).unwrap();
    let stanza = info::find_stanza(&stanzas, CLUSTER).expect("stanza in info");
    assert_eq!(stanza.status.code, 0, "{}", stanza.status.message);
    assert_eq!(stanza.backup.len(), 1, "{info_json}");
    assert!(info_json.contains("\"cipher\":\"aes-256-cbc\""), "{info_json}");

    // (b) No file of the repository holds the marker.
    let (files, leaking) = files_containing(&bed.path("repo-volume"), MARKER.as_bytes());
    eprintln!("{files} files in the encrypted repository, none with the marker");
    assert!(files > 5, "the repository has files ({files})");
    assert!(leaking.is_empty(), "plain text in the repository: {leaking:?}");

    // (c) Without the passphrase, or with another, the repository cannot be read.
    let without = bed.pgbackrest(&repo_without_pass, repo.info_json());
    assert!(without.is_err(), "info without the passphrase: {without:?}");
    let wrong = with_env(&repo_without_pass, CIPHER_PASS_ENV, "not-the-passphrase");
    // With another passphrase info exits 0, but the stanza is unreadable (status 99) and
    // lists no backup.
    let with_wrong = bed.pgbackrest(&wrong, repo.info_json()).unwrap_or_default();
    let unreadable = info::parse(&with_wrong)
        .ok()
        .and_then(|s| info::find_stanza(&s, CLUSTER).cloned())
        .is_none_or(|s| s.status.code != 0 && s.backup.is_empty());
    assert!(unreadable, "info with another passphrase: {with_wrong}");
    eprintln!("info without the passphrase: {}", without.unwrap_err().lines().last().unwrap_or_default());

    // (a) A restore from the pg host's side, which has no passphrase of its own.
    let restored = bed.path("restored");
    fs::create_dir_all(&restored).unwrap();
    fs::set_permissions(&restored, fs::Permissions::from_mode(0o700)).unwrap();
    if bed.as_root {
        std::os::unix::fs::chown(&restored, Some(id_of("-u")), Some(id_of("-g"))).unwrap();
    }
    let restore_argv = vec![
        format!("--config={}", pg_conf.display()),
        format!("--stanza={}", names::stanza(CLUSTER)),
        format!("--pg1-path={}", restored.display()),
        "--type=immediate".to_string(),
        "--target-action=promote".to_string(),
        "restore".to_string(),
    ];
    let restore_output = bed.run(&bed.pg_side, Path::new("pgbackrest"), args(&restore_argv)).unwrap();
    let restored_port = free_port();
    let options = format!("-p {restored_port} -c archive_mode=off");
    let argv = args([
        "start",
        "-w",
        "-t",
        "60",
        "-D",
        &bed.s("restored"),
        "-l",
        &bed.s("restored.log"),
        "-o",
        &options,
    ]);
    bed.run(&bed.pg_side, &bed.pg_bin.join("pg_ctl"), argv).unwrap();
    let _restored = Restored { bed: &bed, data: restored.clone() };
    wait_until("the restored instance to be promoted", Duration::from_secs(60), || {
        let in_recovery = bed.psql(restored_port, "SELECT pg_is_in_recovery()");
        (in_recovery == "f", in_recovery)
    });
    assert_eq!(bed.psql(restored_port, CHECKSUM_QUERY), source_checksum);
    assert_eq!(bed.psql(restored_port, "SELECT count(*) FROM marker"), "5000");

    // The passphrase is in no output and no log of this run.
    let (_, logs) = files_containing(&bed.root, passphrase.as_bytes());
    assert!(logs.is_empty(), "the passphrase was written to {logs:?}");
    for text in [&output, &info_json, &restore_output] {
        assert!(!text.contains(&passphrase), "the passphrase in pgBackRest's output");
    }
}
