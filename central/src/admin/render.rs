//! The command line's tables: each view of [`super::views`] (and the status and trace) as
//! aligned columns a person reads, with a sentence when there is nothing to show.

use std::fmt::Write;

use super::status::StatusView;
use super::trace::TraceView;
use super::views::{AgentsView, AuditView, DeadLettersView, NoticesView};

/// Aligned columns under a header; `empty` alone when there are no rows.
pub fn table(header: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("{empty}\n");
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            text.push_str(cell);
            if i + 1 < cells.len() {
                text.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

fn opt<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".to_owned(),
        Some(s) if s < 90.0 => format!("{s:.0}s"),
        Some(s) if s < 5400.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

pub fn agents(view: &AgentsView) -> String {
    let rows: Vec<Vec<String>> = view
        .agents
        .iter()
        .map(|a| {
            let state = if a.revoked {
                "revoked"
            } else if a.connected {
                "connected"
            } else {
                "offline"
            };
            vec![
                a.agent_id.clone(),
                a.warehouse.clone(),
                state.to_owned(),
                opt(a.last_seen.as_deref()),
                opt(a.lag_events),
                age(a.oldest_unsynced_age_seconds),
                a.unmerged_events().to_string(),
                a.clock_behind_seconds
                    .map_or("-".to_owned(), |s| format!("{s:+.1}s")),
                if a.log_replaced { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "AGENT",
            "WAREHOUSE",
            "STATE",
            "LAST SEEN",
            "LAG",
            "OLDEST UNSYNCED",
            "UNMERGED",
            "CLOCK BEHIND",
            "LOG REPLACED",
        ],
        &rows,
        "no agents are registered (tally-central agent add ID --warehouse CODE)",
    )
}

pub fn dead_letters(view: &DeadLettersView) -> String {
    let rows: Vec<Vec<String>> = view
        .groups
        .iter()
        .map(|g| {
            vec![
                g.warehouse.clone(),
                g.sku.clone(),
                g.events.to_string(),
                g.reason.clone(),
                g.message.clone(),
                g.first_parked_at.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "WAREHOUSE",
            "SKU",
            "EVENTS",
            "REASON",
            "MESSAGE",
            "FIRST PARKED",
        ],
        &rows,
        "no events are parked",
    );
    if view.queued_for_retry > 0 {
        let _ = writeln!(
            out,
            "{} events are queued for a retry",
            view.queued_for_retry
        );
    }
    out
}

pub fn notices(view: &NoticesView) -> String {
    let rows: Vec<Vec<String>> = view
        .notices
        .iter()
        .map(|n| {
            vec![
                n.noticed_at.clone(),
                format!("{}:{}", n.agent_id, n.seq),
                n.warehouse.clone(),
                n.sku.clone(),
                n.kind.clone(),
                n.message.clone(),
            ]
        })
        .collect();
    table(
        &["NOTICED", "EVENT", "WAREHOUSE", "SKU", "KIND", "MESSAGE"],
        &rows,
        "no notices",
    )
}

pub fn audit(view: &AuditView) -> String {
    let rows: Vec<Vec<String>> = view
        .entries
        .iter()
        .map(|e| {
            vec![
                e.at.clone(),
                e.role.clone(),
                e.action.clone(),
                e.target.clone(),
                opt(e.reason.as_deref()),
                e.detail.clone(),
            ]
        })
        .collect();
    table(
        &["TIME", "ROLE", "ACTION", "TARGET", "REASON", "DETAIL"],
        &rows,
        "the audit log is empty: nothing was changed yet",
    )
}

pub fn trace(view: &TraceView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "agent {}, {}: {}",
        view.agent_id, view.query, view.state
    );
    if let Some(e) = &view.event {
        let _ = writeln!(
            out,
            "event: {} {} x {}{}{}",
            e.kind,
            e.sku,
            e.qty,
            e.location
                .as_deref()
                .map(|l| format!(" at {l}"))
                .unwrap_or_default(),
            e.reference
                .as_deref()
                .map(|r| format!(" (reference {r})"))
                .unwrap_or_default(),
        );
    }
    let rows: Vec<Vec<String>> = view
        .steps
        .iter()
        .map(|s| {
            vec![
                s.step.clone(),
                s.status.clone(),
                opt(s.at.as_deref()),
                s.detail.clone(),
            ]
        })
        .collect();
    out.push_str(&table(
        &["STEP", "STATUS", "AT", "DETAIL"],
        &rows,
        "no steps",
    ));
    if let Some(pushes) = &view.channels {
        out.push('\n');
        let rows: Vec<Vec<String>> = pushes
            .iter()
            .map(|p| {
                vec![
                    p.channel.clone(),
                    p.sent.to_string(),
                    p.seq.to_string(),
                    p.at.clone(),
                    if p.after_merge { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["CHANNEL", "LAST SENT", "SEQ", "AT", "AFTER THE MERGE"],
            &rows,
            "",
        ));
    }
    out
}

pub fn status(view: &StatusView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tally-central {} ({})",
        view.version,
        if view.running { "running" } else { "stopped" }
    );
    out.push('\n');
    let _ = writeln!(out, "AGENTS");
    out.push_str(&agents(&AgentsView {
        agents: view.agents.clone(),
    }));
    out.push('\n');
    let o = &view.odoo;
    let link = match o.enabled {
        None => "unknown (central is stopped)".to_owned(),
        Some(false) => "not configured: central journals without merging".to_owned(),
        Some(true) if o.connected => format!(
            "connected (Odoo {}, {})",
            opt(o.odoo_version),
            opt(o.odoo_api.as_deref())
        ),
        Some(true) => format!("not connected: {}", opt(o.last_error.as_deref())),
    };
    let _ = writeln!(out, "ODOO      {link}");
    let _ = writeln!(
        out,
        "circuit   {}   alert: {}",
        opt(o.circuit.as_deref()),
        opt(o.alert.as_deref())
    );
    let _ = writeln!(
        out,
        "merged {}, unmerged {}, parked {}, queued for retry {}, discarded {}; last merge {}",
        o.merged_events,
        o.unmerged_events,
        o.parked_events,
        o.queued_for_retry,
        o.discarded_events,
        opt(o.last_merge_at.as_deref())
    );
    out.push('\n');
    let _ = writeln!(out, "DEAD LETTERS");
    out.push_str(&dead_letters(&DeadLettersView {
        dead_letters: Vec::new(),
        total: view.dead_letters.total,
        queued_for_retry: view.dead_letters.queued_for_retry,
        groups: view.dead_letters.groups.clone(),
    }));
    let _ = writeln!(out, "notices: {}", view.notices);
    if let Some(channels) = &view.channels {
        let _ = writeln!(out, "\nCHANNELS");
        out.push_str(&super::channels::render_channels(
            &super::channels::ChannelsView {
                channels: channels.clone(),
            },
        ));
    }
    out.push('\n');
    let _ = writeln!(out, "WARNINGS");
    let rows: Vec<Vec<String>> = view
        .warnings
        .iter()
        .map(|w| vec![w.severity.clone(), w.code.clone(), w.message.clone()])
        .collect();
    out.push_str(&table(
        &["SEVERITY", "CODE", "MESSAGE"],
        &rows,
        "none: all is well",
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_an_empty_table_says_so() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned()],
            vec!["bbbb".to_owned(), "x".to_owned()],
        ];
        assert_eq!(
            table(&["K", "VALUE"], &rows, "nothing"),
            "K     VALUE\na     long value\nbbbb  x\n"
        );
        assert_eq!(table(&["K"], &[], "nothing here"), "nothing here\n");
        assert!(dead_letters(&DeadLettersView::default()).contains("no events are parked"));
        assert!(agents(&AgentsView::default()).contains("no agents are registered"));
    }
}
