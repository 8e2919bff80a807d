//! `spikewatch tail`: placeholder replaced below.
#[derive(Debug, clap::Args)]
pub struct TailArgs {}
pub fn run(_args: &TailArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
