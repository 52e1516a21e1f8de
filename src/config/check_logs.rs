//! The checks of the sections about Drover's output: `[access_log]` and `[log]`.

use super::check::Checker;
use super::*;

impl Checker<'_> {
    pub(super) fn access_log(&mut self, r: RawAccessLog) -> AccessLogConfig {
        let target = match r.path.as_deref() {
            None | Some("-") => AccessLogTarget::Stdout,
            Some("") => {
                self.problem(
                    "access_log.path",
                    "\"\"",
                    "empty; write \"-\" for stdout or a file path",
                );
                AccessLogTarget::Stdout
            }
            // Whether its directory exists is `drover check`'s question (a file system).
            Some(raw) => AccessLogTarget::File(self.path(raw)),
        };
        let format = match r.format.as_deref() {
            None => AccessLogFormat::Json,
            Some(raw) => AccessLogFormat::from_name(raw).unwrap_or_else(|| {
                self.problem(
                    "access_log.format",
                    &format!("{raw:?}"),
                    "expected \"json\" or \"combined\"",
                );
                AccessLogFormat::Json
            }),
        };
        AccessLogConfig { target, format }
    }

    pub(super) fn log(&mut self, r: RawLog) -> LogConfig {
        let format = match r.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(raw) => {
                self.problem(
                    "log.format",
                    &format!("{raw:?}"),
                    "expected \"text\" or \"json\"",
                );
                LogFormat::Text
            }
        };
        if let Some(level) = &r.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                self.problem(
                    "log.level",
                    &format!("{level:?}"),
                    format!("not a log filter ({e}); write e.g. \"info\" or \"debug,hyper=warn\""),
                );
            }
        }
        LogConfig {
            format,
            level: r.level,
        }
    }
}
