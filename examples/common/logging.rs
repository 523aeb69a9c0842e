//! The examples' `tracing` subscriber: the pipeline's events on stderr, filtered by
//! `RUST_LOG` (for example `RUST_LOG=debug`), or by `default` when it is not set.

/// Installs the subscriber.
pub fn init(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}
