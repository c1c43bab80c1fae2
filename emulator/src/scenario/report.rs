//! What a run leaves behind: a terminal summary (colour on a TTY, plain otherwise), JUnit XML
//! for CI systems, and one Bot Framework `.transcript` per scenario.

use super::run::{ScenarioResult, StepStatus, summarize_activity};
use quick_xml::Writer;
use quick_xml::events::{BytesCData, BytesEnd, BytesStart, BytesText, Event};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

/// ANSI colours, or none.
#[derive(Clone, Copy)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    fn paint(self, code: &str, s: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn green(self, s: &str) -> String {
        self.paint("32", s)
    }
    fn red(self, s: &str) -> String {
        self.paint("31", s)
    }
    fn dim(self, s: &str) -> String {
        self.paint("2", s)
    }
    fn bold(self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// One scenario's block: a PASS/FAIL line and, for a failure, what was expected and seen.
pub fn scenario_text(r: &ScenarioResult, style: Style) -> String {
    let mut out = String::new();
    let secs = format!("({:.1}s)", r.duration.as_secs_f64());
    if r.passed() {
        let _ = writeln!(
            out,
            "  {}  {} {}",
            style.green("PASS"),
            r.name,
            style.dim(&secs)
        );
        return out;
    }
    let _ = writeln!(
        out,
        "  {}  {} {}  {}",
        style.red("FAIL"),
        style.bold(&r.name),
        style.dim(&secs),
        style.dim(&r.file)
    );
    if let Some(e) = &r.error {
        for line in e.lines() {
            let _ = writeln!(out, "        {line}");
        }
    }
    for s in &r.steps {
        if let StepStatus::Failed(f) = &s.status {
            let _ = writeln!(
                out,
                "        step {} `{}` at {}:{}:{}",
                s.index, s.name, r.file, s.line, s.column
            );
            let _ = writeln!(out, "          expected: {}", f.expected);
            if f.seen.is_empty() {
                let _ = writeln!(out, "          seen:     nothing");
            } else {
                for (i, seen) in f.seen.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "          {} {seen}",
                        if i == 0 { "seen:    " } else { "         " }
                    );
                }
            }
        }
    }
    let skipped = r
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Skipped)
        .count();
    if skipped > 0 {
        let _ = writeln!(out, "        {skipped} later step(s) skipped");
    }
    let _ = writeln!(out, "        activities (→ to the bot, ← from the bot):");
    let from_bot = |a: &serde_json::Value| {
        a["from"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("28:"))
    };
    let tail = r.transcript.len().saturating_sub(12);
    if r.transcript.is_empty() {
        let _ = writeln!(out, "          none");
    }
    for a in &r.transcript[tail..] {
        let _ = writeln!(
            out,
            "          {} {}",
            if from_bot(a) { "←" } else { "→" },
            summarize_activity(a)
        );
    }
    if !r.bot_output.trim().is_empty() {
        let _ = writeln!(out, "        bot output (tail):");
        let lines: Vec<&str> = r.bot_output.lines().collect();
        for line in &lines[lines.len().saturating_sub(15)..] {
            let _ = writeln!(out, "          {}", style.dim(line));
        }
    }
    out
}

/// The closing line: `N passed, N failed`.
pub fn summary_line(results: &[ScenarioResult]) -> String {
    let passed = results.iter().filter(|r| r.passed()).count();
    format!("{passed} passed, {} failed", results.len() - passed)
}

fn failure_text(r: &ScenarioResult) -> String {
    xml_safe(&scenario_text(r, Style { colour: false }))
}

/// XML 1.0 allows no control characters but tab, newline and carriage return; a bot's coloured
/// output has escapes that CI systems would refuse the whole report for.
fn xml_safe(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect()
}

