//! The tables `benches/many.rs` prints and the SVG it draws, from the median
//! of each case's measurements.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::Values;

type Medians = BTreeMap<String, Values>;

fn get(m: &Medians, spec: &str, key: &str) -> f64 {
    m.get(spec)
        .and_then(|v| v.get(key))
        .copied()
        .unwrap_or(f64::NAN)
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b != 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".into()
    }
}

/// Prints every table (Markdown) to stdout.
pub(crate) fn print_tables(m: &Medians, ns: &[usize], reps: usize) {
    println!("## Many connections (medians of {reps} for timings; memory cases once)\n");
    memory(m, ns);
    buffers(m);
    connects(m);
    busy(m);
    probes(m);
}

fn memory(m: &Medians, ns: &[usize]) {
    println!("### Memory per idle connection (after startup and one small query)\n");
    println!(
        "| N | socket | heap B/conn pg-transport | heap B/conn tokio-postgres | ours ÷ theirs \
         | RSS B/conn pg-transport | RSS B/conn tokio-postgres \
         | open N, ms (ours / theirs) | probe pass over N, µs (ours / theirs) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &n in ns {
        for sock in ["unix", "tcp"] {
            let (o, t) = (format!("mem:pgt:{sock}:{n}"), format!("mem:tpg:{sock}:{n}"));
            println!(
                "| {n} | {sock} | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} |",
                get(m, &o, "heap"),
                get(m, &t, "heap"),
                ratio(get(m, &o, "heap"), get(m, &t, "heap")),
                get(m, &o, "rss"),
                get(m, &t, "rss"),
                get(m, &o, "open_s") * 1e3,
                get(m, &t, "open_s") * 1e3,
                get(m, &o, "probe_pass_s") * 1e6,
                get(m, &t, "probe_pass_s") * 1e6,
            );
        }
    }
    if let Some(n) = ns.last() {
        let o = format!("mem:pgt:unix:{n}");
        println!(
            "\nOurs, per idle connection at N = {n}: receive buffer capacity {:.0} B, send \
             buffer capacity {:.0} B; the handle itself {:.0} B (tokio-postgres `Client` {:.0} B).\n",
            get(m, &o, "recv_cap"),
            get(m, &o, "send_cap"),
            get(m, &o, "handle"),
            get(m, &format!("mem:tpg:unix:{n}"), "handle"),
        );
        println!(
            "Of the rest: the cancel token's clone of the `Config` takes {:.0} B (inline and \
             heap); the {:.0} server parameters take {:.0} B of text plus a `BTreeMap` of \
             `String`s.\n",
            get(m, &o, "config_clone"),
            get(m, &o, "params"),
            get(m, &o, "params_text"),
        );
    }
}

fn buffers(m: &Medians) {
    println!("### One connection around a ~101 MB COPY OUT (Unix socket)\n");
    println!(
        "| when | heap B, pg-transport | receive buffer B | send buffer B | heap B, tokio-postgres |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (when, label) in [
        ("idle", "after startup + a query"),
        ("after_copy", "right after the COPY OUT"),
        ("after_query", "after one more small query"),
        ("listening", "waiting for a notification after LISTEN"),
        ("after_notification", "after a notification arrived"),
    ] {
        println!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} |",
            get(m, "bufs:pgt", &format!("heap_{when}")),
            get(m, "bufs:pgt", &format!("recv_{when}")),
            get(m, "bufs:pgt", &format!("send_{when}")),
            get(m, "bufs:tpg", &format!("heap_{when}")),
        );
    }
    println!();
}

fn connects(m: &Medians) {
    println!("### Connect rate (1,000 connections; startup + authentication, then dropped)\n");
    println!(
        "| auth | socket | mode | conn/s pg-transport | conn/s tokio-postgres | ours ÷ theirs \
         | client CPU µs/connect, ours | theirs |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for auth in ["trust", "scram"] {
        for sock in ["unix", "tcp"] {
            for mode in ["seq", "conc"] {
                let o = format!("connect:pgt:{auth}:{sock}:{mode}");
                let t = format!("connect:tpg:{auth}:{sock}:{mode}");
                let mode_name = if mode == "seq" {
                    "sequential"
                } else {
                    "32 at a time"
                };
                println!(
                    "| {auth} | {sock} | {mode_name} | {:.0} | {:.0} | {} | {:.0} | {:.0} |",
                    get(m, &o, "rate"),
                    get(m, &t, "rate"),
                    ratio(get(m, &o, "rate"), get(m, &t, "rate")),
                    get(m, &o, "cpu_per") * 1e6,
                    get(m, &t, "cpu_per") * 1e6,
                );
            }
        }
    }
    let pbkdf2 = get(m, "pbkdf2", "s");
    let scram = get(m, "connect:pgt:scram:unix:seq", "cpu_per");
    let trust = get(m, "connect:pgt:trust:unix:seq", "cpu_per");
    println!(
        "\nOur SCRAM client's PBKDF2 alone (Hi, 4,096 iterations): {:.2} ms, {:.0} % of our \
         client CPU per SCRAM connect over the Unix socket ({:.2} ms; trust {:.2} ms).\n",
        pbkdf2 * 1e3,
        100.0 * pbkdf2 / scram,
        scram * 1e3,
        trust * 1e3,
    );
}

