//! `kinfonce data ...` (being written).

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Download a data set (being written).
    Fetch,
}

pub fn run(_cmd: DataCommand) -> anyhow::Result<()> {
    anyhow::bail!("data fetch is being written")
}
