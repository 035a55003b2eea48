// An admin reads the Reports page of a seeded day: the summary, the chart drawn without any
// script or CDN, a filter, a CSV file; the page passes axe and reflows at phone width.
// Usage: node reports.mjs <server-url> <artifacts-dir> <admin-email> <admin-password> <day YYYY-MM-DD>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password, day] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const admin = await openPage(browser, { width: 1280, height: 900 });
  const t = (name) => admin.locator(`[data-test="${name}"]`);

  step('the Reports link leads to the page, and a custom day is chosen');
  await signIn(admin, serverUrl, email, password);
  await t('reports-link').click();
  await admin.waitForURL('**/panel/reports');
  await admin.selectOption('#r-range', 'custom');
  await admin.fill('#r-from', day);
  await admin.fill('#r-to', day);
  await admin.fill('#r-zone', 'UTC');
  await t('report-apply').click();
  await admin.waitForURL('**/panel/reports?**');

  step('the summary shows the seeded history');
  assert.equal(await t('report-conversations').innerText(), '4');
  assert.equal(await t('report-escalation-rate').innerText(), '50 %');
  assert.equal(await t('report-first-reply').innerText(), '3 min');
  const chart = admin.locator('svg.chart[role="img"]').first();
  assert.match(await chart.locator('title').first().textContent(), /Conversations per day/);
  assert.ok((await chart.locator('rect').count()) >= 1, 'the day has a bar');
  assert.match(await t('report-agent-row').first().innerText(), /Ann/);
  await expectAccessible(admin, 'reports page');
  await admin.screenshot({ path: path.join(artifacts, 'reports.png'), fullPage: true });

  step('a CSV file has the same numbers');
  const href = await t('csv-volume').getAttribute('href');
  const csv = await admin.evaluate((url) => fetch(url).then((r) => r.text()), href);
  assert.equal(csv.split('\r\n')[1], `${day},4,4,0,0,0`);

  step('a filter that matches nothing shows empty sections, still accessible');
  await admin.selectOption('#r-channel', 'telegram');
  await t('report-apply').click();
  await admin.waitForURL('**channel=telegram**');
  assert.equal(await t('report-conversations').innerText(), '0');
  await expectAccessible(admin, 'reports page with nothing to show');

  step('at phone width the page reflows');
  const phone = await openPage(browser, { width: 320, height: 740 });
  await signIn(phone, serverUrl, email, password);
  await phone.goto(`${serverUrl}/panel/reports?range=custom&from=${day}&to=${day}&zone=UTC`);
  await expectNoSidewaysScroll(phone, 'reports at 320 px');
  await expectAccessible(phone, 'reports at 320 px');
  await phone.screenshot({ path: path.join(artifacts, 'reports-phone.png'), fullPage: true });
  console.log('browser reports test passed');
} finally {
  await browser.close();
}
