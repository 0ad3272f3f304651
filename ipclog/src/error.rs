//! Why ipclog stops, and the exit status that says so (README, "Exit status"): 2 for bad
//! usage and anything that cannot be used at start, missing permission included; 1 for a
//! failure while running. The kind is decided where the error arises, so no caller has to
//! guess it from the message's text.

use std::fmt;

use ipclog_capture::CaptureError;

#[derive(Debug)]
pub enum Error {
    /// Bad usage, or a source or output that cannot be used at start.
    Start(String),
    /// A permission ipclog was not given (CAP_NET_ADMIN for conntrack).
    Permission(String),
    /// A failure while running.
    Run(String),
    /// The capture crate's error, with the status it chose.
    Capture(CaptureError),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Start(_) | Error::Permission(_) => 2,
            Error::Run(_) => 1,
            Error::Capture(e) => e.exit_code.clamp(1, 255) as u8,
        }
    }

    /// The same error with `prefix` before its message (`ipc: `); a capture error keeps its
    /// own.
    pub fn prefixed(self, prefix: &str) -> Error {
        match self {
            Error::Start(m) => Error::Start(format!("{prefix}{m}")),
            Error::Permission(m) => Error::Permission(format!("{prefix}{m}")),
            Error::Run(m) => Error::Run(format!("{prefix}{m}")),
            Error::Capture(e) => Error::Capture(e),
        }
    }
}

impl fmt::Display for Error {
    /// The message as said on standard error (not yet escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Start(m) | Error::Permission(m) | Error::Run(m) => f.write_str(m),
            Error::Capture(e) => write!(f, "ipclog: {e}"),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind() {
        assert_eq!(Error::Start("x".into()).exit_code(), 2);
        assert_eq!(Error::Permission("x".into()).exit_code(), 2);
        assert_eq!(Error::Run("x".into()).exit_code(), 1);
        let capture = |exit_code| {
            Error::Capture(CaptureError {
                message: "m".into(),
                exit_code,
            })
        };
        assert_eq!(capture(2).exit_code(), 2);
        // A status the capture crate got wrong still says failure, never success.
        assert_eq!(capture(0).exit_code(), 1);
        assert_eq!(capture(1).to_string(), "ipclog: m");
        assert_eq!(
            Error::Run("x".into()).prefixed("ipc: ").to_string(),
            "ipc: x"
        );
    }
}
