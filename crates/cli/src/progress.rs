//! How `rohimaya upload` and `rohimaya queue run` show transfers as they go: a progress
//! bar per file (indicatif) when stderr is a terminal, plain lines otherwise, nothing
//! under `--json` (stdout then carries only the final JSON).
//!
//! It owns rendering only. Every number (bytes done and total, rate, ETA, state) comes
//! from the core's events ([`rohimaya_core::events`]); it never measures a transfer
//! itself, never writes to stdout, and never slows the transfers: it reads the bounded
//! event bus, and when it lags it just misses some updates.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, HumanDuration, MultiProgress, ProgressBar, ProgressStyle};
use rohimaya_core::events::{Event, TransferNotice, TransferProgress, TransferState};
use tokio::sync::broadcast::{self, error::RecvError};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar per file on a terminal.
    Bars,
    /// Plain lines on stderr (not a terminal: logs, CI, pipes).
    Lines,
    /// Nothing (`--json`).
    Quiet,
}

impl Mode {
    pub fn pick(json: bool) -> Mode {
        if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// A plain progress line at most this often per file (state changes are always shown).
const LINE_EVERY: Duration = Duration::from_secs(2);

/// One file as shown.
struct Shown {
    label: String,
    bar: Option<ProgressBar>,
    state: Option<TransferState>,
    last_line: Option<Instant>,
    /// Told about the current offline spell already.
    offline_told: bool,
}

/// Shows the events of a bus: [`Renderer::follow`] beside the running queue, then
/// [`Renderer::drain`] for the last events once it is done.
pub struct Renderer {
    view: View,
}

impl Renderer {
    pub fn new(mode: Mode) -> Self {
        Self {
            view: View {
                mode,
                multi: MultiProgress::new(),
                files: HashMap::new(),
            },
        }
    }

    /// Shows events as they come, until the bus closes.
    pub async fn follow(&mut self, rx: &mut broadcast::Receiver<Event>) {
        loop {
            match rx.recv().await {
                Ok(event) => self.view.show(event),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Shows the events already published and not shown yet.
    pub fn drain(&mut self, rx: &mut broadcast::Receiver<Event>) {
        loop {
            match rx.try_recv() {
                Ok(event) => self.view.show(event),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }
}

struct View {
    mode: Mode,
    multi: MultiProgress,
    files: HashMap<String, Shown>,
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:30!} [{bar:28}] {bytes:>10}/{total_bytes:<10} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// "12.3 MiB/s, ETA 40s" from the core's numbers.
fn rate_and_eta(p: &TransferProgress) -> String {
    let mut s = String::new();
    if p.rate > 0.0 {
        s.push_str(&format!("{}/s", HumanBytes(p.rate as u64)));
    }
    if let Some(eta) = p.eta_secs
        && matches!(
            p.state,
            TransferState::Uploading | TransferState::Downloading
        )
    {
        s.push_str(&format!(
            ", ETA {}",
            HumanDuration(Duration::from_secs(eta))
        ));
    }
    s
}

fn is_final(state: TransferState) -> bool {
    matches!(
        state,
        TransferState::Completed
            | TransferState::Failed
            | TransferState::Cancelled
            | TransferState::Paused
    )
}

impl View {
    fn file(&mut self, id: &str) -> &mut Shown {
        self.files.entry(id.to_string()).or_insert_with(|| Shown {
            label: format!("#{id}"),
            bar: None,
            state: None,
            last_line: None,
            offline_told: false,
        })
    }

    /// A message line, above the bars on a terminal.
    fn say(&self, line: &str) {
        match self.mode {
            Mode::Bars => {
                if self.multi.println(line).is_err() {
                    eprintln!("{line}");
                }
            }
            Mode::Lines => eprintln!("{line}"),
            Mode::Quiet => {}
        }
    }

    fn show(&mut self, event: Event) {
        if self.mode == Mode::Quiet {
            return;
        }
        match event {
            Event::TransferState {
                transfer_id,
                path,
                state,
                detail,
            } => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| path.display().to_string());
                let mode = self.mode;
                let f = self.file(&transfer_id);
                f.label = format!("#{transfer_id} {name}");
                if let Some(bar) = &f.bar {
                    bar.set_prefix(f.label.clone());
                }
                if is_final(state) {
                    let text = match (&detail, state) {
                        (Some(d), TransferState::Completed) => format!("completed (job {d})"),
                        (Some(d), _) => format!("{}: {d}", state.as_str()),
                        (None, _) => state.as_str().to_string(),
                    };
                    f.state = Some(state);
                    match (&f.bar, mode) {
                        (Some(bar), Mode::Bars) => bar.finish_with_message(text),
                        _ => {
                            let line = format!("{} {text}", f.label);
                            self.say(&line);
                        }
                    }
                }
            }
            Event::TransferProgress(p) => self.progress(p),
            Event::TransferNotice {
                transfer_id,
                notice,
            } => self.notice(&transfer_id, notice),
            // Watched-folder events are shown by `rohimaya watch run`.
            Event::WatchActivity(_) | Event::WatchFolderState(_) => {}
            // Jobs and sessions are the app's; the CLI reports transfers only.
            _ => {}
        }
    }

    fn progress(&mut self, p: TransferProgress) {
        let mode = self.mode;
        let multi = self.multi.clone();
        let f = self.file(&p.transfer_id);
        if f.state.is_some_and(is_final) && !is_final(p.state) {
            // A late update of a finished file (events may cross): ignore.
            return;
        }
        if p.state != TransferState::Offline {
            f.offline_told = false;
        }
        let changed = f.state != Some(p.state);
        f.state = Some(p.state);
        match mode {
            Mode::Bars => {
                let bar = f.bar.get_or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(p.bytes_total));
                    bar.set_style(style());
                    bar.set_prefix(f.label.clone());
                    bar
                });
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                let extra = rate_and_eta(&p);
                bar.set_message(if extra.is_empty() {
                    p.state.as_str().to_string()
                } else {
                    format!("{} {extra}", p.state.as_str())
                });
            }
            Mode::Lines => {
                let due = f.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY);
                if (changed || due) && !is_final(p.state) {
                    f.last_line = Some(Instant::now());
                    let pct = if p.bytes_total > 0 {
                        p.bytes_done as f64 * 100.0 / p.bytes_total as f64
                    } else {
                        0.0
                    };
                    let extra = rate_and_eta(&p);
                    let line = format!(
                        "{} {} {:.1}% ({}/{}){}",
                        f.label,
                        p.state.as_str(),
                        pct,
                        HumanBytes(p.bytes_done),
                        HumanBytes(p.bytes_total),
                        if extra.is_empty() {
                            String::new()
                        } else {
                            format!(" {extra}")
                        }
                    );
                    self.say(&line);
                }
            }
            Mode::Quiet => {}
        }
    }

    fn notice(&mut self, id: &str, notice: TransferNotice) {
        let label = self.file(id).label.clone();
        let line = match notice {
            TransferNotice::RestartedFileChanged { reason } => reason,
            TransferNotice::RestartedUploadGone => {
                "the server lost the upload; starting a fresh one".into()
            }
            TransferNotice::FallbackFormUpload => {
                "this server takes uploads through the engine only".into()
            }
            TransferNotice::Resumed {
                parts_done,
                parts_total,
            } => format!("resuming: {parts_done} of {parts_total} parts already stored"),
            TransferNotice::Duplicate { job_id } => format!(
                "already uploaded{}",
                job_id.map(|j| format!(" (job {j})")).unwrap_or_default()
            ),
            TransferNotice::WaitingForNetwork {
                reason,
                retry_in_ms,
            } => {
                let f = self.file(id);
                if let Some(bar) = &f.bar {
                    bar.set_message(format!(
                        "offline, trying again in {}",
                        HumanDuration(Duration::from_millis(retry_in_ms))
                    ));
                }
                if f.offline_told {
                    return;
                }
                f.offline_told = true;
                format!("offline: {reason}; waiting for the network (it goes on by itself)")
            }
            TransferNotice::BusyElsewhere { message } => message,
            TransferNotice::PartStored { .. } => return,
            TransferNotice::DownloadRestarted { reason } => format!("starting over: {reason}"),
            TransferNotice::DownloadResumed {
                bytes_done,
                bytes_total,
            } => format!("resuming: {bytes_done} of {bytes_total} bytes already here"),
        };
        self.say(&format!("{label} {line}"));
    }
}