/// JUnit XML: one `testsuite`, one `testcase` per scenario.
pub fn junit_xml(results: &[ScenarioResult]) -> io::Result<Vec<u8>> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let failures = results.iter().filter(|r| !r.passed()).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    w.write_event(Event::Decl(quick_xml::events::BytesDecl::new(
        "1.0",
        Some("UTF-8"),
        None,
    )))
    .map_err(err_io)?;
    let mut suites = BytesStart::new("testsuites");
    suites.push_attribute(("name", "teams-emulator"));
    suites.push_attribute(("tests", results.len().to_string().as_str()));
    suites.push_attribute(("failures", failures.to_string().as_str()));
    suites.push_attribute(("time", format!("{total:.3}").as_str()));
    w.write_event(Event::Start(suites)).map_err(err_io)?;
    let mut suite = BytesStart::new("testsuite");
    suite.push_attribute(("name", "scenarios"));
    suite.push_attribute(("tests", results.len().to_string().as_str()));
    suite.push_attribute(("failures", failures.to_string().as_str()));
    suite.push_attribute(("errors", "0"));
    suite.push_attribute(("skipped", "0"));
    suite.push_attribute(("time", format!("{total:.3}").as_str()));
    w.write_event(Event::Start(suite)).map_err(err_io)?;
    for r in results {
        let mut case = BytesStart::new("testcase");
        let (name, file) = (xml_safe(&r.name), xml_safe(&r.file));
        case.push_attribute(("name", name.as_str()));
        case.push_attribute(("classname", file.as_str()));
        case.push_attribute(("file", file.as_str()));
        case.push_attribute(("time", format!("{:.3}", r.duration.as_secs_f64()).as_str()));
        w.write_event(Event::Start(case)).map_err(err_io)?;
        if !r.passed() {
            let message = r
                .error
                .clone()
                .or_else(|| {
                    r.steps.iter().find_map(|s| match &s.status {
                        StepStatus::Failed(f) => Some(format!(
                            "step {} {}: expected {}",
                            s.index, s.name, f.expected
                        )),
                        _ => None,
                    })
                })
                .unwrap_or_default();
            let mut failure = BytesStart::new("failure");
            let message = xml_safe(message.lines().next().unwrap_or_default());
            failure.push_attribute(("message", message.as_str()));
            failure.push_attribute(("type", "ScenarioFailed"));
            w.write_event(Event::Start(failure)).map_err(err_io)?;
            w.write_event(Event::Text(BytesText::new(&failure_text(r))))
                .map_err(err_io)?;
            w.write_event(Event::End(BytesEnd::new("failure")))
                .map_err(err_io)?;
        }
        if !r.bot_output.is_empty() {
            w.write_event(Event::Start(BytesStart::new("system-out")))
                .map_err(err_io)?;
            w.write_event(Event::CData(BytesCData::new(
                xml_safe(&r.bot_output).replace("]]>", "]] >"),
            )))
            .map_err(err_io)?;
            w.write_event(Event::End(BytesEnd::new("system-out")))
                .map_err(err_io)?;
        }
        w.write_event(Event::End(BytesEnd::new("testcase")))
            .map_err(err_io)?;
    }
    w.write_event(Event::End(BytesEnd::new("testsuite")))
        .map_err(err_io)?;
    w.write_event(Event::End(BytesEnd::new("testsuites")))
        .map_err(err_io)?;
    let mut bytes = w.into_inner();
    bytes.push(b'\n');
    Ok(bytes)
}

fn err_io<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

