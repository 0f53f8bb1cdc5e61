"""Themes and the security boundary in a real Chromium: light and dark themes, and hostile web
content through every render path (Notebook 7 runs the quickstart in test_quickstart_browser.py).

- In JupyterLab Light and Dark, a finished panel, its answer table and a ``--no-widget`` run are
  screenshot (``theme-light.png``, ``theme-dark.png``, for the README); their text reads well on
  the output background (WCAG contrast >= 4.5) and their borders and links take the theme's
  colours (JupyterLab CSS variables), so they change with it.
- The emulator's hostile fixture goes through the widget panel, the HTML view, the DataFrames,
  the text and HTML displays of a result, a batch with a failing row and a failed run's
  traceback, while the page is watched for dialogs, console messages, page errors, pop-ups and
  requests carrying the payloads' marker; afterwards the outputs hold only http(s) links, no
  active elements or event handlers, and the layout is intact. A separate test injects known-bad
  markup into an output area to show that this watch and these checks do catch it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from labserver import LabServer
from pages import (
    LIVE_PANEL_RUNNING,
    RUN_SECONDS,
    code_cell,
    open_notebook,
    run_all,
    show,
    use_theme,
    wait_idle,
    write_notebook,
)
from playwright.sync_api import ConsoleMessage, Dialog, Page, Request, expect

pytestmark = pytest.mark.browser

MARKER = "PNB-XSS"
# How a script payload of the fixture reads once it is shown as text.
SHOWN_PAYLOAD = f'alert("{MARKER}")'
# WCAG 2 minimum contrast for body text (level AA).
MIN_CONTRAST = 4.5

# -- themes ------------------------------------------------------------------------------------

THEME_CELLS = [
    "%load_ext parallel_nb",
    "%%parallel core gdp\n"
    "What was the GDP of France in 2023?\n"
    "---\n"
    "gdp: nominal GDP in current US dollars\n"
    "gdp_growth: real GDP growth over the year, in percent",
    "gdp.output_df",
    '%%parallel lite --no-widget\n{"company": "Stripe"}\n---\n'
    "founded (integer): the year the company was founded\n"
    "headquarters: the city of its head office",
]

# Colours as the page computes them: the panels' text, the background it is drawn on (every
# background from the output up to the root, innermost first, to be composited), and the
# border and link colours of the panels beside what the theme's variables resolve to.
THEME_COLOURS = """() => {
  const panels = [...document.querySelectorAll(
    '.jp-OutputArea-output .parallel-nb-run, .jp-OutputArea-output .parallel-nb-result')];
  const backgrounds = element => {
    const found = [];
    for (let node = element; node; node = node.parentElement) {
      found.push(getComputedStyle(node).backgroundColor);
    }
    return found;
  };
  const resolved = (property, variable) => {
    const probe = document.createElement('div');
    probe.style.setProperty(property, `var(${variable})`);
    document.querySelector('.jp-OutputArea-output').appendChild(probe);
    const value = getComputedStyle(probe).getPropertyValue(property);
    probe.remove();
    return value;
  };
  const row = document.querySelector('.parallel-nb-result tr[style*="border-bottom"]');
  const link = document.querySelector('.parallel-nb-result a[href], .parallel-nb-run a[href]');
  const output = panel => panel.closest('.jp-OutputArea-output');
  return {
    panels: panels.map(panel => ({
      kind: panel.className,
      text: getComputedStyle(panel).color,
      backgrounds: backgrounds(output(panel)),
    })),
    linkBackgrounds: link && backgrounds(output(link)),
    border: row && getComputedStyle(row).borderBottomColor,
    link: link && getComputedStyle(link).color,
    themeBorder: resolved('border-bottom-color', '--jp-border-color2'),
    themeLink: resolved('color', '--jp-content-link-color'),
  };
}"""


@dataclass(frozen=True)
class Rgba:
    red: float
    green: float
    blue: float
    alpha: float = 1.0

    @classmethod
    def parse(cls, css: str) -> Rgba:
        """A computed colour (``rgb(...)`` / ``rgba(...)``, as Chromium reports them)."""
        match = re.fullmatch(r"rgba?\(([^)]*)\)", css.strip())
        if match is None:
            raise ValueError(f"cannot read the computed colour {css!r}: expected rgb() or rgba()")
        numbers = [float(part) for part in re.split(r"[,\s/]+", match.group(1).strip())]
        return cls(*numbers)

    def over(self, below: Rgba) -> Rgba:
        """This colour painted over an opaque ``below``."""
        mix = [
            a * self.alpha + b * (1 - self.alpha) for a, b in zip(self.rgb, below.rgb, strict=True)
        ]
        return Rgba(*mix)

    @property
    def rgb(self) -> tuple[float, float, float]:
        return (self.red, self.green, self.blue)

    def luminance(self) -> float:
        """WCAG 2 relative luminance."""

        def linear(channel: float) -> float:
            c = channel / 255
            return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (linear(c) for c in self.rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(text: Rgba, background: Rgba) -> float:
    """WCAG 2 contrast ratio of opaque ``background`` and ``text`` drawn on it."""
    lighter, darker = sorted(
        (text.over(background).luminance(), background.luminance()), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def backdrop(backgrounds: list[str]) -> Rgba:
    """What an element's background looks like: its ancestors' backgrounds composited, from
    the page's (white when none is set, as in a browser) inwards."""
    colour = Rgba(255, 255, 255)
    for css in reversed(backgrounds):
        colour = Rgba.parse(css).over(colour)
    return colour


