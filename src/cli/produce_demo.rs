//! `spikewatch produce-demo`: placeholder replaced below.
#[derive(Debug, clap::Args)]
pub struct ProduceDemoArgs {}
pub fn run(_args: &ProduceDemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
