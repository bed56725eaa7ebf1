//! How the CLI ends: a failure carries the core's stable error code and message; it is
//! printed as `rohimaya: message` on stderr, or as `{"error":{"code","message"}}` on
//! stdout under `--json`, and the exit code is 1 (2 for a usage error, as clap's own).
//! It owns rendering only.

use std::process::ExitCode;

use rohimaya_core::CoreError;

/// A command's failure: a stable code and a message for the user.
#[derive(Debug)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    /// Exit silently with 1 (the command already printed what it had to say).
    pub silent: bool,
    /// A usage error (flags that do not go together): exit code 2, as clap's own.
    pub usage: bool,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            silent: false,
            usage: false,
        }
    }

    /// A usage error: exit code 2.
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            usage: true,
            ..Self::new("usage", message)
        }
    }

    /// Exit code 1 with nothing more printed.
    pub fn quiet() -> Self {
        Self {
            code: "",
            message: String::new(),
            silent: true,
            usage: false,
        }
    }
}

impl<E: CoreError> From<E> for Failure {
    fn from(e: E) -> Self {
        Self::new(e.code().as_str(), e.to_string())
    }
}

pub type Outcome = Result<(), Failure>;

/// Prints the failure (if any) and picks the exit code.
pub fn finish(result: Outcome, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) if f.silent => ExitCode::FAILURE,
        Err(f) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": f.code, "message": f.message}})
                );
            } else {
                eprintln!("rohimaya: {}", f.message);
            }
            if f.usage {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints `value` as one line of JSON.
pub fn print_json(value: &impl serde::Serialize) -> Outcome {
    let text = serde_json::to_string(value)
        .map_err(|e| Failure::new("unexpected_response", format!("cannot print JSON: {e}")))?;
    println!("{text}");
    Ok(())
}
