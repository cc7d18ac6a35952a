//! The web dashboard (`/dashboard`) of a three-node lab in a real headless browser
//! (Debian's `chromium`): the DOM its script built shows every member, one leader and
//! the event timeline; a screenshot is a real, non-blank PNG of the window's size; and
//! after the primary is killed, a surviving node's dashboard shows the new leader and
//! its promotion on the timeline. The page served by an origin whose API fails shows
//! the "node unreachable" banner.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use raftgres_tests::lab::{wait_for, Lab};

use crate::writes::with_logs;

const HEAL: Duration = Duration::from_secs(60);
/// The browser is killed (with its whole process group) after this long.
const BROWSER_TIMEOUT: &str = "60s";
/// Virtual time the page runs for before the DOM or the screenshot is taken: a few polls.
const PAGE_TIME_MS: &str = "4000";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;

/// Headless Chromium runs with a throwaway profile in `dir`, its output kept there.
struct Browser {
    dir: tempfile::TempDir,
}

impl Browser {
    fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("raftgres-dashboard-").tempdir()?;
        Ok(Self { dir })
    }

    /// Runs chromium headless on `url` with `args`, bounded by [`BROWSER_TIMEOUT`]
    /// (coreutils' `timeout` kills the browser's whole process group); its stdout.
    fn run(&self, url: &str, args: &[&str]) -> anyhow::Result<String> {
        let profile = format!("--user-data-dir={}", self.dir.path().join("profile").display());
        let virtual_time = format!("--virtual-time-budget={PAGE_TIME_MS}");
        let out = Command::new("timeout")
            .args(["-k", "5s", BROWSER_TIMEOUT, "chromium", "--headless=new", "--no-sandbox", "--disable-gpu"])
            .args(["--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars", "--disable-dev-shm-usage"])
            .args([profile.as_str(), virtual_time.as_str()])
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .context("running chromium (apt-get install chromium; deploy/setup.sh does)")?;
        anyhow::ensure!(out.status.success(), "chromium on {url} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The DOM of `url` after its script ran (also kept as `last-dom.html`).
    fn dom(&self, url: &str) -> anyhow::Result<String> {
        let dom = self.run(url, &["--dump-dom"])?;
        std::fs::write(self.dir.path().join("last-dom.html"), &dom)?;
        Ok(dom)
    }

    /// A screenshot of `url` at WIDTH x HEIGHT, as `name` in the browser's directory.
    fn screenshot(&self, url: &str, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        let shot = format!("--screenshot={}", path.display());
        self.run(url, &[shot.as_str(), &format!("--window-size={WIDTH},{HEIGHT}")])?;
        Ok(path)
    }
}

fn dashboard_url(lab: &Lab, i: usize) -> String {
    format!("http://{}:{}/dashboard", lab.rest_host(i), lab.rest_port(i))
}

/// The rows of class `class` (`member` or `event`) of a dumped DOM, each up to its `</tr>`.
fn rows<'a>(dom: &'a str, class: &str) -> Vec<&'a str> {
    let start = format!("<tr class=\"{class}");
    dom.match_indices(&start).map(|(at, _)| dom[at..].split("</tr>").next().unwrap_or_default()).collect()
}

fn name_cell(name: &str) -> String {
    format!("<td class=\"name\">{name}</td>")
}

/// Checks that the dashboard DOM shows every member of `names`, exactly one leader row
/// (`leader`'s when given), and at least one event (one by `promoted` that mentions a
/// promotion, when given).
fn check_dom(dom: &str, names: &[String], leader: Option<&str>, promoted: Option<&str>) -> anyhow::Result<()> {
    let members = rows(dom, "member");
    for name in names {
        anyhow::ensure!(members.iter().any(|r| r.contains(&name_cell(name))), "{name} is not in the members table");
    }
    let leaders: Vec<_> = members.iter().filter(|r| r.contains("data-role=\"leader\"")).collect();
    anyhow::ensure!(leaders.len() == 1, "{} leader rows: {leaders:?}", leaders.len());
    if let Some(leader) = leader {
        anyhow::ensure!(leaders[0].contains(&name_cell(leader)), "the leader row is not {leader}'s: {}", leaders[0]);
    }
    let events = rows(dom, "event");
    anyhow::ensure!(!events.is_empty(), "no event on the timeline");
    if let Some(node) = promoted {
        let cell = format!("<td>{node}</td>");
        anyhow::ensure!(
            events.iter().any(|e| e.contains(&cell) && e.contains("promoted")),
            "no promotion of {node} on the timeline: {events:#?}"
        );
    }
    anyhow::ensure!(dom.contains("id=\"banner\" role=\"alert\" hidden"), "the unreachable banner shows");
    Ok(())
}

