//! Configuration of `relevo run`, parsed once at start from flags and environment, then
//! carried in the [`Context`](crate::runtime::context::Context). Nothing reads the environment later.

use std::net::SocketAddr;
use std::time::Duration;

use crate::duration;

#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespace to watch; all namespaces when unset.
    #[arg(long, env = "RELEVO_WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "RELEVO_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Log format: json for clusters, text for a terminal.
    #[arg(long, env = "RELEVO_LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,

    /// tracing filter, e.g. "info" or "relevo=debug,kube=info".
    #[arg(long, env = "RELEVO_LOG", default_value = "info")]
    pub log_filter: String,

    /// Name of the operator's pod, recorded as the reporting instance of Events and as the
    /// holder of the operator Lease.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Namespace of the operator's pod, which holds the operator Lease (one operator at a
    /// time); the client's default namespace when unset.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// How often each cluster is observed even when nothing changes (role, lag, readiness).
    #[arg(long, env = "RELEVO_OBSERVE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub observe_interval: Duration,

    /// Timeout of the operator's connections to PostgreSQL.
    #[arg(long, env = "RELEVO_POSTGRES_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub postgres_timeout: Duration,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    duration::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["relevo"]).unwrap();
        assert_eq!(cli.run.observe_interval, Duration::from_secs(10));
        assert_eq!(cli.run.http_addr.port(), 8080);
        assert_eq!(cli.run.log_format, LogFormat::Json);
    }

    #[test]
    fn durations_use_the_duration_grammar() {
        let cli = Cli::try_parse_from(["relevo", "--observe-interval", "1m30s"]).unwrap();
        assert_eq!(cli.run.observe_interval, Duration::from_secs(90));
        assert!(Cli::try_parse_from(["relevo", "--postgres-timeout", "-1s"]).is_err());
    }
}