def theme_colours(page: Page) -> dict[str, Any]:
    colours = page.evaluate(THEME_COLOURS)
    assert colours["panels"], "no parallel-nb panel or result found in the outputs"
    assert colours["border"] and colours["link"], f"no table border or link found: {colours}"
    return colours


def assert_readable(colours: dict[str, Any], theme: str) -> None:
    """The panels' text and their links read well on the output background (WCAG AA)."""
    drawn = [(panel["kind"], panel["text"], panel["backgrounds"]) for panel in colours["panels"]]
    drawn.append(("link", colours["link"], colours["linkBackgrounds"]))
    for kind, text, backgrounds in drawn:
        ratio = contrast(Rgba.parse(text), backdrop(backgrounds))
        assert ratio >= MIN_CONTRAST, (
            f"{kind} text {text} on the output background has contrast {ratio:.2f} in {theme}, "
            f"below {MIN_CONTRAST}"
        )


@pytest.fixture
def restore_light_theme(page: Page) -> Iterator[None]:
    # The theme is a server-side setting: later tests on this server would open in Dark.
    yield
    if page.evaluate("() => !!window.jupyterapp"):
        use_theme(page, "JupyterLab Light")


def test_panels_follow_the_light_and_dark_themes(
    page: Page, lab_server: LabServer, screenshot_dir: Path, restore_light_theme: None
) -> None:
    name = write_notebook(lab_server, "themes.ipynb", THEME_CELLS)
    open_notebook(page, lab_server, name)
    use_theme(page, "JupyterLab Light")
    run_all(page)
    last = code_cell(page, "--no-widget").locator(".jp-OutputArea")
    expect(last).to_contain_text("headquarters", timeout=RUN_SECONDS * 1000)
    wait_idle(page)
    first = code_cell(page, "%%parallel core gdp")
    expect(first.locator(".jp-OutputArea")).to_contain_text("completed")
    expect(page.locator(".jp-Notebook")).not_to_contain_text("Traceback")

    seen: dict[str, dict[str, Any]] = {}
    for theme, picture in (("JupyterLab Light", "theme-light"), ("JupyterLab Dark", "theme-dark")):
        use_theme(page, theme)
        seen[theme] = colours = theme_colours(page)
        show(first, page, screenshot_dir / f"{picture}.png")
        assert_readable(colours, theme)
        # The panel's colours are the theme's own, not the fallbacks written beside them.
        assert colours["border"] == colours["themeBorder"], colours
        assert colours["link"] == colours["themeLink"], colours

    light, dark = seen["JupyterLab Light"], seen["JupyterLab Dark"]
    assert light["border"] != dark["border"] and light["link"] != dark["link"], (light, dark)
    assert light["panels"][0]["text"] != dark["panels"][0]["text"], (light, dark)


# -- hostile content ---------------------------------------------------------------------------

