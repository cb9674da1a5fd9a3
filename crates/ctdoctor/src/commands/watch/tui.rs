//! The full-screen view of `watch`: an [`App`] holding the snapshot
//! history and the viewer's choices (view, sort, pause, filter being
//! typed), its key handling, and its drawing onto a ratatui [`Frame`].
//! Pure: no terminal I/O here, so screens are tested on `TestBackend`.

use crate::output::thousands;
use std::collections::{HashMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Sparkline, Table, Tabs};

use ctcore::watch::{Rank, Snapshot};

/// Snapshots kept for the sparkline and the window ranking.
const HISTORY: usize = 600;
/// Intervals a status message stays.
const MESSAGE_INTERVALS: u32 = 5;
/// Seconds the "window" sort averages over.
pub const WINDOW_S: f64 = 60.0;
/// Rows each snapshot keeps per ranking in the TUI (the window ranking
/// sums them; a key outside an interval's top rows adds nothing then).
pub const TUI_RANK_ROWS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Overview,
    Rankings,
    States,
}

impl View {
    const ALL: [View; 3] = [View::Overview, View::Rankings, View::States];
    fn title(self) -> &'static str {
        match self {
            View::Overview => "1 Overview",
            View::Rankings => "2 Sources/Destinations/Ports",
            View::States => "3 States",
        }
    }
}

/// How the rankings are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// New entries per second in the last interval: who creates flows now.
    Interval,
    /// New entries per second averaged over the last 60 s: who sustains it.
    Window,
}

/// What a key asks the caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Watch these filter clauses (possibly none) from now on.
    Filter(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct App {
    pub history: VecDeque<Snapshot>,
    pub view: View,
    pub sort: Sort,
    pub paused: bool,
    /// The filter being typed after `/`.
    pub input: Option<String>,
    /// One-line message for the status line (an invalid filter, ...),
    /// shown until a few intervals have passed.
    pub message: Option<String>,
    message_left: u32,
    /// Rows per ranking.
    pub top: usize,
    /// The namespace watched, for the title.
    pub netns: Option<String>,
    /// The resync count seen last and when it last changed (snapshot time).
    resyncs_seen: u64,
    last_resync_at: Option<String>,
    /// The sources ranking's grouping (`--by`).
    pub by: super::By,
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.1}"))
}

impl App {
    pub fn new(top: usize, netns: Option<String>) -> Self {
        Self {
            history: VecDeque::new(),
            view: View::Overview,
            sort: Sort::Interval,
            paused: false,
            input: None,
            message: None,
            message_left: 0,
            top,
            netns,
            resyncs_seen: 0,
            last_resync_at: None,
            by: super::By::Src,
        }
    }

