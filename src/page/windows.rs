//! Time windows for the figures over time (latency quantiles, rates): about
//! sixty windows of a round length across the axis, so a 10-second run and
//! a 30-minute soak both read at a glance.

use super::axis::round_step;

/// How many windows the axis is cut into, about.
const WINDOWS: u64 = 60;

#[derive(Debug, Clone, Copy)]
pub struct Windows {
    pub width_ms: u64,
    pub count: usize,
}

impl Windows {
    pub fn over(total_ms: u64) -> Self {
        let width_ms = round_step(total_ms.div_ceil(WINDOWS)).max(1);
        Windows {
            width_ms,
            count: total_ms.div_ceil(width_ms).max(1) as usize,
        }
    }

    /// The window `ms` falls in.
    pub fn index(&self, ms: u64) -> usize {
        ((ms / self.width_ms) as usize).min(self.count - 1)
    }

    /// A window's middle, in seconds on the axis.
    pub fn middle_s(&self, index: usize) -> f64 {
        (index as f64 + 0.5) * self.width_ms as f64 / 1000.0
    }

    pub fn width_s(&self) -> f64 {
        self.width_ms as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_soak_is_cut_into_round_windows() {
        let windows = Windows::over(30 * 60 * 1000);
        assert_eq!(windows.width_ms, 30_000);
        assert_eq!(windows.count, 60);
        assert_eq!(windows.index(30 * 60 * 1000), 59);
        let short = Windows::over(8_000);
        assert_eq!(short.width_ms, 200);
        assert_eq!(short.count, 40);
    }
}
