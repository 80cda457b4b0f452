//! `kinfonce theory ...` (being written).

#[derive(clap::Args)]
pub struct TheoryArgs {}

pub fn run(_args: TheoryArgs) -> anyhow::Result<()> {
    anyhow::bail!("the theory lab is being written")
}
