//! `spikewatch demo` (in progress).

use super::DemoArgs;

pub fn run(_args: &DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("demo: not implemented yet")
}