fn busy(m: &Medians) {
    println!("### 100 busy connections, each a 10,000-row SELECT, all at once\n");
    println!(
        "| socket | runtime | client | M rows/s | client CPU ns/row | rows/s ÷ tokio-postgres \
         | CPU/row ÷ tokio-postgres |"
    );
    println!("|---|---|---|---:|---:|---:|---:|");
    for sock in ["unix", "tcp"] {
        for rt in ["ct", "mt"] {
            let t = format!("busy:tpg:{sock}:{rt}");
            for client in ["pgt-sink", "pgt-stream", "tpg"] {
                let s = format!("busy:{client}:{sock}:{rt}");
                let name = match client {
                    "pgt-sink" => "pg-transport `query_with` + RowCounter",
                    "pgt-stream" => "pg-transport `query_stream`",
                    _ => "tokio-postgres `query_raw`",
                };
                let rt_name = if rt == "ct" {
                    "current-thread"
                } else {
                    "2 workers"
                };
                println!(
                    "| {sock} | {rt_name} | {name} | {:.2} | {:.0} | {} | {} |",
                    get(m, &s, "rows_per_s") / 1e6,
                    get(m, &s, "cpu_ns_per_row"),
                    ratio(get(m, &s, "rows_per_s"), get(m, &t, "rows_per_s")),
                    ratio(get(m, &s, "cpu_ns_per_row"), get(m, &t, "cpu_ns_per_row")),
                );
            }
        }
    }
    println!();
}

fn probes(m: &Medians) {
    println!("### Liveness over 1,000 idle connections\n");
    println!(
        "| socket | client | per probe, ns (idle) | pass finding the 10 terminated, µs | found |"
    );
    println!("|---|---|---:|---:|---:|");
    for sock in ["unix", "tcp"] {
        for (client, name) in [
            ("pgt", "pg-transport `is_connected()`"),
            ("tpg", "tokio-postgres `is_closed()`"),
        ] {
            let s = format!("probe:{client}:{sock}");
            println!(
                "| {sock} | {name} | {:.0} | {:.0} | {:.0} |",
                get(m, &s, "probe_ns"),
                get(m, &s, "find_us"),
                get(m, &s, "found"),
            );
        }
    }
    println!();
}

/// One curve: a label, a colour, and `(N, value)` points.
type Curve = (String, RGBColor, Vec<(f64, f64)>);

fn curves(m: &Medians, ns: &[usize], key: &str, scale: f64) -> Vec<Curve> {
    let mut out = Vec::new();
    for (client, name) in [("pgt", "pg-transport"), ("tpg", "tokio-postgres")] {
        for sock in ["unix", "tcp"] {
            let colour = match (client, sock) {
                ("pgt", "unix") => RGBColor(31, 119, 180),
                ("pgt", _) => RGBColor(23, 190, 207),
                (_, "unix") => RGBColor(214, 39, 40),
                _ => RGBColor(255, 127, 14),
            };
            let points = ns
                .iter()
                .map(|&n| {
                    (
                        n as f64,
                        get(m, &format!("mem:{client}:{sock}:{n}"), key) * scale,
                    )
                })
                .filter(|p| p.1.is_finite())
                .collect();
            out.push((format!("{name}, {sock}"), colour, points));
        }
    }
    out
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_desc: &str,
    ns: &[usize],
    data: &[Curve],
    legend: SeriesLabelPosition,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let y_max = data
        .iter()
        .flat_map(|c| c.2.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        * 1.15;
    let x_min = ns.first().copied().unwrap_or(10) as f64 * 0.8;
    let x_max = ns.last().copied().unwrap_or(1000) as f64 * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max.max(1.0))
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("N open connections")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(e)?;
    for (label, colour, points) in data {
        let colour = *colour;
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 4, colour.filled())))
            .map_err(e)?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    Ok(())
}

/// Draws heap, RSS, open time and probe time per connection against N into `path`.
pub(crate) fn draw(m: &Medians, ns: &[usize], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(
            "Many idle connections: pg-transport vs tokio-postgres (cargo bench --bench many)",
            ("sans-serif", 22),
        )
        .map_err(|e| e.to_string())?;
    let areas = root.split_evenly((2, 2));
    use SeriesLabelPosition as At;
    let panels = [
        (
            "Heap per idle connection",
            "bytes (counting allocator)",
            "heap",
            1.0,
            At::MiddleRight,
        ),
        (
            "RSS per idle connection",
            "bytes (VmRSS growth / N)",
            "rss",
            1.0,
            At::UpperRight,
        ),
        (
            "Time to open N (32 at a time), per connection",
            "µs per connection",
            "open_s",
            1e6,
            At::LowerRight,
        ),
        (
            "Liveness probe pass over N, per connection",
            "ns per probe",
            "probe_pass_s",
            1e9,
            At::UpperLeft,
        ),
    ];
    for (area, (title, y_desc, key, scale, legend)) in areas.iter().zip(panels) {
        let mut data = curves(m, ns, key, scale);
        if key != "heap" && key != "rss" {
            for c in &mut data {
                for p in &mut c.2 {
                    p.1 /= p.0;
                }
            }
        }
        panel(area, title, y_desc, ns, &data, legend)?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