/// Checks that `path` is a WIDTH x HEIGHT PNG with more than a handful of colours.
fn check_screenshot(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("no screenshot at {}", path.display()))?;
    let mut reader = png::Decoder::new(file).read_info().context("not a PNG")?;
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).context("cannot decode the PNG")?;
    anyhow::ensure!((info.width, info.height) == (WIDTH, HEIGHT), "screenshot is {}x{}", info.width, info.height);
    let step = info.line_size / info.width as usize;
    let colours: std::collections::HashSet<&[u8]> = pixels[..info.buffer_size()].chunks(step).collect();
    anyhow::ensure!(colours.len() > 16, "the screenshot looks blank: {} colours", colours.len());
    Ok(())
}

/// Serves `page` at `/dashboard` on a free local port, and 503 on every other path (a
/// node whose API fails once the page is loaded); returns the port. The server thread
/// lives as long as the test process.
fn serve_page_only(page: String) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request_line = String::new();
            if BufReader::new(&stream).read_line(&mut request_line).is_err() {
                continue;
            }
            let answer = match request_line.split_whitespace().nth(1) {
                Some("/dashboard") => {
                    format!("HTTP/1.0 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\r\n{page}", page.len())
                }
                _ => "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_string(),
            };
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    Ok(port)
}

#[test]
fn dashboard_in_headless_chromium_shows_members_events_and_a_failover() -> anyhow::Result<()> {
    let lab = Lab::up(3)?;
    let browser = Browser::new()?;
    let names: Vec<String> = (0..3).map(|i| lab.name(i)).collect();
    let result = with_logs(&lab, || {
        let primary = lab.primary()?;
        let url = dashboard_url(&lab, primary);
        wait_for(HEAL, "the dashboard shows every member and one leader", || {
            check_dom(&browser.dom(&url)?, &names, Some(&names[primary]), None)
        })?;
        let shot = browser.screenshot(&url, "dashboard.png")?;
        check_screenshot(&shot).with_context(|| format!("screenshot {}", shot.display()))?;

        lab.kill(primary)?;
        let new = lab.wait_new_primary(primary, HEAL)?;
        let survivor = (0..3).find(|&i| i != primary && i != new).context("a third node")?;
        let url = dashboard_url(&lab, survivor);
        wait_for(HEAL, "a survivor's dashboard shows the new leader and its promotion", || {
            let survivors = [names[new].clone(), names[survivor].clone()];
            check_dom(&browser.dom(&url)?, &survivors, Some(&names[new]), Some(&names[new]))
        })?;
        let shot = browser.screenshot(&url, "after-failover.png")?;
        check_screenshot(&shot).with_context(|| format!("screenshot {}", shot.display()))?;

        let (status, page) = lab.rest(survivor, "GET", "/dashboard", "")?;
        anyhow::ensure!(status == 200, "GET /dashboard answered {status}");
        let port = serve_page_only(page)?;
        let dom = browser.dom(&format!("http://127.0.0.1:{port}/dashboard"))?;
        anyhow::ensure!(
            dom.contains("<p id=\"banner\" role=\"alert\">Node unreachable: /cluster answered 503</p>"),
            "no unreachable banner on a page whose node fails: {dom}"
        );
        Ok(())
    });
    if result.is_err() {
        eprintln!("the browser's files are kept in {}", browser.dir.keep().display());
    }
    result
}
