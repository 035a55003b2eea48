// Outside business hours the widget's header says when the team is back, and passes axe.
// Usage: node widget-hours.mjs <server-url> <artifacts-dir> <expected next opening>
import { launch, openPage } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, nextOpen] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });

const browser = await launch();
try {
  const page = await openPage(browser, { width: 420, height: 760 });
  await page.goto(`${serverUrl}/`);
  await page.locator('[data-sb="launcher"]').click();
  const status = page.locator('[data-sb="status"]');
  await status.filter({ hasText: `team back ${nextOpen}` }).waitFor({ timeout: 10000 });
  assert.match(await status.textContent(), /^Online · team back /, 'the bot is there; the team is not');
  await expectAccessible(page, 'widget outside business hours');
  console.log('browser widget hours test passed');
} finally {
  await browser.close();
}
