//! patronictl's `-W` and `-w/--watch SECONDS` (`list`, `topology`, `query`): print,
//! then print again every interval until Ctrl-C, clearing a terminal screen first, as
//! patronictl's `watching`.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// The watch flags.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct Refresh {
    /// Print again every 2 seconds (until Ctrl-C).
    #[arg(short = 'W')]
    pub every_two_seconds: bool,
    /// Print again every SECONDS seconds (until Ctrl-C).
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    pub seconds: Option<f64>,
}

impl Refresh {
    /// How long to wait between two prints; None: print once.
    pub fn interval(&self) -> anyhow::Result<Option<Duration>> {
        match (self.seconds, self.every_two_seconds) {
            (Some(s), _) => Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .map(Some)
                .with_context(|| format!("--watch {s}: give a positive number of seconds")),
            (None, true) => Ok(Some(Duration::from_secs(2))),
            (None, false) => Ok(None),
        }
    }

    /// Runs `once` and prints what it returns; with `-W`/`-w`, again every interval,
    /// clearing a terminal screen first (as patronictl's `watching`).
    pub async fn repeat<F, Fut>(&self, mut once: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<String>>,
    {
        use std::io::IsTerminal;
        let interval = self.interval()?;
        let clear = interval.is_some() && std::io::stdout().is_terminal();
        loop {
            let screen = once().await?;
            if clear {
                print!("\x1b[2J\x1b[H");
            }
            print!("{screen}");
            match interval {
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_as_patronictl() {
        assert_eq!(Refresh::default().interval().expect("once"), None);
        assert_eq!(Refresh { every_two_seconds: true, seconds: None }.interval().expect("-W"), Some(Duration::from_secs(2)));
        assert_eq!(Refresh { every_two_seconds: true, seconds: Some(0.5) }.interval().expect("-w wins"), Some(Duration::from_millis(500)));
        for bad in [0.0, -1.0, f64::NAN] {
            let e = Refresh { every_two_seconds: false, seconds: Some(bad) }.interval().expect_err("not positive").to_string();
            assert!(e.contains("positive number of seconds"), "{e}");
        }
    }
}
