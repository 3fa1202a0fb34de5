"""Draw the README's console screenshots: docs/console-trigger.png, docs/console-execution.png.

    .venv/bin/python scripts/console_screenshots.py [--out docs]

Starts a scratch daemon (embedded PostgreSQL in a temporary directory) with the example
workflows, fires the nightly report by hand and lets a minute-cron run, then photographs
the pages in Debian's Chromium (``apt-get install chromium``) through Playwright.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "screenshot-token"  # noqa: S105 - a scratch daemon's only token


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(base: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("the scratch daemon did not become ready")


async def shoot(base: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1200, "height": 900})
        await page.goto(f"{base}/ui/login")
        await page.get_by_label("API token").fill(TOKEN)
        await page.get_by_role("button", name="Log in").click()
        await page.goto(f"{base}/ui/triggers/nightly-report/by-hand")
        await page.get_by_label("Input (a JSON object").fill('{"rows": "many"}')
        await page.get_by_role("button", name="Run now").click()
        await page.screenshot(path=str(out / "console-run-now.png"), full_page=True)
        await page.get_by_label("Input (a JSON object").fill('{"rows": 1200, "threshold": 1000}')
        await page.get_by_label("Reason").fill("re-run after the upstream fix")
        await page.get_by_role("button", name="Run now").click()
        await page.wait_for_url("**/ui/executions/*")
        for _ in range(50):
            await page.reload()
            if "SUCCESS" in await page.locator("#run-status").inner_text():
                break
            await asyncio.sleep(0.2)
        await page.screenshot(path=str(out / "console-execution.png"), full_page=True)
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="triggerd-shots-"))
    port = _free_port()
    config = state / "triggerd.toml"
    examples = ROOT / "config" / "examples"
    config.write_text(
        f'[http]\nhost = "127.0.0.1"\nport = {port}\n[api]\ntoken = "{TOKEN}"\n'
        f'[daemon]\nstate_dir = "{state / "state"}"\n'
        f'definitions = ["{examples / "nightly-report.yaml"}", "{examples / "github-push.yaml"}"]\n'
        '[log]\nlevel = "warning"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERD_")}
    daemon = subprocess.Popen([sys.executable, "-m", "triggerd", "--config", str(config), "run"],
                              env=env, cwd=ROOT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        asyncio.run(shoot(base, out))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)
    print(f"wrote {out / 'console-run-now.png'} and {out / 'console-execution.png'}")


if __name__ == "__main__":
    main()
