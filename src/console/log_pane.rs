//! The log: tracing events (snapstorm's and the backend's), filterable by level.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::widgets::{Block, Borders};
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerWidget, TuiWidgetState};

use super::app::App;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.theme;
    let state = TuiWidgetState::new().set_default_display_level(app.log_level);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(format!(
            " log ≥ {} (l: level) ",
            app.log_level.as_str().to_lowercase()
        ));
    let widget = TuiLoggerWidget::default()
        .block(block)
        .state(&state)
        .output_separator(' ')
        .output_timestamp(Some("%H:%M:%S".to_owned()))
        .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
        .output_target(false)
        .output_file(false)
        .output_line(false)
        .style_error(theme.failure())
        .style_warn(theme.error())
        .style_info(theme.ok())
        .style_debug(theme.dim())
        .style_trace(theme.dim());
    frame.render_widget(widget, area);
}