COMPANY_FIELDS = (
    "name: the company's name\n"
    "website: its website\n"
    "founders (list): who founded it\n"
    "ceo: the current CEO\n"
    "description: what it does"
)
HOSTILE_INPUT = '{"company": "emulator: hostile"}'
# One cell per render path; each is found again by its first line (unique in the notebook).
HOSTILE_CELLS = {
    "%load_ext parallel_nb": "",
    "%%parallel core hostile": f"\n{HOSTILE_INPUT}\n---\n{COMPANY_FIELDS}",
    "%%parallel core --no-widget --refresh": f"\n{HOSTILE_INPUT}\n---\n{COMPANY_FIELDS}",
    "hostile.output_df": "",
    "hostile.basis_df": "",
    "print(hostile)": "",
    "# the result's own display": "\nhostile",
    "import pandas as pd": (
        "\n# Row labels come from the user's index, which may come from the web too."
        '\nrows = pd.DataFrame({"company": ["emulator: hostile", "ACME (emulator: hostile-fail)"]},'
        """\n    index=['<img src=x onerror=alert("PNB-XSS")>', "\\u202eevil"])"""
    ),
    "%%parallel core enriched --over rows": f"\n---\n{COMPANY_FIELDS}",
    "# the enriched frame": "\nenriched",
    "%%parallel lite": "\nACME (emulator: hostile-fail)",
}
# Cells whose output shows a payload as text (an empty output would pass every inertness check).
SHOWS_PAYLOAD = [
    "%%parallel core hostile",
    "%%parallel core --no-widget --refresh",
    "hostile.output_df",
    "hostile.basis_df",
    "print(hostile)",
    "# the result's own display",
    "%%parallel core enriched --over rows",
    "# the enriched frame",
    "%%parallel lite",
]


@dataclass
class Watch:
    """Everything the page did that a payload could have caused."""

    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    popups: list[str] = field(default_factory=list)

    @classmethod
    def on(cls, page: Page) -> Watch:
        watch = cls()
        page.on("dialog", watch._dialog)
        page.on("console", watch._console)
        page.on("pageerror", lambda error: watch.errors.append(str(error)))
        page.on("popup", lambda popup: watch.popups.append(popup.url))
        page.context.on("request", watch._request)
        return watch

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _request(self, request: Request) -> None:
        if MARKER in request.url:
            self.requests.append(request.url)

    def caught(self) -> dict[str, list[str]]:
        """What a payload did: any dialog, pop-up, marked request or page error, and the console
        messages that carry the marker or report an error (JupyterLab logs debug lines of its
        own; a renderer that hostile markup broke would log an error)."""
        console = [m for m in self.console if MARKER in m or m.startswith("error:")]
        found = {
            "dialogs": self.dialogs,
            "popups": self.popups,
            "requests": self.requests,
            "console": console,
            "errors": self.errors,
        }
        return {kind: items for kind, items in found.items() if items}


# Everything in the outputs a browser would run or follow, or that breaks the layout.
INSPECT_OUTPUTS = """() => {
  const problems = [];
  const outputs = [...document.querySelectorAll('.jp-OutputArea')];
  for (const area of outputs) {
    for (const a of area.querySelectorAll('a[href]')) {
      const href = a.getAttribute('href');
      if (!/^https?:\\/\\/[^\\/]/i.test(href) || !['http:', 'https:'].includes(a.protocol)) {
        problems.push(`link to ${href}`);
      }
    }
    for (const el of area.querySelectorAll('script, iframe, frame, object, embed')) {
      problems.push(`<${el.tagName.toLowerCase()}> element`);
    }
    for (const el of area.querySelectorAll('*')) {
      for (const attr of el.attributes) {
        if (attr.name.toLowerCase().startsWith('on')) {
          problems.push(`<${el.tagName.toLowerCase()} ${attr.name}=...>`);
        }
      }
    }
  }
  const notebook = document.querySelector('.jp-Notebook');
  const page = notebook.getBoundingClientRect();
  for (const out of document.querySelectorAll('.jp-OutputArea-output')) {
    const box = out.getBoundingClientRect();
    const shown = out.textContent.trim().slice(0, 60);
    if (box.left < page.left - 1 || box.right > page.right + 1) {
      problems.push(`an output reaches out of the notebook: ${shown}`);
    }
    if (out.scrollWidth <= out.clientWidth + 1) continue;
    // JupyterLab scrolls a DataFrame with many columns inside its output: that is its normal
    // layout. A single cell wider than the output is not (an unbroken word stretched it).
    const cells = [...out.querySelectorAll('table.dataframe td, table.dataframe th')];
    const widest = Math.max(0, ...cells.map(cell => cell.getBoundingClientRect().width));
    if (cells.length === 0 || widest > out.clientWidth) {
      problems.push(`an output ${out.scrollWidth}px wide in ${out.clientWidth}px: ${shown}`);
    }
  }
  if (notebook.scrollWidth > notebook.clientWidth + 1) {
    problems.push(`the notebook scrolls sideways (${notebook.scrollWidth}px)`);
  }
  for (const el of [document.documentElement, document.body, notebook]) {
    if (getComputedStyle(el).direction !== 'ltr') {
      problems.push(`${el.tagName.toLowerCase()} turned ${getComputedStyle(el).direction}`);
    }
  }
  const links = document.querySelectorAll('.jp-OutputArea a[href]').length;
  return {problems, outputs: outputs.length, links};
}"""


