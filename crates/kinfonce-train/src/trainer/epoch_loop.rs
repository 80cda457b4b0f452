//! The epoch loop: steps, step and epoch records, monitors, checkpoints, interrupts.

use super::step::StepOutcome;
use super::Trainer;
use crate::config::TrainConfig;
use crate::distributed::Distributed;
use crate::error::{io_err, Result, TrainError};
use crate::metrics::{read_records, EpochRecord, Record};
use crate::monitor::{self, Diagnostics};
use crate::signal::stop_requested;
use crate::summary::Summary;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// Appends records to `metrics.jsonl`, one flushed line each; on ranks other than 0, nothing.
struct MetricsLog {
    file: Option<fs::File>,
    path: PathBuf,
}

impl MetricsLog {
    fn open(run_dir: &Path, main: bool) -> Result<MetricsLog> {
        let path = run_dir.join("metrics.jsonl");
        let file = main
            .then(|| {
                fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(io_err(&path))
            })
            .transpose()?;
        Ok(MetricsLog { file, path })
    }

    fn write(&mut self, record: Record) -> Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        writeln!(file, "{}", record.to_line()).map_err(io_err(&self.path))?;
        file.flush().map_err(io_err(&self.path))
    }
}

/// What an epoch's steps add up to (the online probe, the loss, the last projections).
#[derive(Default)]
struct EpochTally {
    correct: i64,
    total: i64,
    loss_sum: f64,
    loss_n: u64,
    last_z: Option<(Tensor, Tensor)>,
}

/// Views and seconds: the window of the last step record, the invocation's training time, and
/// the timed steps of the summary (the first step of an invocation is warm-up, left out).
struct Clock {
    start: Instant,
    elapsed_before: f64,
    last_checkpoint: Instant,
    window_start: Instant,
    window_views: usize,
    total_views: usize,
    train_s: f64,
    timed_views: usize,
    timed_step_s: f64,
    timed_e2e_s: f64,
    /// When the previous step ended (end-to-end time includes the wait for the loader).
    mark: Instant,
    /// Seconds in collectives before this invocation's steps (the start's broadcasts).
    communicating_before: f64,
}

impl Clock {
    fn new(elapsed_before: f64) -> Clock {
        let now = Instant::now();
        Clock {
            start: now,
            elapsed_before,
            last_checkpoint: now,
            window_start: now,
            window_views: 0,
            total_views: 0,
            train_s: 0.0,
            timed_views: 0,
            timed_step_s: 0.0,
            timed_e2e_s: 0.0,
            mark: now,
            communicating_before: crate::distributed::communicating_s(),
        }
    }

    fn step(&mut self, views: usize, step_s: f64, timed: bool) {
        self.train_s += step_s;
        if timed {
            self.timed_views += views;
            self.timed_step_s += step_s;
            self.timed_e2e_s += self.mark.elapsed().as_secs_f64();
        }
        self.window_views += views;
        self.total_views += views;
        self.mark = Instant::now();
    }

    /// Views per second since the last step record; starts the next window.
    fn window_rate(&mut self) -> f64 {
        let vps = self.window_views as f64 / self.window_start.elapsed().as_secs_f64().max(1e-9);
        self.window_views = 0;
        self.window_start = Instant::now();
        vps
    }

    fn training_rate(&self) -> f64 {
        self.total_views as f64 / self.train_s.max(1e-9)
    }

    /// The run's training seconds, earlier invocations included.
    fn elapsed_s(&self) -> f64 {
        self.elapsed_before + self.start.elapsed().as_secs_f64()
    }
}

impl Trainer {
    /// An epoch record with its monitors: the k-NN monitor when `knn_due`, the online probe's
    /// accuracy over the epoch's rows, and the geometry of the last projections.
    fn epoch_record(
        &self,
        mut record: EpochRecord,
        knn_due: bool,
        tally: &EpochTally,
        summary: &mut Summary,
    ) -> Result<EpochRecord> {
        if knn_due {
            if let Some(acc) = self.knn_top1()? {
                record.knn_top1 = Some(acc);
                summary.knn_top1 = Some(acc);
            }
            if tally.total > 0 {
                record.online_val_top1 = self.online_val_top1()?;
                summary.online_val_top1 = record.online_val_top1;
            }
        }
        if tally.total > 0 {
            let online = tally.correct as f64 / tally.total as f64;
            record.online_top1 = Some(online);
            summary.online_top1 = Some(online);
        }
        if let Some((z1, z2)) = &tally.last_z {
            let d: Diagnostics = monitor::diagnostics(z1, z2);
            record.alignment = Some(d.alignment);
            record.uniformity = Some(d.uniformity);
            record.effective_rank = Some(d.effective_rank);
        }
        Ok(record)
    }

