// The Documents page: pending files with previews, approved and rejected by a reviewer, at
// desktop and phone widths, passing axe.
// Usage: node documents.mjs <server-url> <artifacts-dir> <email> <password>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const page = await openPage(browser, { width: 1280, height: 900 });
  await signIn(page, serverUrl, email, password);
  const t = (name) => page.locator(`[data-test="${name}"]`);

  step('the dashboard counts the documents to review and leads to them');
  assert.equal(await t('count-documents_pending').textContent(), '2');
  await t('documents-pending-link').click();
  await page.waitForURL(/\/panel\/documents\?state=pending/);
  const cards = t('document');
  assert.equal(await cards.count(), 2);
  // The preview may still be loading (a busy machine): wait for it, then look at it.
  const previewed = await cards.nth(0).locator('[data-test="document-image"]').evaluate((img) => (img.complete
    ? img.naturalWidth
    : new Promise((done) => img.addEventListener('load', () => done(img.naturalWidth), { once: true }))));
  assert.equal(previewed, 24, 'the photo is previewed');
  assert.equal(await cards.nth(1).locator('[data-test="document-file"]').textContent(), 'invoice-2026-11.pdf');
  for (const width of [1280, 320]) {
    await page.setViewportSize({ width, height: width === 320 ? 640 : 900 });
    await expectAccessible(page, `documents page at ${width}px`);
    await expectNoSidewaysScroll(page, `documents page at ${width}px`);
    await page.screenshot({ path: path.join(artifacts, `documents-${width}.png`), fullPage: true });
  }
  await page.setViewportSize({ width: 1280, height: 900 });

  step('the photo is approved as a proof of payment');
  const photo = cards.nth(0);
  await photo.getByLabel('Type').selectOption('proof_of_payment');
  await photo.locator('[data-test="approve"]').click();
  await t('flash').filter({ hasText: 'Document approved' }).waitFor();

  step('rejecting needs a reason; the PDF is rejected as an invoice');
  await page.goto(`${serverUrl}/panel/documents?state=pending`);
  const pdf = t('document');
  assert.equal(await pdf.count(), 1);
  await pdf.getByLabel('Type').selectOption('invoice');
  await pdf.locator('[data-test="reject"]').click();
  await page.getByText('a rejection needs a reason').waitFor();
  await page.goto(`${serverUrl}/panel/documents?state=pending`);
  await t('document').getByLabel('Type').selectOption('invoice');
  await t('document').getByLabel(/^Reason/).fill('the amount does not match');
  await t('document').locator('[data-test="reject"]').click();
  await t('flash').filter({ hasText: 'Document rejected' }).waitFor();

  step('the decided are listed with who decided and why');
  await page.goto(`${serverUrl}/panel/documents`);
  const states = await t('document').evaluateAll((all) => all.map((d) => d.dataset.state));
  assert.deepEqual(states, ['rejected', 'approved'], 'the newest decision first');
  assert.equal(await t('document-note').textContent(), 'the amount does not match');
  await expectAccessible(page, 'documents page with decisions');
  await page.screenshot({ path: path.join(artifacts, 'documents-decided.png'), fullPage: true });
  console.log('browser documents test passed');
} finally {
  await browser.close();
}
