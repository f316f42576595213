import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * Headless Chromium for tests that drive a web page as a person would (the Temporal Web UI).
 * playwright-core downloads no browser: `npm test` (scripts/run.mjs) installs Debian's
 * `chromium` and exports CHROMIUM_PATH. The browser stays offline except for the pages a test
 * opens: no component updates, sync, background fetches or QUIC.
 */

export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox', // we run as root in CI containers, where Chromium's sandbox cannot start
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
}

/**
 * Launches headless Chromium. Playwright gives every launch a fresh temporary profile
 * (user-data dir) and removes it on close, so runs never share cookies or storage.
 */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  try {
    return await chromium.launch({ executablePath, args: [...CHROMIUM_ARGS], headless: true, timeout: 60_000 });
  } catch (error) {
    throw new Error(
      `cannot launch Chromium at ${executablePath} (${(error as Error).message.split('\n')[0]}). ` +
        'Run the tests through `npm test`, which installs it, or set CHROMIUM_PATH.',
      { cause: error },
    );
  }
}

/** A fresh context (own cookies and storage) and page, with a desktop-sized viewport. */
export async function openPage(browser: Browser): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  return { context, page };
}

/** Closes the browser, ignoring a browser that is already gone (a crash is reported elsewhere). */
export async function closeBrowser(browser: Browser | undefined): Promise<void> {
  await browser?.close().catch(() => undefined);
}

/**
 * Saves a full-page screenshot as `<dir>/<name>.png` for a person to look at after a failure;
 * `dir` defaults to `$AUDITFLOW_SCREENSHOT_DIR` or `<tmp>/auditflow-screenshots` (outside the run's
 * directory, which global teardown removes). Never throws: a screenshot is evidence,
 * not part of the test.
 */
export async function saveScreenshot(page: Page, name: string, dir = screenshotDir()): Promise<string | undefined> {
  const file = path.join(dir, `${name}.png`);
  try {
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
    return file;
  } catch {
    return undefined;
  }
}

function screenshotDir(): string {
  return process.env.AUDITFLOW_SCREENSHOT_DIR ?? path.join(tmpdir(), 'auditflow-screenshots');
}
