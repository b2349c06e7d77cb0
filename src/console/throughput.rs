//! Actions finished per second, over the last minutes, as the engine counts them.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders, Sparkline};

use super::app::App;

pub const HEIGHT: u16 = 6;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let width = area.width.saturating_sub(2) as usize;
    let seconds = &app.counts.throughput;
    let data: Vec<u64> = seconds
        .iter()
        .skip(seconds.len().saturating_sub(width))
        .copied()
        .collect();
    let last = data.last().copied().unwrap_or(0);
    let average = if data.is_empty() {
        0.0
    } else {
        data.iter().sum::<u64>() as f64 / data.len() as f64
    };
    let title = format!(" actions/s {last} · avg {average:.1} ");
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(app.theme.border())
        .title(title);
    frame.render_widget(
        Sparkline::default()
            .data(&data)
            .style(app.theme.spark())
            .block(block),
        area,
    );
}