    /// The epoch record of the epoch in progress (`partial`: the run ends inside it).
    fn close_epoch(
        &self,
        tally: &EpochTally,
        clock: &Clock,
        partial: bool,
        summary: &mut Summary,
    ) -> Result<Record> {
        let epoch = self.state.epoch + 1;
        let knn_due = partial
            || (self.config.monitor.knn_every > 0
                && epoch.is_multiple_of(self.config.monitor.knn_every))
            || self.state.step >= self.stop_step;
        Ok(Record::Epoch(self.epoch_record(
            EpochRecord {
                step: self.state.step,
                epoch,
                partial_epoch: partial,
                loss: tally.loss_sum / tally.loss_n.max(1) as f64,
                lr: self.schedule.lr(self.state.step),
                views_per_s: clock.training_rate(),
                ..Default::default()
            },
            knn_due,
            tally,
            summary,
        )?))
    }

    fn progress_bar(&self) -> ProgressBar {
        let target = if self.options.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(self.stop_step), target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps, ETA {eta} {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(self.state.step);
        bar
    }

    /// A checkpoint when one is due (steps, minutes, or an interrupt asking to stop).
    fn checkpoint_if_due(&mut self, clock: &mut Clock) -> Result<()> {
        if self.is_main() && checkpoint_due(&self.config, self.state.step, clock.last_checkpoint) {
            self.state.elapsed_s = clock.elapsed_s();
            self.save_checkpoint()?;
            clock.last_checkpoint = Instant::now();
        }
        Ok(())
    }

    /// The summary this invocation starts from: a fresh run's, with the k-NN monitor at
    /// initialisation, or a resumed run's, carrying over its first loss and monitors so far.
    fn start_summary(&mut self, log: &mut MetricsLog, bar: &ProgressBar) -> Result<Summary> {
        let mut summary = Summary::at_start(&self.run_dir, &self.state, &self.last_checkpoint);
        if self.state.step > 0 {
            if self.is_main() {
                summary.carry_over(&read_records(&log.path)?);
            }
        } else if self.monitors.is_some() {
            bar.set_message("k-NN monitor at initialisation");
            let acc = self.knn_top1()?;
            summary.knn_top1_init = acc;
            summary.knn_top1 = acc;
            log.write(Record::Init {
                step: 0,
                epoch: 0,
                lr: self.schedule.lr(0),
                knn_top1: acc,
            })?;
        }
        Ok(summary)
    }

    /// Trains until the stop step, an interrupt or an error. Writes metrics, checkpoints, the
    /// report and the loss plot.
    pub fn run(&mut self) -> Result<Summary> {
        let mut log = MetricsLog::open(&self.run_dir, self.is_main())?;
        let mut clock = Clock::new(self.state.elapsed_s);
        let spe = self.steps_per_epoch();
        let bar = self.progress_bar();
        let mut summary = self.start_summary(&mut log, &bar)?;
        let mut tally = EpochTally::default();
        // Every rank stops at the same step: the flag comes from all of them (train_step).
        let mut stopping = false;
        'outer: while self.state.step < self.stop_step {
            let epoch = self.state.epoch;
            let batches = self
                .loader
                .epoch_from(epoch, self.state.batch_in_epoch as usize);
            for batch in batches {
                if self.state.step >= self.stop_step {
                    break 'outer;
                }
                let batch = batch.map_err(|e| TrainError::Data(e.to_string()))?;
                let t0 = Instant::now();
                let lr = self.schedule.lr(self.state.step);
                let step: StepOutcome = self.train_step(&batch, lr)?;
                let loss = step.loss;
                stopping = step.stop;
                if !loss.is_finite() {
                    bar.abandon();
                    return Err(TrainError::NonFiniteLoss {
                        step: self.state.step + 1,
                        epoch,
                        value: loss,
                        checkpoint: self.last_checkpoint.clone(),
                    });
                }
                let timed = !summary.losses.is_empty();
                // Training views of the global batch: the pair on every rank (the online
                // probe's view is not counted).
                let world = self.dist.as_ref().map_or(1, Distributed::world);
                clock.step(
                    2 * batch.images() * world,
                    t0.elapsed().as_secs_f64(),
                    timed,
                );
                self.state.step += 1;
                self.state.batch_in_epoch += 1;
                self.state.last_loss = loss;
                summary.losses.push(loss);
                summary.first_loss.get_or_insert(loss);
                tally.correct += step.correct;
                tally.total += step.total;
                tally.loss_sum += loss;
                tally.loss_n += 1;
                tally.last_z = Some((step.z1, step.z2));
                bar.set_position(self.state.step);
                // Step 1 too: the run's first loss stays on record for resumed summaries.
                if self
                    .state
                    .step
                    .is_multiple_of(self.config.monitor.log_every)
                    || self.state.step == 1
                    || self.state.step == self.stop_step
                {
                    let views_per_s = clock.window_rate();
                    bar.set_message(format!("loss {loss:.4}, {views_per_s:.0} views/s"));
                    log.write(Record::Step {
                        step: self.state.step,
                        epoch,
                        loss,
                        lr,
                        views_per_s,
                    })?;
                }
                if self.state.batch_in_epoch >= spe {
                    // The epoch's last step: its checkpoint comes after the epoch line, so that
                    // a resume starts the next epoch instead of closing this one twice.
                    break;
                }
                self.checkpoint_if_due(&mut clock)?;
                if stopping {
                    summary.interrupted = true;
                    break 'outer;
                }
            }
            if self.state.batch_in_epoch >= spe {
                // End of an epoch: monitors, then the epoch line.
                self.tally_over_ranks(&mut tally)?;
                log.write(self.close_epoch(&tally, &clock, false, &mut summary)?)?;
                clock.mark = Instant::now();
                tally = EpochTally {
                    last_z: tally.last_z.take(),
                    ..Default::default()
                };
                self.state.epoch += 1;
                self.state.batch_in_epoch = 0;
                self.checkpoint_if_due(&mut clock)?;
                if stopping {
                    summary.interrupted = true;
                    break 'outer;
                }
            }
        }
        // The run ended inside an epoch: one last monitor line for it.
        if !summary.interrupted
            && self.state.batch_in_epoch > 0
            && self.state.step >= self.stop_step
        {
            self.tally_over_ranks(&mut tally)?;
            log.write(self.close_epoch(&tally, &clock, true, &mut summary)?)?;
        }
        self.state.elapsed_s = clock.elapsed_s();
        if self.is_main() && self.last_checkpoint_step != Some(self.state.step) {
            self.save_checkpoint()?;
        }
        bar.finish_and_clear();
        summary.steps = self.state.step;
        summary.epochs_completed = self.state.epoch;
        summary.final_loss = self.state.last_loss;
        summary.views_per_s = clock.timed_views as f64 / clock.timed_step_s.max(1e-9);
        summary.views_per_s_end_to_end = clock.timed_views as f64 / clock.timed_e2e_s.max(1e-9);
        summary.wall_s = clock.start.elapsed().as_secs_f64();
        summary.communicating_share = (crate::distributed::communicating_s()
            - clock.communicating_before)
            / clock.train_s.max(1e-9);
        summary.checkpoint = self.last_checkpoint.clone();
        if self.is_main() {
            crate::report::write_outputs(&self.run_dir, &self.config, &summary)?;
        }
        Ok(summary)
    }

    /// Rank 0, or the only process: the one that writes the run folder.
    pub fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(Distributed::is_main)
    }

    /// The online probe's counts of the epoch over every rank.
    fn tally_over_ranks(&self, tally: &mut EpochTally) -> Result<()> {
        if let Some(d) = &self.dist {
            let sums = d.sum(&[tally.correct as f64, tally.total as f64])?;
            (tally.correct, tally.total) = (sums[0] as i64, sums[1] as i64);
        }
        Ok(())
    }
}

/// Whether a checkpoint is due after `step`: every `checkpoint_every` steps, every
/// `checkpoint_minutes`, or now because SIGINT/SIGTERM asked to stop.
fn checkpoint_due(config: &TrainConfig, step: u64, last: Instant) -> bool {
    let due_steps = config.checkpoint.checkpoint_every > 0
        && step.is_multiple_of(config.checkpoint.checkpoint_every);
    let due_time = config.checkpoint.checkpoint_minutes > 0.0
        && last.elapsed().as_secs_f64() >= 60.0 * config.checkpoint.checkpoint_minutes;
    due_steps || due_time || stop_requested()
}