    /// A new interval; ignored while paused (the screen stays as it was).
    pub fn push(&mut self, s: Snapshot) {
        if self.message.is_some() {
            self.message_left = self.message_left.saturating_sub(1);
            if self.message_left == 0 {
                self.message = None;
            }
        }
        if self.paused {
            return;
        }
        if s.events.resyncs != self.resyncs_seen {
            self.resyncs_seen = s.events.resyncs;
            self.last_resync_at = Some(s.time.clone());
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(s);
    }

    /// Show `m` in the status line for the next few intervals.
    pub fn say(&mut self, m: String) {
        self.message = Some(m);
        self.message_left = MESSAGE_INTERVALS;
    }

    pub fn key(&mut self, k: KeyEvent) -> Action {
        if let Some(input) = &mut self.input {
            match k.code {
                KeyCode::Enter => {
                    let clauses = input.split_whitespace().map(String::from).collect();
                    self.input = None;
                    return Action::Filter(clauses);
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => input.push(c),
                KeyCode::Char('c') => return Action::Quit,
                _ => {}
            }
            return Action::None;
        }
        match k.code {
            KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
            // Raw mode turns Ctrl-C into a key instead of SIGINT.
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                return Action::Quit;
            }
            KeyCode::Char('p') => self.paused = !self.paused,
            KeyCode::Tab => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                self.view = View::ALL[(i + 1) % View::ALL.len()];
            }
            KeyCode::BackTab => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                self.view = View::ALL[(i + View::ALL.len() - 1) % View::ALL.len()];
            }
            KeyCode::Char('1') => self.view = View::Overview,
            KeyCode::Char('2') => self.view = View::Rankings,
            KeyCode::Char('3') => self.view = View::States,
            KeyCode::Char('s') => {
                self.sort = match self.sort {
                    Sort::Interval => Sort::Window,
                    Sort::Window => Sort::Interval,
                }
            }
            KeyCode::Char('/') => {
                let current = self
                    .history
                    .back()
                    .map(|s| s.filter.join(" "))
                    .unwrap_or_default();
                self.input = Some(current);
                self.message = None;
            }
            _ => {}
        }
        Action::None
    }

    /// Rankings by the current sort: the last interval's, or per key the
    /// new entries of the last 60 s over those seconds.
    fn ranking(&self, pick: fn(&Snapshot) -> &Vec<Rank>) -> Vec<Rank> {
        let Some(last) = self.history.back() else {
            return Vec::new();
        };
        if self.sort == Sort::Interval {
            return pick(last).iter().take(self.top).cloned().collect();
        }
        let mut seconds = 0.0;
        let mut sums: HashMap<&str, (f64, Option<&ctcore::workload::Workload>)> = HashMap::new();
        for s in self.history.iter().rev() {
            if seconds >= WINDOW_S {
                break;
            }
            seconds += s.interval_s;
            for r in pick(s) {
                let e = sums.entry(&r.key).or_insert((0.0, r.workload.as_ref()));
                e.0 += r.new_per_s * s.interval_s;
            }
        }
        let total: f64 = sums.values().map(|v| v.0).sum();
        let mut rows: Vec<Rank> = sums
            .into_iter()
            .map(|(k, (n, w))| Rank {
                key: k.to_string(),
                new_per_s: if seconds > 0.0 { n / seconds } else { 0.0 },
                share: if total > 0.0 { n / total } else { 0.0 },
                workload: w.cloned(),
            })
            .collect();
        rows.sort_by(|a, b| {
            b.new_per_s
                .total_cmp(&a.new_per_s)
                .then_with(|| a.key.cmp(&b.key))
        });
        rows.truncate(self.top);
        rows
    }

    pub fn draw(&self, f: &mut Frame) {
        let [tabs, body, status] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(5),
            Constraint::Length(2),
        ])
        .areas(f.area());
        self.draw_tabs(f, tabs);
        match self.history.back() {
            None => f.render_widget(
                Paragraph::new("waiting for the first interval...").block(Block::bordered()),
                body,
            ),
            Some(s) => match self.view {
                View::Overview => self.draw_overview(f, body, s),
                View::Rankings => self.draw_rankings(f, body),
                View::States => draw_states(f, body, s, usize::MAX),
            },
        }
        self.draw_status(f, status);
    }

    fn draw_tabs(&self, f: &mut Frame, area: Rect) {
        let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
        let mut title = "ctdoctor watch".to_string();
        if let Some(ns) = &self.netns {
            title.push_str(&format!(" (netns {ns})"));
        }
        let [left, right] = Layout::horizontal([
            Constraint::Length(title.len() as u16 + 2),
            Constraint::Min(0),
        ])
        .areas(area);
        f.render_widget(
            Paragraph::new(title).style(Style::new().add_modifier(Modifier::BOLD)),
            left,
        );
        f.render_widget(
            Tabs::new(View::ALL.iter().map(|v| v.title()))
                .select(i)
                .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
            right,
        );
    }

    fn draw_overview(&self, f: &mut Frame, area: Rect, s: &Snapshot) {
        let [gauge, spark, rates, lower] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Min(3),
        ])
        .areas(area);
        let label = match (s.max, s.fill) {
            (Some(max), Some(fill)) => format!(
                "{:.1}% ({} / {})",
                fill * 100.0,
                thousands(s.count),
                thousands(max)
            ),
            _ => format!("{} entries (no max)", thousands(s.count)),
        };
        let fill = s.fill.unwrap_or(0.0).clamp(0.0, 1.0);
        let color = if fill >= 0.9 {
            Color::Red
        } else if fill >= 0.75 {
            Color::Yellow
        } else {
            Color::Green
        };
        f.render_widget(
            Gauge::default()
                .block(Block::bordered().title("table fill (count / nf_conntrack_max)"))
                .gauge_style(Style::new().fg(color))
                .ratio(fill)
                .label(label),
            gauge,
        );
        let width = usize::from(spark.width.saturating_sub(2));
        let counts: Vec<u64> = self
            .history
            .iter()
            .rev()
            .take(width)
            .rev()
            .map(|s| s.count)
            .collect();
        f.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!(
                    "count, last {} intervals (max {})",
                    counts.len(),
                    thousands(counts.iter().copied().max().unwrap_or(0))
                )))
                .data(&counts),
            spark,
        );
        let line = Line::from(vec![
            Span::styled("new/s ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(rate(s.new_per_s)),
            Span::styled("  destroyed/s ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(rate(s.destroyed_per_s)),
            Span::styled("  drop/s ", Style::new().add_modifier(Modifier::BOLD)),
            Span::styled(
                rate(s.drop_per_s),
                if s.drop_per_s.unwrap_or(0.0) > 0.0 {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new()
                },
            ),
            Span::styled("  early_drop/s ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(rate(s.early_drop_per_s)),
            Span::styled(
                "  insert_failed/s ",
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(rate(s.insert_failed_per_s)),
            Span::styled(
                "  chaintoolong/s ",
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::styled(
                rate(s.chaintoolong_per_s),
                if s.chaintoolong_per_s.unwrap_or(0.0) > 0.0 {
                    Style::new().fg(Color::Red)
                } else {
                    Style::new()
                },
            ),
            Span::styled("  table full ", Style::new().add_modifier(Modifier::BOLD)),
            match s.table_full {
                None => Span::raw("n/a"),
                Some(t) if t.lines == 0 => Span::raw("0"),
                Some(t) => Span::styled(
                    format!("{} (kernel log)", thousands(t.lines)),
                    Style::new().fg(Color::Red),
                ),
            },
        ]);
        f.render_widget(
            Paragraph::new(line).block(Block::bordered().title(match &s.partial {
                None => format!("rates over {:.1} s", s.interval_s),
                Some(why) => format!("rates over {:.1} s: partial ({why})", s.interval_s),
            })),
            rates,
        );
        let [states, src] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(lower);
        draw_states(f, states, s, usize::from(states.height.saturating_sub(3)));
        let (what, pick) = self.by.ranking();
        self.draw_ranking(f, src, what, pick);
    }

    fn draw_rankings(&self, f: &mut Frame, area: Rect) {
        let [a, b, c] = Layout::horizontal([
            Constraint::Ratio(1, 3),
            Constraint::Ratio(1, 3),
            Constraint::Ratio(1, 3),
        ])
        .areas(area);
        let (what, pick) = self.by.ranking();
        self.draw_ranking(f, a, what, pick);
        self.draw_ranking(f, b, "top destinations", |s| &s.top_dst);
        self.draw_ranking(f, c, "top destination ports", |s| &s.top_dport);
    }

    fn draw_ranking(
        &self,
        f: &mut Frame,
        area: Rect,
        what: &str,
        pick: fn(&Snapshot) -> &Vec<Rank>,
    ) {
        let by = match self.sort {
            Sort::Interval => "new/s, last interval",
            Sort::Window => "new/s, last 60 s",
        };
        let events_on = self.history.back().is_some_and(|s| s.events.enabled);
        let block = Block::bordered().title(format!("{what} by {by}"));
        if !events_on {
            f.render_widget(
                Paragraph::new("no events: nf_conntrack_events is 0").block(block),
                area,
            );
            return;
        }
        let rows = self.ranking(pick).into_iter().map(|r| {
            Row::new(vec![
                Cell::from(r.label()),
                Cell::from(format!("{:.1}/s", r.new_per_s)),
                Cell::from(format!("{:.1}%", r.share * 100.0)),
            ])
        });
        f.render_widget(
            Table::new(
                rows,
                [
                    Constraint::Min(15),
                    Constraint::Length(11),
                    Constraint::Length(7),
                ],
            )
            .header(
                Row::new(vec!["key", "new", "share"])
                    .style(Style::new().add_modifier(Modifier::BOLD)),
            )
            .block(block),
            area,
        );
    }

    fn draw_status(&self, f: &mut Frame, area: Rect) {
        let mut first: Vec<Span> = Vec::new();
        if let Some(input) = &self.input {
            first.push(Span::styled(
                format!("filter> {input}_"),
                Style::new().add_modifier(Modifier::BOLD),
            ));
            first.push(Span::raw("  (KEY=VALUE ..., Enter apply, Esc cancel)"));
        } else if let Some(m) = &self.message {
            first.push(Span::styled(m.clone(), Style::new().fg(Color::Red)));
        } else if let Some(s) = self.history.back() {
            if !s.events.enabled {
                first.push(Span::styled(
                    "nf_conntrack_events=0: no events; run `sysctl -w net.netfilter.nf_conntrack_events=1`",
                    Style::new().fg(Color::Red),
                ));
            } else if s.events.lost > 0 || s.events.resyncs > 0 {
                let mut t = format!(
                    "events lost {}x; {} resync dump(s)",
                    s.events.lost, s.events.resyncs
                );
                if let (Some(at), Some(why)) = (&self.last_resync_at, &s.events.last_resync) {
                    t.push_str(&format!(", last at {at}: {why}"));
                }
                let style = if s.events.lost > 0 {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                };
                first.push(Span::styled(t, style));
            } else {
                first.push(Span::raw(format!(
                    "events on (nf_conntrack_events={}), none lost",
                    s.events.setting.map_or("?".to_string(), |v| v.to_string())
                )));
            }
            if !s.filter.is_empty() {
                first.push(Span::raw(format!("  filter: {}", s.filter.join(" "))));
            }
        }
        let mut second = vec![Span::raw("q quit  p pause  tab/1-3 view  s sort  / filter")];
        if self.paused {
            second.push(Span::styled(
                "  PAUSED",
                Style::new().add_modifier(Modifier::REVERSED),
            ));
        }
        if let Some(s) = self.history.back() {
            second.push(Span::raw(format!("  {}", s.time)));
        }
        f.render_widget(
            Paragraph::new(vec![Line::from(first), Line::from(second)])
                .block(Block::new().borders(Borders::NONE)),
            area,
        );
    }
}

/// Live entries per class, largest first, with their share of the live set.
fn draw_states(f: &mut Frame, area: Rect, s: &Snapshot, rows: usize) {
    let total: u64 = s.states.values().sum();
    let mut v: Vec<(&ctmodel::flows::ClassKey, &u64)> = s.states.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let rows = v.into_iter().take(rows).map(|(k, n)| {
        let share = if total > 0 {
            *n as f64 / total as f64
        } else {
            0.0
        };
        Row::new(vec![
            Cell::from(k.to_string()),
            Cell::from(thousands(*n)),
            Cell::from(format!("{:.1}%", share * 100.0)),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Min(16),
                Constraint::Length(11),
                Constraint::Length(7),
            ],
        )
        .header(
            Row::new(vec!["state", "live", "share"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(format!("state mix ({} live)", thousands(total)))),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::KeyEventKind;
    use ctcore::watch::{EventStatus, TableFull};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use std::collections::BTreeMap;

    fn rank(key: &str, new_per_s: f64, share: f64) -> Rank {
        Rank {
            key: key.into(),
            new_per_s,
            share,
            workload: None,
        }
    }

    fn snapshot(count: u64, top_src: Vec<Rank>) -> Snapshot {
        Snapshot {
            time: "2025-06-01T12:00:00Z".into(),
            interval_s: 1.0,
            count,
            max: Some(262_144),
            fill: Some(count as f64 / 262_144.0),
            live: count,
            new_per_s: Some(400.0),
            destroyed_per_s: Some(12.0),
            drop_per_s: Some(0.0),
            early_drop_per_s: Some(0.0),
            insert_failed_per_s: Some(0.0),
            chaintoolong_per_s: Some(0.0),
            clash_resolve_per_s: Some(0.0),
            states: BTreeMap::from([
                (
                    ctmodel::flows::ClassKey::parse("udp/UNREPLIED").expect("class"),
                    count.saturating_sub(100),
                ),
                (
                    ctmodel::flows::ClassKey::parse("tcp/TIME_WAIT").expect("class"),
                    100,
                ),
            ]),
            top_src,
            top_dst: vec![rank("127.0.0.1", 400.0, 1.0)],
            top_dport: vec![rank("udp/5353", 400.0, 1.0)],
            top_container: Vec::new(),
            top_pod: Vec::new(),
            events: EventStatus {
                setting: Some(2),
                enabled: true,
                ..EventStatus::default()
            },
            partial: None,
            table_full: Some(TableFull::default()),
            filter: Vec::new(),
        }
    }

    fn busy() -> Snapshot {
        snapshot(
            65_536,
            vec![
                rank("127.0.0.2", 350.0, 0.875),
                rank("127.0.0.3", 50.0, 0.125),
            ],
        )
    }

    fn screen(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("test terminal");
        t.draw(|f| app.draw(f)).expect("draw");
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent {
            code: c,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: crossterm::event::KeyEventState::NONE,
        }
    }

    fn line_with<'a>(screen: &'a str, what: &str) -> &'a str {
        screen
            .lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no line with {what:?} in\n{screen}"))
    }

    #[test]
    fn overview_shows_fill_rates_states_and_top_source() {
        let mut app = App::new(10, Some("ctd-x".into()));
        app.push(busy());
        let s = screen(&app, 100, 30);
        assert!(s.contains("ctdoctor watch (netns ctd-x)"), "{s}");
        // 65,536 of 262,144 is 25.0%.
        assert!(s.contains("25.0% (65,536 / 262,144)"), "{s}");
        let rates = line_with(&s, "new/s");
        assert!(
            rates.contains("new/s 400.0  destroyed/s 12.0  drop/s 0.0"),
            "{rates}"
        );
        let top = line_with(&s, "127.0.0.2");
        assert!(top.contains("350.0/s") && top.contains("87.5%"), "{top}");
        let state = line_with(&s, "udp/UNREPLIED");
        assert!(
            state.contains("65,436") && state.contains("99.8%"),
            "{state}"
        );
        assert!(s.contains("none lost"), "{s}");
    }

    #[test]
    fn table_full_log_lines_show_on_the_rates_line() {
        let mut app = App::new(10, None);
        let mut s = busy();
        s.table_full = Some(TableFull {
            lines: 1234,
            last: Some(1_700_000_000),
        });
        app.push(s);
        let out = screen(&app, 140, 30);
        assert!(
            line_with(&out, "new/s").contains("table full 1,234 (kernel log)"),
            "{out}"
        );
        let mut s = busy();
        s.table_full = None;
        app.push(s);
        let out = screen(&app, 140, 30);
        assert!(line_with(&out, "new/s").contains("table full n/a"), "{out}");
    }

    #[test]
    fn views_switch_with_tab_and_digits() {
        let mut app = App::new(10, None);
        app.push(busy());
        assert_eq!(app.key(key(KeyCode::Tab)), Action::None);
        assert_eq!(app.view, View::Rankings);
        let s = screen(&app, 120, 20);
        assert!(s.contains("top destination ports"), "{s}");
        assert!(line_with(&s, "udp/5353").contains("100.0%"), "{s}");
        app.key(key(KeyCode::Char('3')));
        let s = screen(&app, 120, 20);
        assert!(line_with(&s, "tcp/TIME_WAIT").contains("100"), "{s}");
        app.key(key(KeyCode::Char('1')));
        assert_eq!(app.view, View::Overview);
        assert_eq!(app.key(key(KeyCode::Char('q'))), Action::Quit);
    }

    #[test]
    fn pause_freezes_the_screen() {
        let mut app = App::new(10, None);
        app.push(busy());
        app.key(key(KeyCode::Char('p')));
        app.push(snapshot(1000, vec![rank("10.9.9.9", 1.0, 1.0)]));
        let s = screen(&app, 100, 30);
        assert!(s.contains("PAUSED") && s.contains("127.0.0.2"), "{s}");
        assert!(!s.contains("10.9.9.9"), "{s}");
    }

    #[test]
    fn window_sort_averages_the_last_minute() {
        let mut app = App::new(10, None);
        // 59 quiet intervals of a steady source, then one burst of another.
        for _ in 0..59 {
            app.push(snapshot(10, vec![rank("10.0.0.1", 10.0, 1.0)]));
        }
        app.push(snapshot(10, vec![rank("10.0.0.9", 100.0, 1.0)]));
        assert_eq!(app.ranking(|s| &s.top_src)[0].key, "10.0.0.9");
        app.key(key(KeyCode::Char('s')));
        let w = app.ranking(|s| &s.top_src);
        assert_eq!(w[0].key, "10.0.0.1");
        // 590 over 60 s; the burst: 100 over 60 s.
        assert!((w[0].new_per_s - 590.0 / 60.0).abs() < 1e-9, "{w:?}");
        assert!((w[1].new_per_s - 100.0 / 60.0).abs() < 1e-9, "{w:?}");
        let s = screen(&app, 100, 30);
        assert!(s.contains("by new/s, last 60 s"), "{s}");
    }

    #[test]
    fn owned_sources_show_as_name_ip_and_by_container_ranks_workloads() {
        let w = ctcore::workload::Workload {
            name: "filler".into(),
            runtime: "docker".into(),
            image: None,
            pod: None,
            pod_namespace: None,
        };
        let mut src = rank("172.18.0.2", 300.0, 0.75);
        src.workload = Some(w.clone());
        let mut s = snapshot(1000, vec![src, rank("172.18.0.1", 100.0, 0.25)]);
        let mut row = rank("filler", 300.0, 0.75);
        row.workload = Some(w);
        s.top_container = vec![row, rank("172.18.0.1", 100.0, 0.25)];
        let mut app = App::new(10, None);
        app.push(s.clone());
        let text = screen(&app, 100, 30);
        assert!(text.contains("filler (172.18.0.2)"), "{text}");
        assert!(text.contains("top sources"), "{text}");
        // Over the 60 s window the owner stays with its key.
        app.key(key(KeyCode::Char('s')));
        let text = screen(&app, 100, 30);
        assert!(text.contains("filler (172.18.0.2)"), "{text}");
        let mut app = App::new(10, None);
        app.by = super::super::By::Container;
        app.push(s);
        let text = screen(&app, 100, 30);
        assert!(text.contains("top containers"), "{text}");
        assert!(
            text.contains("filler ") && !text.contains("filler ("),
            "{text}"
        );
    }

    #[test]
    fn filter_input_is_returned_as_clauses() {
        let mut app = App::new(10, None);
        app.push(busy());
        app.key(key(KeyCode::Char('/')));
        for c in "l4=udp  src=127.0.0.2".chars() {
            app.key(key(KeyCode::Char(c)));
        }
        // While typing, q is text, not quit.
        app.key(key(KeyCode::Char('q')));
        app.key(key(KeyCode::Backspace));
        let s = screen(&app, 100, 30);
        assert!(s.contains("filter> l4=udp  src=127.0.0.2_"), "{s}");
        assert_eq!(
            app.key(key(KeyCode::Enter)),
            Action::Filter(vec!["l4=udp".into(), "src=127.0.0.2".into()])
        );
        assert!(app.input.is_none());
    }

    #[test]
    fn status_line_reports_lost_events_and_events_off() {
        let mut app = App::new(10, None);
        let mut s = busy();
        s.time = "2025-06-01T12:00:05Z".into();
        s.events.lost = 2;
        s.events.resyncs = 1;
        s.events.last_resync = Some("events lost (ENOBUFS)".into());
        app.push(s);
        let text = screen(&app, 120, 30);
        assert!(
            text.contains(
                "events lost 2x; 1 resync dump(s), last at 2025-06-01T12:00:05Z: events lost (ENOBUFS)"
            ),
            "{text}"
        );
        let mut off = busy();
        off.events = EventStatus {
            setting: Some(0),
            ..EventStatus::default()
        };
        off.new_per_s = None;
        app.push(off);
        let text = screen(&app, 120, 30);
        assert!(text.contains("nf_conntrack_events=1"), "{text}");
        assert!(line_with(&text, "new/s").contains("new/s n/a"), "{text}");
        assert!(
            text.contains("no events: nf_conntrack_events is 0"),
            "{text}"
        );
    }

    #[test]
    fn tiny_and_empty_screens_do_not_panic() {
        let mut app = App::new(10, None);
        let s = screen(&app, 80, 10);
        assert!(s.contains("waiting for the first interval"), "{s}");
        app.push(busy());
        for (w, h) in [(1, 1), (10, 3), (20, 8), (300, 100)] {
            for v in ["1", "2", "3"] {
                app.key(key(KeyCode::Char(v.chars().next().unwrap_or('1'))));
                screen(&app, w, h);
            }
        }
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(262_144), "262,144");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
