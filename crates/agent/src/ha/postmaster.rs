//! Waking the HA loop the moment the postmaster it last saw dies, so a crashed primary
//! is restarted (or a replica's death published) at once rather than at the next
//! `loop_wait`. The loop tells this task which postmaster it saw at every cycle; the
//! task waits on that process's pidfd ([`crate::pidfd`]) and wakes the loop when it
//! exits ([`Postgres::postmaster_exit`]). Nothing runs in between: no file is read and
//! no timer fires while the postmaster lives (only where pidfds are unavailable is
//! `postmaster.pid` polled).
//!
//! A postmaster that appears without the agent starting it (an operator's `pg_ctl
//! start`) is seen at the loop's next cycle, within `loop_wait`.

use tokio::sync::{mpsc, watch};

use crate::postgres::Postgres;

/// Runs until the loop's end of `seen` or of `wake` closes.
pub(super) async fn watch(pg: Postgres, mut seen: watch::Receiver<Option<i32>>, wake: mpsc::Sender<()>) {
    loop {
        let pid = *seen.borrow_and_update();
        let ended = async {
            match pid {
                Some(pid) => pg.postmaster_exit(pid).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = seen.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = ended => {
                if wake.send(()).await.is_err() {
                    return;
                }
                // Asleep until the loop has looked and saw another postmaster (or none).
                if seen.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::tests::postgres_of as postgres;
    use std::process::Command;
    use std::time::Duration;

    #[tokio::test]
    async fn wakes_the_loop_when_the_postmaster_it_saw_dies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pg = postgres(dir.path());
        let mut postmaster = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = i32::try_from(postmaster.id()).expect("pid");
        std::fs::write(dir.path().join("postmaster.pid"), format!("{pid}\n{}\n", dir.path().display())).expect("pid file");
        let (seen_tx, seen) = watch::channel(pg.postmaster_pid());
        assert_eq!(*seen.borrow(), Some(pid));
        let (wake_tx, mut wake) = mpsc::channel(1);
        let task = tokio::spawn(watch(pg, seen, wake_tx));
        assert!(tokio::time::timeout(Duration::from_millis(300), wake.recv()).await.is_err(), "no wake while it runs");
        postmaster.kill().expect("kill");
        tokio::time::timeout(Duration::from_secs(2), wake.recv()).await.expect("woken within 2 s").expect("a wake");
        postmaster.wait().expect("wait");
        seen_tx.send_replace(None);
        assert!(tokio::time::timeout(Duration::from_millis(300), wake.recv()).await.is_err(), "no postmaster: no wake");
        drop(seen_tx);
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("ends with the loop").expect("no panic");
    }
}