@dataclass(frozen=True)
class Inspection:
    problems: list[str]
    links: int


def inspect_outputs(page: Page) -> Inspection:
    found = page.evaluate(INSPECT_OUTPUTS)
    assert found["outputs"] > 0, "no output area found to inspect"
    return Inspection(found["problems"], found["links"])


def test_hostile_content_is_inert_in_every_render_path(
    page: Page, lab_server: LabServer, screenshot_dir: Path
) -> None:
    sources = [first + rest for first, rest in HOSTILE_CELLS.items()]
    name = write_notebook(lab_server, "hostile.ipynb", sources)
    watch = Watch.on(page)
    open_notebook(page, lab_server, name)
    run_all(page)

    widget_cell = code_cell(page, "%%parallel core hostile")
    page.wait_for_function(
        LIVE_PANEL_RUNNING, arg=widget_cell.element_handle(), timeout=RUN_SECONDS * 1000
    )
    show(widget_cell, page, screenshot_dir / "hostile-running.png")
    # The failed run is last, so "Run All" gets there only once everything else has run.
    failed = code_cell(page, "%%parallel lite").locator(".jp-OutputArea")
    expect(failed).to_contain_text("RunFailed", timeout=RUN_SECONDS * 1000)
    wait_idle(page)

    for first_line in SHOWS_PAYLOAD:
        output = code_cell(page, first_line).locator(".jp-OutputArea")
        expect(output).to_contain_text(SHOWN_PAYLOAD)
    batch = code_cell(page, "%%parallel core enriched").locator(".jp-OutputArea")
    expect(batch).to_contain_text("failed")
    expect(code_cell(page, "# the enriched frame").locator(".jp-OutputArea table")).to_be_visible()
    for first_line in HOSTILE_CELLS:
        cell = code_cell(page, first_line)
        show(cell, page, screenshot_dir / f"hostile-{_slug(first_line)}.png")

    inspection = inspect_outputs(page)
    assert inspection.problems == []
    # The fixture's http(s) citations are links, so the link check above had links to check.
    assert inspection.links > 0
    assert watch.caught() == {}


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# Known-bad markup, as a payload that escaped would leave it: a script that logs the marker,
# one that opens a dialog, an image fetched from a marked URL, a javascript: link and a word
# too wide for the output.
INJECTED = (
    f"<img src=x onerror='console.log(\"{MARKER}\")'>"
    f"<img src=x onerror='alert(\"{MARKER}\")'>"
    f'<img src="http://127.0.0.1:9/{MARKER}.png">'
    f'<a href="javascript:void(0)">click</a>'
    f'<div style="width:5000px">wide</div>'
)


def test_the_watch_and_the_checks_catch_injected_markup(page: Page, lab_server: LabServer) -> None:
    name = write_notebook(lab_server, "injected.ipynb", ["print('an output to attack')"])
    watch = Watch.on(page)
    open_notebook(page, lab_server, name)
    run_all(page)
    output = page.locator(".jp-OutputArea-output").first
    expect(output).to_contain_text("an output to attack", timeout=RUN_SECONDS * 1000)
    assert inspect_outputs(page).problems == [] and watch.caught() == {}

    output.evaluate(
        "(element, markup) => element.insertAdjacentHTML('beforeend', markup)", INJECTED
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-OutputArea img')].every(i => i.complete)"
    )

    problems = inspect_outputs(page).problems
    assert sum("onerror" in p for p in problems) == 2, problems
    assert "link to javascript:void(0)" in problems, problems
    assert any(re.match(r"an output \d{4}px wide", p) for p in problems), problems
    caught = watch.caught()
    assert caught.keys() == {"dialogs", "console", "requests"}, caught
    assert caught["dialogs"] == [f"alert: {MARKER}"]
