//! Where tracing goes: the console's log pane, or stderr, filtered by one
//! table of what each front end logs at each `-v`.

/// What logs: the front ends differ in what a person wants by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    /// The console's log pane.
    Console,
    /// `snapstorm serve` on stderr.
    Serve,
    /// A headless run on stderr: the progress line says what goes on.
    Run,
    /// `replay` and `shrink`: their own lines say what goes on.
    Reproduce,
}

/// The filter for `-v` given 0, 1 and 2+ times, per front end. RUST_LOG
/// overrides it. An https storage's certificate that is not trusted is told
/// once, by snapstorm, naming `--cacert`: the verifier's own error record
/// stays out unless `-v` asks.
const FILTERS: [(Logs, [&str; 3]); 4] = [
    // rustic_backend warns of every request it retries: the evidence
    // already tells of those, and a network fault would fill the pane.
    (
        Logs::Console,
        [
            "info,snapstorm=debug,snapstorm::server=info,rustic_core=warn,rustic_backend=error,rustls_platform_verifier=off",
            "debug",
            "debug",
        ],
    ),
    (Logs::Serve, ["info", "snapstorm=debug,info", "trace"]),
    (
        Logs::Run,
        [
            "warn,rustls_platform_verifier=off",
            "snapstorm=debug,info",
            "trace",
        ],
    ),
    (Logs::Reproduce, ["off", "warn", "info"]),
];

fn filter(logs: Logs, verbose: u8) -> tracing_subscriber::EnvFilter {
    let levels = FILTERS
        .iter()
        .find(|(l, _)| *l == logs)
        .map(|(_, levels)| levels)
        .expect("every front end has its filters");
    let default = levels[usize::from(verbose).min(2)];
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

/// Sets up logging for `logs` at `-v` given `verbose` times.
pub fn init_logging(logs: Logs, verbose: u8) {
    match logs {
        Logs::Console => init_console_logging(verbose),
        _ => init_stderr(filter(logs, verbose), verbose),
    }
}

/// Routes tracing (and the backend's `log` records) into the console's log pane.
fn init_console_logging(verbose: u8) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let subscriber = tracing_subscriber::registry()
        .with(filter(Logs::Console, verbose))
        .with(crate::console::LogLayer);
    // rustic logs through the `log` crate: `try_init` also turns those
    // records into events, so they are filtered, folded and trimmed like
    // snapstorm's own (tui-logger with tracing support takes none itself).
    let _ = subscriber.try_init();
    let _ = tui_logger::init_logger(tui_logger::LevelFilter::Trace);
    tui_logger::set_default_level(tui_logger::LevelFilter::Debug);
    for target in ["rustic_core", "rustic_backend", "reqwest", "hyper"] {
        tui_logger::set_level_for_target(target, tui_logger::LevelFilter::Warn);
    }
}

/// Logs to stderr with this filter; each record on one line unless `-v`
/// asks for everything.
fn init_stderr(filter: tracing_subscriber::EnvFilter, verbose: u8) {
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let format = tracing_subscriber::fmt::format().with_ansi(colour);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .event_format(OneLine {
            inner: format,
            whole: verbose > 0,
        })
        .try_init();
}

/// A record as one line: rustic_core's errors carry a `Message:` block, a
/// cause and a backtrace over dozens of lines, which would bury the
/// progress line of a headless run. The whole text stays where it belongs
/// (the action's error in the trace, the check's problems in the report).
struct OneLine<F> {
    inner: F,
    /// `-v`: every line, as the record has it.
    whole: bool,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for OneLine<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        if self.whole {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut text = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut text),
            event,
        )?;
        if text.trim_end().contains('\n') {
            writeln!(writer, "{}", crate::engine::brief::brief(&text))
        } else if writer.has_ansi_escapes() {
            // One line already: written again, with the terminal's colours.
            self.inner.format_event(ctx, writer, event)
        } else {
            writer.write_str(&text)
        }
    }
}
