use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// relevo: PostgreSQL primary/standby clusters on Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "relevo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator: controllers, /healthz, /readyz and /metrics.
    Run(relevo::config::RunArgs),
    /// Print the CRD YAML (multi-document), or write one file per CRD with --out-dir.
    Crdgen {
        /// Directory to write <plural>.<group>.yaml files into, instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
    /// Entrypoint of a PostgreSQL pod: bootstrap the volume if empty, then run PostgreSQL.
    Instance(relevo::instance::exec::InstanceArgs),
    /// Supervisor of a PgBouncer pod: PgBouncer, its userlist, the control channel, the pause bound.
    Pooler(relevo::pooler::PoolerArgs),
    /// Entrypoint of a cluster's pgBackRest repo host: TLS server, stanza creation and check.
    RepoHost(relevo::repohost::RepoHostArgs),
    /// Create a planned Switchover of a cluster (to --to, or the most caught-up standby).
    Switchover {
        #[command(flatten)]
        target: relevo::cli::ClusterRef,
        /// Instance to promote, e.g. <cluster>-2.
        #[arg(long)]
        to: Option<String>,
    },
    /// Create a Switchover back to the instance that was primary before the last completed one.
    Failback {
        #[command(flatten)]
        target: relevo::cli::ClusterRef,
    },
    /// Create the Backups of a cycle day (--day N, in order) or one Backup (--type T).
    Backup(relevo::cli::BackupArgs),
    /// List a cluster's backups recorded in Redis, oldest first.
    Backups {
        #[command(flatten)]
        target: relevo::cli::ClusterRef,
        /// Delete the Redis records whose backup the repository no longer lists (they are
        /// shown first, and deleted only once answered y, or with --yes).
        #[arg(long)]
        prune_orphans: bool,
        /// With --prune-orphans: delete without asking.
        #[arg(long, requires = "prune_orphans")]
        yes: bool,
    },
    /// Entrypoint of a backup Job's pod: pgBackRest backup, result in the termination message.
    BackupJob(relevo::backup::run::BackupJobArgs),
}

/// Asks `question` on the terminal; anything but y/yes, or no terminal, is a no.
fn ask(question: &str) -> bool {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(config) => {
            relevo::operator::init_logging(&config)?;
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            runtime.block_on(relevo::operator::run(config))?;
        }
        Command::Crdgen { out_dir: None } => {
            print!("{}", relevo::crd::all_to_yaml().context("serialising CRDs")?);
        }
        Command::Crdgen { out_dir: Some(dir) } => {
            for path in
                relevo::crd::write_all(&dir).with_context(|| format!("writing CRDs to {}", dir.display()))?
            {
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Switchover { target, to } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let name = runtime.block_on(relevo::cli::switchover(&target, to))?;
            println!("switchover.relevo.dev/{name} created");
        }
        Command::Failback { target } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let name = runtime.block_on(relevo::cli::failback(&target))?;
            println!("switchover.relevo.dev/{name} created");
        }
        Command::Backup(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime
                .block_on(relevo::cli::backup(&args, |name| println!("backup.relevo.dev/{name} created")))?;
        }
        Command::Backups { target, prune_orphans: false, .. } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            print!("{}", runtime.block_on(relevo::cli::backups(&target))?);
        }
        Command::Backups { target, prune_orphans: true, yes } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let confirm = |question: &str| yes || ask(question);
            print!("{}", runtime.block_on(relevo::cli::prune_orphans(&target, confirm))?);
        }
        Command::BackupJob(args) => {
            let program = relevo::backup::run::pgbackrest_program();
            let result = relevo::backup::run::run(&args, &program).context("writing the backup result")?;
            if !matches!(result, relevo::backup::result::JobResult::Completed(_)) {
                std::process::exit(1);
            }
        }
        Command::Pooler(args) => {
            let code = relevo::pooler::run(args).context("relevo pooler")?;
            std::process::exit(code);
        }
        Command::RepoHost(args) => {
            let code = relevo::repohost::run(args).context("relevo repo-host")?;
            std::process::exit(code);
        }
        Command::Instance(args) => {
            let status = relevo::instance::run(&args).context("relevo instance")?;
            // PostgreSQL's own exit code becomes the container's.
            std::process::exit(status.code().unwrap_or(1));
        }
    }
    Ok(())
}
