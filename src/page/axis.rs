//! The page's time axis, shared by every picture: the runs of the state dir
//! end to end, in milliseconds, mapped onto pixels.

/// Width of every picture's plotting area, in pixels.
pub const PLOT_WIDTH: u32 = 1200;
/// Room left of the plotting area for the lanes' names.
pub const LEFT: u32 = 70;
/// Width of the charts, their axes' labels included: the widest picture.
pub const CHART_WIDTH: u32 = PLOT_WIDTH + 100;

/// Milliseconds on the axis to pixels.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    total_ms: u64,
}

impl Axis {
    pub fn new(total_ms: u64) -> Self {
        Axis {
            total_ms: total_ms.max(1),
        }
    }

    pub fn total_ms(&self) -> u64 {
        self.total_ms
    }

    /// The x of `ms`, from the picture's left edge.
    pub fn x(&self, ms: u64) -> f64 {
        f64::from(LEFT)
            + ms.min(self.total_ms) as f64 * f64::from(PLOT_WIDTH) / self.total_ms as f64
    }

    /// Ticks at a round step, about ten of them, as (ms, label).
    pub fn ticks(&self) -> Vec<(u64, String)> {
        let step = round_step(self.total_ms / 10);
        (0..=self.total_ms / step)
            .map(|n| (n * step, clock(n * step)))
            .collect()
    }
}

/// The round step (1 s, 2 s, 5 s, 10 s, 30 s, 1 min, …) nearest above `ms`.
pub fn round_step(ms: u64) -> u64 {
    const STEPS: [u64; 16] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 900_000, 1_800_000, 3_600_000,
    ];
    STEPS
        .into_iter()
        .find(|&step| step >= ms)
        .unwrap_or(3_600_000 * ms.div_ceil(3_600_000))
}

/// `ms` as a clock reading: `12.3s`, `4m05s`, `1h02m`.
pub fn clock(ms: u64) -> String {
    let seconds = ms / 1000;
    if seconds < 60 {
        if ms.is_multiple_of(1000) {
            format!("{seconds}s")
        } else {
            format!("{:.1}s", ms as f64 / 1000.0)
        }
    } else if seconds < 3600 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{}h{:02}m", seconds / 3600, seconds / 60 % 60)
    }
}

/// A duration for people: `340 ms`, `2.41 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_axis() {
        let axis = Axis::new(30 * 60 * 1000);
        let ticks = axis.ticks();
        assert_eq!(ticks[1], (300_000, "5m00s".into()));
        assert_eq!(ticks.last().unwrap().0, 30 * 60 * 1000);
        assert_eq!(Axis::new(8_000).ticks()[1], (1_000, "1s".into()));
    }

    #[test]
    fn the_axis_maps_its_ends_to_the_plot_edges() {
        let axis = Axis::new(8_000);
        assert_eq!(axis.x(0), f64::from(LEFT));
        assert_eq!(axis.x(8_000), f64::from(LEFT + PLOT_WIDTH));
        assert_eq!(axis.x(99_000), f64::from(LEFT + PLOT_WIDTH));
    }
}