pub fn write_junit(path: &Path, results: &[ScenarioResult]) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)?.write_all(&junit_xml(results)?)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in xml_safe(s).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HTML_STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2rem;color:#1b1b1f;max-width:72rem}\
h1{font-size:1.4rem}.sum{margin:.5rem 0 1.5rem}.pass{color:#0a7a2f}.fail{color:#b3261e}\
details{border:1px solid #ddd;border-radius:8px;margin:.6rem 0;padding:.4rem .8rem}\
summary{cursor:pointer;font-weight:600}summary .meta{font-weight:400;color:#666;margin-left:.5rem}\
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eee;vertical-align:top}\
.expected{background:#fff4f2;white-space:pre-wrap}.seen{white-space:pre-wrap;color:#333}\
.act{display:flex;gap:.5rem;margin:.25rem 0}.act .dir{width:1.2rem;color:#666}.bubble{border-radius:10px;padding:.35rem .7rem;max-width:80%}\
.to{background:#f1f3f4}.from{background:#e8f0fe;margin-left:auto}.kind{font-size:.8rem;color:#555}pre{white-space:pre-wrap;background:#fafafa;padding:.5rem;border-radius:6px}";

/// A self-contained HTML page of the run: a summary, and per scenario its steps (expected
/// next to seen for a failure) and the conversation both ways.
pub fn html(results: &[ScenarioResult], seed: Option<u64>) -> String {
    let passed = results.iter().filter(|r| r.passed()).count();
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>teams-emulator run: {passed} passed, {} failed</title><style>{HTML_STYLE}</style></head><body>",
        results.len() - passed
    );
    let _ = write!(
        out,
        "<h1>teams-emulator run</h1><p class=\"sum\"><span class=\"pass\">{passed} passed</span>, <span class=\"fail\">{} failed</span> of {} scenario(s){}</p>",
        results.len() - passed,
        results.len(),
        seed.map(|s| format!(", seed {s}")).unwrap_or_default()
    );
    for r in results {
        let (class, word) = if r.passed() {
            ("pass", "PASS")
        } else {
            ("fail", "FAIL")
        };
        let _ = write!(
            out,
            "<details{}><summary><span class=\"{class}\">{word}</span> {}<span class=\"meta\">{:.1}s · {}</span></summary>",
            if r.passed() { "" } else { " open" },
            html_escape(&r.name),
            r.duration.as_secs_f64(),
            html_escape(&r.file)
        );
        if let Some(e) = &r.error {
            let _ = write!(out, "<pre class=\"expected\">{}</pre>", html_escape(e));
        }
        if !r.steps.is_empty() {
            out.push_str("<table><tr><th>#</th><th>step</th><th>line</th><th>outcome</th></tr>");
            for s in &r.steps {
                let outcome = match &s.status {
                    StepStatus::Passed => "<span class=\"pass\">passed</span>".to_string(),
                    StepStatus::Skipped => "skipped".to_string(),
                    StepStatus::Failed(f) => format!(
                        "<div class=\"expected\"><b>expected</b> {}</div><div class=\"seen\"><b>seen</b> {}</div>",
                        html_escape(&f.expected),
                        if f.seen.is_empty() {
                            "nothing".to_string()
                        } else {
                            f.seen
                                .iter()
                                .map(|x| html_escape(x))
                                .collect::<Vec<_>>()
                                .join("<br>")
                        }
                    ),
                };
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td><code>{}</code></td><td>{}:{}</td><td>{outcome}</td></tr>",
                    s.index, s.name, s.line, s.column
                );
            }
            out.push_str("</table>");
        }
        if !r.transcript.is_empty() {
            out.push_str("<div><b>Activities</b> (→ to the bot, ← from the bot)</div>");
            for a in &r.transcript {
                let from_bot = a["from"]["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("28:"));
                let who = a["from"]["name"].as_str().unwrap_or_default();
                let _ = write!(
                    out,
                    "<div class=\"act\"><span class=\"dir\">{}</span><div class=\"bubble {}\"><div class=\"kind\">{} · {}</div>{}</div></div>",
                    if from_bot { "←" } else { "→" },
                    if from_bot { "from" } else { "to" },
                    html_escape(who),
                    html_escape(a["timestamp"].as_str().unwrap_or_default()),
                    html_escape(&summarize_activity(a))
                );
            }
        }
        if !r.bot_output.trim().is_empty() {
            let _ = write!(
                out,
                "<div><b>Bot output</b></div><pre>{}</pre>",
                html_escape(&r.bot_output)
            );
        }
        out.push_str("</details>");
    }
    out.push_str("</body></html>\n");
    out
}

pub fn write_html(path: &Path, results: &[ScenarioResult], seed: Option<u64>) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, html(results, seed))
}

/// A file name from a scenario name: lowercase letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "scenario".into() } else { s }
}

/// One `.transcript` (a JSON array of activities) per scenario, for the Bot Framework Emulator.
pub fn write_transcripts(dir: &Path, results: &[ScenarioResult]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut used = std::collections::HashSet::new();
    for r in results {
        let mut name = slug(&r.name);
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{}-{n}", slug(&r.name));
            n += 1;
        }
        let text = serde_json::to_string_pretty(&r.transcript).map_err(err_io)?;
        std::fs::write(dir.join(format!("{name}.transcript")), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::run::{Failure, StepResult};
    use std::time::Duration;

    fn result(name: &str, failed: bool) -> ScenarioResult {
        ScenarioResult {
            name: name.into(),
            file: "scenarios/x.yaml".into(),
            duration: Duration::from_millis(1500),
            error: None,
            steps: vec![StepResult {
                index: 1,
                name: "expect_message",
                line: 4,
                column: 5,
                status: if failed {
                    StepStatus::Failed(Failure {
                        expected: "a <welcome> & more".into(),
                        seen: vec!["\"hello\"".into()],
                    })
                } else {
                    StepStatus::Passed
                },
                duration: Duration::ZERO,
            }],
            transcript: vec![
                serde_json::json!({"type": "message", "text": "hello", "from": {"id": "28:b"}}),
            ],
            bot_output: String::new(),
        }
    }

    #[test]
    fn failures_show_expected_seen_and_activities() {
        let text = scenario_text(&result("Opt out", true), Style { colour: false });
        assert!(text.contains("FAIL  Opt out"), "{text}");
        assert!(text.contains("expected: a <welcome> & more"), "{text}");
        assert!(text.contains("seen:     \"hello\""), "{text}");
        assert!(text.contains("← message: \"hello\""), "{text}");
        assert_eq!(
            summary_line(&[result("a", false), result("b", true)]),
            "1 passed, 1 failed"
        );
    }

    #[test]
    fn the_html_report_escapes_and_opens_failures() {
        let page = html(
            &[
                result("<script>alert(1)</script>", false),
                result("c", true),
            ],
            Some(7),
        );
        assert!(page.starts_with("<!doctype html>"));
        assert!(!page.contains("<script>"), "names are escaped");
        assert!(page.contains("&lt;script&gt;"));
        assert!(
            page.contains("1 passed</span>, <span class=\"fail\">1 failed"),
            "{page}"
        );
        assert!(page.contains("seed 7"));
        assert!(page.contains("<details open>"), "failures are open");
        assert!(
            page.contains("a &lt;welcome&gt; &amp; more"),
            "expected is shown, escaped"
        );
    }

    #[test]
    fn junit_is_escaped_and_counts_failures() {
        let xml =
            String::from_utf8(junit_xml(&[result("a & b", false), result("c", true)]).unwrap())
                .unwrap();
        assert!(xml.contains(r#"tests="2" failures="1""#), "{xml}");
        assert!(xml.contains("a &amp; b"), "{xml}");
        assert!(xml.contains("&lt;welcome&gt;"), "{xml}");
        assert_eq!(
            slug("Personal install → welcome!"),
            "personal-install-welcome"
        );
    }
}
