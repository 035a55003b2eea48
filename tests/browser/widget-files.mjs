// A widget customer attaches a photo (and a file that is no photo), sees the thumbnail and the
// refusal; the agent sees the photo in the panel and replies with a PDF from the reply form; the
// customer downloads it.
// Usage: node widget-files.mjs <server-url> <artifacts-dir> <png-path> <pdf-path> <agent-email> <password>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, pngPath, pdfPath, agentEmail, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const page = await openPage(browser, { width: 420, height: 760 });
  const w = (name) => page.locator(`[data-sb="${name}"]`);
  await page.goto(`${serverUrl}/`);
  await w('launcher').click();

  step('a photo goes up with the paperclip and comes back as a thumbnail');
  await w('file-input').setInputFiles({ name: 'receipt.png', mimeType: 'image/png', buffer: fs.readFileSync(pngPath) });
  const thumbnail = w('file-image');
  await thumbnail.waitFor({ timeout: 15000 });
  await page.waitForFunction(() => {
    const host = document.querySelector('#switchboard-widget');
    const image = host && host.shadowRoot.querySelector('[data-sb="file-image"]');
    return image && image.src.startsWith('blob:') && image.complete && image.naturalWidth === 24;
  }, null, { timeout: 15000 });
  assert.equal(await thumbnail.getAttribute('alt'), 'receipt.png');

  step('a program named like a PDF is refused with the reason');
  await w('file-input').setInputFiles({ name: 'invoice.pdf', mimeType: 'application/pdf', buffer: Buffer.from('MZ\x90\x00 a program') });
  const refusal = w('error').filter({ hasText: 'not an accepted type' });
  await refusal.waitFor({ timeout: 15000 });
  await expectAccessible(page, 'widget with a sent photo and a refused file');
  await page.screenshot({ path: path.join(artifacts, 'widget-files.png') });

  step('the agent sees the photo and replies with a PDF from the reply form');
  const conversation = await page.evaluate(async (server) => {
    const key = Object.keys(localStorage).find((k) => k.endsWith(':token'));
    const res = await fetch(server + '/webchat/conversations', { headers: { Authorization: 'Bearer ' + localStorage.getItem(key) } });
    return (await res.json()).conversations[0].id;
  }, serverUrl);
  const agent = await openPage(browser, { width: 1280, height: 900 });
  await signIn(agent, serverUrl, agentEmail, password);
  await agent.goto(`${serverUrl}/panel/conversations/${conversation}`);
  const preview = agent.locator('img[alt="receipt.png"]');
  await preview.waitFor({ timeout: 15000 });
  // Attached before its bytes arrive: wait until the browser has decoded it.
  await agent.waitForFunction((image) => image.complete, await preview.elementHandle(), { timeout: 15000 });
  assert.equal(await preview.evaluate((image) => image.naturalWidth), 24, 'the photo shows in the panel');
  await agent.locator('#reply-file').setInputFiles(pdfPath);
  await agent.locator('[data-test="reply-text"]').fill('Here are the steps.');
  await expectAccessible(agent, 'conversation page with a file to send');
  await agent.locator('[data-test="reply-submit"]').click();
  const sent = agent.locator('[data-test="message"][data-sender="agent"]').filter({ hasText: 'Here are the steps.' });
  await sent.waitFor({ timeout: 20000 });
  await sent.getByText('steps.pdf').first().waitFor({ timeout: 5000 }).catch(async () => {
    throw new Error(`the reply shows no file: ${await sent.innerText()}`);
  });

  step("the agent's PDF arrives as a chip and downloads");
  const chip = w('file').filter({ hasText: 'steps.pdf' });
  await chip.waitFor({ timeout: 30000 });
  const [download] = await Promise.all([page.waitForEvent('download'), chip.click()]);
  assert.equal(download.suggestedFilename(), 'steps.pdf');
  const saved = await download.path();
  assert.deepEqual(fs.readFileSync(saved), fs.readFileSync(pdfPath), 'the bytes the agent sent');
  console.log('browser widget files test passed');
} finally {
  await browser.close();
}
