//! `kinfonce pretrain` (being written).

#[derive(clap::Args)]
pub struct PretrainArgs {}

pub fn run(_args: PretrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("pretraining is being written")
}
