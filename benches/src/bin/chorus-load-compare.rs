//! `chorus-load-compare`: read `chorus-load --json` reports of the same scenario against
//! several servers (repeated runs), print one table of medians with the Chorus/Janus
//! ratio, and draw join-time CDFs and CPU per packet into an SVG.
//!
//! `chorus-load-compare --svg out.svg runs/chorus-1.json runs/janus-1.json ...`

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use chorus_bench::load::Report;
use clap::Parser;
use plotters::prelude::*;

#[derive(Debug, Parser)]
#[command(name = "chorus-load-compare")]
struct Args {
    /// Write the plot here (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// A label for the table and plot (e.g. the Janus threading used).
    #[arg(long, default_value = "")]
    note: String,
    /// `chorus-load --json` outputs.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

struct Row {
    name: &'static str,
    unit: &'static str,
    digits: usize,
    get: fn(&Report) -> Option<f64>,
}

const ROWS: &[Row] = &[
    Row {
        name: "CPU per forwarded packet",
        unit: "µs",
        digits: 2,
        get: |r| r.sfu.cpu_us_per_forwarded_packet,
    },
    Row {
        name: "server CPU",
        unit: "cores",
        digits: 2,
        get: |r| r.sfu.cpu_cores,
    },
    Row {
        name: "forwarded packets",
        unit: "/s",
        digits: 0,
        get: |r| Some(r.sfu.forwarded_per_s),
    },
    Row {
        name: "memory per participant",
        unit: "KiB",
        digits: 0,
        get: |r| r.sfu.rss_per_participant_bytes.map(|b| b / 1024.0),
    },
    Row {
        name: "join→first audio p50",
        unit: "ms",
        digits: 0,
        get: |r| Some(r.join_to_first_audio_ms.p50),
    },
    Row {
        name: "join→first audio p99",
        unit: "ms",
        digits: 0,
        get: |r| Some(r.join_to_first_audio_ms.p99),
    },
    Row {
        name: "loss",
        unit: "%",
        digits: 4,
        get: |r| Some(r.loss.loss_ratio * 100.0),
    },
    Row {
        name: "jitter (mean)",
        unit: "ms",
        digits: 2,
        get: |r| Some(r.loss.jitter_ms_mean),
    },
    Row {
        name: "load tool CPU",
        unit: "cores",
        digits: 2,
        get: |r| r.load_cpu_seconds.map(|c| c / r.window_s.max(1e-9)),
    },
];

fn main() -> ExitCode {
    let args = Args::parse();
    let mut by_target: BTreeMap<String, Vec<Report>> = BTreeMap::new();
    for path in &args.reports {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("chorus-load-compare: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        match serde_json::from_str::<Report>(&text) {
            Ok(r) => by_target.entry(r.target.clone()).or_default().push(r),
            Err(e) => {
                eprintln!(
                    "chorus-load-compare: {} is not a chorus-load report: {e}",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        }
    }
    print_table(&by_target, &args.note);
    if let Some(svg) = &args.svg {
        if let Err(e) = plot(svg, &by_target, &args.note) {
            eprintln!("chorus-load-compare: cannot draw {}: {e}", svg.display());
            return ExitCode::FAILURE;
        }
        println!("plot: {}", svg.display());
    }
    ExitCode::SUCCESS
}

fn print_table(by_target: &BTreeMap<String, Vec<Report>>, note: &str) {
    let Some(first) = by_target.values().flatten().next() else {
        return;
    };
    let s = &first.scenario;
    println!(
        "Scenario: {} room(s) × ({} speakers + {} listeners), {:.0} s window; medians of runs{}",
        s.rooms,
        s.speakers,
        s.listeners,
        s.duration_s,
        if note.is_empty() {
            String::new()
        } else {
            format!("; {note}")
        }
    );
    let targets: Vec<&String> = by_target.keys().collect();
    let mut header = format!("| {:<26} |", "metric");
    for t in &targets {
        header.push_str(&format!(
            " {:>14} |",
            format!("{t} (n={})", by_target[*t].len())
        ));
    }
    let ratio = by_target.contains_key("chorus") && by_target.contains_key("janus");
    if ratio {
        header.push_str(" chorus/janus |");
    }
    println!("{header}");
    println!(
        "|{}|{}{}",
        "-".repeat(28),
        targets
            .iter()
            .map(|_| "-".repeat(16) + "|")
            .collect::<String>(),
        if ratio {
            "-".repeat(14) + "|"
        } else {
            String::new()
        }
    );
    for row in ROWS {
        let mut line = format!("| {:<26} |", format!("{} ({})", row.name, row.unit));
        let mut medians = BTreeMap::new();
        for t in &targets {
            let m = median(by_target[*t].iter().filter_map(row.get).collect());
            medians.insert(t.as_str(), m);
            line.push_str(&match m {
                Some(v) => format!(" {:>14.*} |", row.digits, v),
                None => format!(" {:>14} |", "n/a"),
            });
        }
        if ratio {
            line.push_str(&match (
                medians.get("chorus").copied().flatten(),
                medians.get("janus").copied().flatten(),
            ) {
                (Some(c), Some(j)) if j != 0.0 => format!(" {:>12.3} |", c / j),
                _ => format!(" {:>12} |", "n/a"),
            });
        }
        println!("{line}");
    }
    for (t, runs) in by_target {
        let unclean = runs.iter().filter(|r| !r.clean()).count();
        let sources: Vec<String> = runs
            .iter()
            .map(|r| format!("{:?}/{:?}", r.sfu.source, r.sfu.forwarded_source))
            .collect();
        println!(
            "{t}: {} run(s), {unclean} not clean; CPU µs/packet per run: {:?}; CPU+RSS/forwarded from {}",
            runs.len(),
            runs.iter()
                .map(|r| r
                    .sfu
                    .cpu_us_per_forwarded_packet
                    .map(|v| (v * 100.0).round() / 100.0))
                .collect::<Vec<_>>(),
            sources.first().cloned().unwrap_or_default()
        );
    }
}

type Fallible = Result<(), Box<dyn std::error::Error>>;

fn plot(path: &PathBuf, by_target: &BTreeMap<String, Vec<Report>>, note: &str) -> Fallible {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(560);
    let colors = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];

    // Join → first audio CDF, all runs of a target pooled.
    let pooled: Vec<(String, Vec<f64>)> = by_target
        .iter()
        .map(|(t, runs)| {
            let mut v: Vec<f64> = runs
                .iter()
                .flat_map(|r| r.join_to_first_audio_ms.samples.iter().copied())
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            (t.clone(), v)
        })
        .collect();
    let x_max = pooled
        .iter()
        .filter_map(|(_, v)| v.last().copied())
        .fold(10.0f64, f64::max)
        * 1.05;
    let mut chart = ChartBuilder::on(&left)
        .caption(
            format!(
                "join → first audio (CDF){}",
                if note.is_empty() {
                    String::new()
                } else {
                    format!(", {note}")
                }
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
    chart
        .configure_mesh()
        .x_desc("ms")
        .y_desc("share of listeners")
        .draw()?;
    for (i, (t, v)) in pooled.iter().enumerate() {
        let color = colors[i % colors.len()];
        let n = v.len().max(1) as f64;
        chart
            .draw_series(LineSeries::new(
                v.iter().enumerate().map(|(k, x)| (*x, (k + 1) as f64 / n)),
                color.stroke_width(2),
            ))?
            .label(t.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;

    // CPU per forwarded packet: one bar per target (median), a dot per run.
    let per_run: Vec<(String, Vec<f64>)> = by_target
        .iter()
        .map(|(t, runs)| {
            (
                t.clone(),
                runs.iter()
                    .filter_map(|r| r.sfu.cpu_us_per_forwarded_packet)
                    .collect(),
            )
        })
        .collect();
    let y_max = per_run
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0f64, f64::max)
        * 1.15;
    let n = per_run.len().max(1);
    let mut chart = ChartBuilder::on(&right)
        .caption("server CPU per forwarded packet", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .build_cartesian_2d(0.0..n as f64, 0.0..y_max)?;
    let names: Vec<String> = per_run.iter().map(|(t, _)| t.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("µs per packet")
        .draw()?;
    for (i, (_, v)) in per_run.iter().enumerate() {
        let color = colors[i % colors.len()];
        if let Some(m) = median(v.clone()) {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(i as f64 + 0.2, 0.0), (i as f64 + 0.8, m)],
                color.mix(0.5).filled(),
            )))?;
            chart.draw_series(std::iter::once(Text::new(
                format!("{m:.1}"),
                (i as f64 + 0.42, m + y_max * 0.02),
                ("sans-serif", 14),
            )))?;
        }
        chart.draw_series(v.iter().enumerate().map(|(k, y)| {
            Circle::new(
                (
                    i as f64 + 0.3 + 0.4 * (k as f64 + 0.5) / v.len().max(1) as f64,
                    *y,
                ),
                3,
                color.filled(),
            )
        }))?;
    }
    root.present()?;
    Ok(())
}
