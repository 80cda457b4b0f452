//! What a run reports when it ends: printed by the CLI, written into report.md.

use crate::checkpoint::TrainingState;
use crate::metrics::Record;
use std::path::{Path, PathBuf};

/// What a finished (or interrupted) run reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub run_dir: PathBuf,
    pub steps: u64,
    pub epochs_completed: u64,
    pub final_loss: f64,
    pub first_loss: Option<f64>,
    pub knn_top1_init: Option<f64>,
    pub knn_top1: Option<f64>,
    pub online_top1: Option<f64>,
    pub online_val_top1: Option<f64>,
    /// Views per second of the training step (forward, loss, backward, update), the first
    /// step of the invocation (warm-up) excluded.
    pub views_per_s: f64,
    /// Views per second end to end (waiting for the loader included; monitors excluded).
    pub views_per_s_end_to_end: f64,
    pub wall_s: f64,
    /// Share of the training steps' time spent inside collectives (several processes; 0 alone).
    pub communicating_share: f64,
    pub interrupted: bool,
    pub checkpoint: Option<PathBuf>,
    /// Per-step losses of this invocation (for tests and reports).
    #[serde(skip)]
    pub losses: Vec<f64>,
}

impl Summary {
    /// The summary of an invocation that starts at `state` (a fresh run or a resumed one).
    pub(crate) fn at_start(
        run_dir: &Path,
        state: &TrainingState,
        checkpoint: &Option<PathBuf>,
    ) -> Summary {
        Summary {
            run_dir: run_dir.to_path_buf(),
            steps: state.step,
            epochs_completed: state.epoch,
            final_loss: state.last_loss,
            first_loss: None,
            knn_top1_init: None,
            knn_top1: None,
            online_top1: None,
            online_val_top1: None,
            views_per_s: 0.0,
            views_per_s_end_to_end: 0.0,
            wall_s: 0.0,
            communicating_share: 0.0,
            interrupted: false,
            checkpoint: checkpoint.clone(),
            losses: Vec::new(),
        }
    }

    /// Takes over what the records of the run so far say: the first loss, the k-NN at
    /// initialisation and the latest monitors (so a resumed run's summary is the whole run's).
    pub(crate) fn carry_over(&mut self, records: &[Record]) {
        for record in records {
            match record {
                Record::Init { knn_top1, .. } => {
                    self.knn_top1_init = *knn_top1;
                    self.knn_top1 = *knn_top1;
                }
                Record::Step { loss, .. } => {
                    self.first_loss.get_or_insert(*loss);
                }
                Record::Epoch(e) => {
                    self.first_loss.get_or_insert(e.loss);
                    self.knn_top1 = e.knn_top1.or(self.knn_top1);
                    self.online_top1 = e.online_top1.or(self.online_top1);
                    self.online_val_top1 = e.online_val_top1.or(self.online_val_top1);
                }
            }
        }
    }
}
