// Debian's Chromium, headless, with nothing that would reach outside this machine.
import { chromium } from 'playwright-core';

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
}

/** A page in a fresh context (CSP bypassed so axe can be injected); a script error fails the run. */
export async function openPage(browser, viewport) {
  const context = await browser.newContext({ viewport, bypassCSP: true });
  const page = await context.newPage();
  page.on('pageerror', (error) => {
    console.error('page error:', error);
    process.exitCode = 1;
  });
  return page;
}

/**
 * Runs `check` (async allowed) in the page every `every` ms until it returns something truthy;
 * throws `what` after `timeout` ms. (`page.waitForFunction` takes an async check's promise as
 * truthy at once.)
 */
export async function waitUntilInPage(page, what, check, arg, { timeout = 10000, every = 200 } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await page.evaluate(check, arg)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/** A widget customer on the demo page who asks for a person. */
export async function customerAsksForAPerson(browser, serverUrl) {
  const customer = await openPage(browser, { width: 420, height: 760 });
  await customer.goto(`${serverUrl}/`);
  await customer.locator('[data-sb="launcher"]').click();
  await customer.locator('[data-sb="input"]').fill('I want to talk to a person');
  await customer.locator('[data-sb="send"]').click();
  return customer;
}

/** Signs an agent in to the panel and waits for the dashboard. */
export async function signIn(page, serverUrl, email, password) {
  await page.goto(`${serverUrl}/panel/login`);
  await page.fill('#login-email', email);
  await page.fill('#login-password', password);
  await page.click('[data-test="login-submit"]');
  await page.waitForURL(`${serverUrl}/panel/`);
}
