//! The run folder on disk: its creation, the checkpoints, and resuming from the newest one.

use super::Trainer;
use crate::checkpoint;
use crate::error::{io_err, Result, TrainError};
use crate::metrics::Record;
use kinfonce_data::Dataset;
use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use tch::{nn, Tensor};

impl Trainer {
    pub(super) fn create_run_dir(&self, train: &Dataset) -> Result<()> {
        let dir = &self.run_dir;
        if dir.join("config.toml").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run; continue it with --resume {0} or choose another --out",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut provenance = toml::Table::new();
        for (k, v) in &self.options.provenance {
            provenance.insert(k.clone(), toml::Value::String(v.clone()));
        }
        provenance.insert(
            "train_fingerprint".into(),
            toml::Value::String(train.fingerprint()),
        );
        provenance.insert(
            "train_images".into(),
            toml::Value::Integer(train.len() as i64),
        );
        provenance.insert(
            "steps_per_epoch".into(),
            toml::Value::Integer(self.steps_per_epoch() as i64),
        );
        provenance.insert("tch".into(), toml::Value::String(crate::TCH_VERSION.into()));
        provenance.insert(
            "threads".into(),
            toml::Value::Integer(tch::get_num_threads() as i64),
        );
        provenance.insert(
            "device".into(),
            toml::Value::String(format!("{:?}", self.device)),
        );
        let mut doc = toml::Table::new();
        doc.insert(
            "config".into(),
            toml::Value::try_from(&self.config).map_err(|e| TrainError::Config(e.to_string()))?,
        );
        doc.insert("provenance".into(), toml::Value::Table(provenance));
        let text = format!(
            "# kinfonce pretrain: the resolved configuration ([config]) and where it ran.\n{}",
            toml::to_string(&doc).map_err(|e| TrainError::Config(e.to_string()))?
        );
        let path = dir.join("config.toml");
        fs::write(&path, text).map_err(io_err(&path))?;
        let p = dir.join("metrics.jsonl");
        fs::write(&p, "").map_err(io_err(&p))?;
        Ok(())
    }

    fn named(vs: &nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("{prefix}{n}"), t))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn encoder_tensors(&self) -> Vec<(String, Tensor)> {
        Self::named(&self.model_vs, "")
            .into_iter()
            .filter(|(n, _)| !n.starts_with("projection."))
            .collect()
    }

    fn head_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = Self::named(&self.model_vs, "")
            .into_iter()
            .filter(|(n, _)| n.starts_with("projection."))
            .collect();
        v.extend(Self::named(&self.probe_vs, ""));
        if let Some(moco) = &self.moco {
            v.extend(moco.tensors());
        }
        v
    }

    fn optimizer_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> = self
            .opt
            .state_tensors()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .collect();
        v.extend(
            self.probe_opt
                .state_tensors()
                .into_iter()
                .map(|(n, t)| (format!("probe.{n}"), t)),
        );
        v
    }

    /// Writes a checkpoint of the current state.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        self.state.optimizer_step = self.opt.step;
        self.state.probe_optimizer_step = self.probe_opt.step;
        let path = checkpoint::save(
            &self.run_dir.join("checkpoints"),
            &self.encoder_tensors(),
            &self.head_tensors(),
            &self.optimizer_tensors(),
            &self.state,
            self.config.checkpoint.keep_checkpoints,
        )?;
        self.last_checkpoint = Some(path.clone());
        self.last_checkpoint_step = Some(self.state.step);
        Ok(path)
    }

    /// In a data-parallel job, gives every rank rank 0's networks (MoCo's momentum networks and
    /// queue too), optimiser state and training state (fresh or restored from the newest
    /// checkpoint, which only rank 0 reads).
    pub(super) fn start_from_main(&mut self) -> Result<()> {
        let Some(dist) = self.dist.clone() else {
            return Ok(());
        };
        self.state.optimizer_step = self.opt.step;
        self.state.probe_optimizer_step = self.probe_opt.step;
        let mut tensors: Vec<Tensor> = [&self.model_vs, &self.probe_vs]
            .into_iter()
            .flat_map(|vs| {
                let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
                named.sort_by(|a, b| a.0.cmp(&b.0));
                named.into_iter().map(|(_, t)| t)
            })
            .collect();
        if let Some(moco) = &self.moco {
            tensors.extend(moco.tensors().into_iter().map(|(_, t)| t));
        }
        tensors.extend(self.opt.state_slots());
        tensors.extend(self.probe_opt.state_slots());
        dist.broadcast_from_main(&tensors)?;
        let state = serde_json::to_vec(&self.state).expect("the training state serialises");
        let state = dist
            .group
            .broadcast_bytes(&state, 0)
            .map_err(crate::distributed::dist_err)?;
        self.state = serde_json::from_slice(&state)
            .map_err(|e| TrainError::Distributed(format!("rank 0's training state: {e}")))?;
        self.opt.step = self.state.optimizer_step;
        self.probe_opt.step = self.state.probe_optimizer_step;
        Ok(())
    }

    pub(super) fn restore(&mut self) -> Result<()> {
        let dir = self.run_dir.join("checkpoints");
        let Some(path) = checkpoint::latest(&dir)? else {
            return Err(TrainError::Checkpoint {
                path: dir,
                message: "no complete checkpoint to resume from".into(),
            });
        };
        let ck = checkpoint::load(&path)?;
        checkpoint::copy_into(
            &self.encoder_tensors(),
            &ck.encoder,
            &path.join("encoder.safetensors"),
        )?;
        checkpoint::copy_into(
            &self.head_tensors(),
            &ck.head,
            &path.join("head.safetensors"),
        )?;
        let split = |prefix: &str| -> HashMap<String, Tensor> {
            ck.optimizer
                .iter()
                .filter_map(|(n, t)| {
                    n.strip_prefix(prefix)
                        .map(|s| (s.to_string(), t.shallow_clone()))
                })
                .collect()
        };
        let bad = |message: String| TrainError::Checkpoint {
            path: path.join("optimizer.safetensors"),
            message,
        };
        self.opt
            .load_state(&split("model."), ck.state.optimizer_step)
            .map_err(bad)?;
        self.probe_opt
            .load_state(&split("probe."), ck.state.probe_optimizer_step)
            .map_err(|m| TrainError::Checkpoint {
                path: path.join("optimizer.safetensors"),
                message: m,
            })?;
        self.state = ck.state;
        self.last_checkpoint = Some(path);
        self.last_checkpoint_step = Some(self.state.step);
        // Lines written after the checkpoint belong to steps that will run again.
        let metrics = self.run_dir.join("metrics.jsonl");
        if let Ok(text) = fs::read_to_string(&metrics) {
            let step = self.state.step;
            let kept: Vec<&str> = text
                .lines()
                .filter(|l| Record::from_line(l).is_ok_and(|r| r.step() <= step))
                .collect();
            let mut out = kept.join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            fs::write(&metrics, out).map_err(io_err(&metrics))?;
        }
        Ok(())
    }
}
