//! Polling a workshop until it reaches a state, with a seat progress bar (start) or a spinner
//! (stop) on stderr. Bars are hidden for `--json` and when stderr is not a terminal.

use std::time::Duration;

use anyhow::anyhow;
use clarateach_core::Workshop;
use indicatif::{ProgressBar, ProgressStyle};

use super::Ctx;

const POLL: Duration = Duration::from_millis(300);

/// What a poll decided.
pub enum Step {
    Done,
    Continue,
    Fail(String),
}

/// A progress display for waiting on one workshop.
pub struct Waiter {
    bar: ProgressBar,
    seats: bool,
}

impl Waiter {
    /// A bar counting ready seats out of `total`.
    pub fn seats(ctx: &Ctx, total: u32, message: String) -> Self {
        let bar = if ctx.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(u64::from(total))
        };
        let style = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} seats ready ({elapsed})",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, seats: true }
    }

    /// A spinner with a message.
    pub fn spinner(ctx: &Ctx, message: String) -> Self {
        let bar = if ctx.json {
            ProgressBar::hidden()
        } else {
            ProgressBar::new_spinner()
        };
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, seats: false }
    }

    /// Polls the workshop until `step` says done (returns it) or fail, or `timeout` passes.
    pub async fn until(
        self,
        ctx: &Ctx,
        id: &str,
        timeout: Duration,
        step: impl Fn(&Workshop) -> Step,
    ) -> anyhow::Result<Workshop> {
        let deadline = tokio::time::Instant::now() + timeout;
        let result = loop {
            let w = match ctx.client.get_workshop(id).await {
                Ok(w) => w,
                Err(e) => break Err(e.into()),
            };
            if self.seats {
                self.bar.set_position(u64::from(w.seats_ready));
            }
            match step(&w) {
                Step::Done => break Ok(w),
                Step::Fail(why) => break Err(anyhow!(why)),
                Step::Continue => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break Err(anyhow!(
                    "workshop {id} is still {} after {} s ({} of {} seats ready); it goes on in the background, \
                     follow it with `clarateach workshop info {id}`",
                    w.status.as_str(),
                    timeout.as_secs(),
                    w.seats_ready,
                    w.seats
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        self.bar.finish_and_clear();
        result
    }
}
