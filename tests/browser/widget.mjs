// The web-chat widget in headless Chromium against a running server.
// Usage: node widget.mjs <server-url> <artifacts-dir>
// The browser reaches the server through a TCP relay this script controls, so a test can cut
// the network (existing connections dropped, new ones refused) and bring it back.
import { launch, openPage } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts] = process.argv.slice(2);
const server = new URL(serverUrl);
fs.mkdirSync(artifacts, { recursive: true });

/** A relay on a fixed local port that can be cut and restored. */
function relay() {
  const sockets = new Set();
  let listener;
  let port = 0;
  const listen = () =>
    new Promise((resolve) => {
      listener = net.createServer((client) => {
        const upstream = net.connect(Number(server.port), server.hostname);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('close', () => sockets.delete(s));
          s.on('error', () => s.destroy());
        }
        client.pipe(upstream).pipe(client);
      });
      listener.listen(port, '127.0.0.1', () => {
        port = listener.address().port;
        resolve();
      });
    });
  return {
    listen,
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    async cut() {
      const closed = new Promise((resolve) => listener.close(resolve));
      sockets.forEach((s) => s.destroy());
      await closed;
    },
  };
}

const step = (name) => console.log(`- ${name}`);

const link = relay();
await link.listen();
const browser = await launch();
try {
  const page = await openPage(browser, { width: 1100, height: 760 });
  const bubbles = (sender) => page.locator(`[data-sb="message"][data-sender="${sender}"]`);
  const say = async (text) => {
    await page.locator('[data-sb="input"]').fill(text);
    await page.locator('[data-sb="send"]').click();
  };

  step('the demo page shows the widget; hello gets a bot answer');
  await page.goto(`${link.url}/`);
  await page.locator('[data-sb="launcher"]').click();
  await page.locator('[data-sb="panel"]').waitFor({ state: 'visible' });
  await say('hello');
  await bubbles('customer').filter({ hasText: 'hello' }).waitFor();
  await bubbles('bot').filter({ hasText: 'How can I help' }).waitFor({ timeout: 10000 });

  step('asking for a person hands over; the bot goes quiet');
  await say('I want to talk to a person');
  await bubbles('bot').filter({ hasText: 'get back to you' }).waitFor({ timeout: 10000 });
  await page.locator('[data-sb="status"]').filter({ hasText: /team/i }).waitFor();
  const botCount = await bubbles('bot').count();
  await say('anyone there?');
  await bubbles('customer').filter({ hasText: 'anyone there?' }).waitFor();
  await page.waitForTimeout(1000);
  assert.equal(await bubbles('bot').count(), botCount, 'no bot answer after the handoff');
  await page.screenshot({ path: path.join(artifacts, 'widget-handoff.png') });

  step('customer text with markup renders as text');
  await say('<img src=x onerror="window.__owned=1"><b>bold?</b>');
  await bubbles('customer').filter({ hasText: '<b>bold?</b>' }).waitFor();
  assert.equal(await page.evaluate(() => window.__owned), undefined, 'markup must not run');

  step('a reload keeps the conversation');
  await page.reload();
  await page.locator('[data-sb="panel"]').waitFor({ state: 'visible' });
  await bubbles('customer').filter({ hasText: 'anyone there?' }).waitFor({ timeout: 10000 });
  assert.equal(await bubbles('customer').filter({ hasText: 'I want to talk to a person' }).count(), 1);

  step('messages typed while offline are sent once when the network returns');
  await link.cut();
  await page.locator('[data-sb="status"]').filter({ hasText: /offline|connecting/i }).waitFor({ timeout: 10000 });
  await say('typed offline one');
  await say('typed offline two');
  await expectAccessible(page, 'widget offline with unsent messages');
  await page.waitForTimeout(1500);
  await link.listen();
  for (const text of ['typed offline one', 'typed offline two']) {
    await page
      .locator(`[data-sb="message"][data-sender="customer"][data-seq]`)
      .filter({ hasText: text })
      .waitFor({ timeout: 40000 });
  }
  const token = await page.evaluate(() => {
    const key = Object.keys(localStorage).find((k) => k.endsWith(':token'));
    return localStorage.getItem(key);
  });
  const history = await (
    await fetch(`${serverUrl}/webchat/messages?after=0`, { headers: { authorization: `Bearer ${token}` } })
  ).json();
  const texts = history.messages.filter((m) => m.sender === 'customer').map((m) => m.text);
  for (const text of ['typed offline one', 'typed offline two']) {
    assert.equal(texts.filter((t) => t === text).length, 1, `"${text}" stored exactly once: ${texts}`);
  }
  assert.ok(texts.indexOf('typed offline one') < texts.indexOf('typed offline two'), 'order kept');
  await page.screenshot({ path: path.join(artifacts, 'widget-after-reconnect.png') });

  step('a phone-sized screen gets the full-screen chat');
  await page.setViewportSize({ width: 390, height: 780 });
  await page.screenshot({ path: path.join(artifacts, 'widget-phone.png') });
  console.log('browser widget test passed');
} finally {
  await browser.close();
  await link.cut().catch(() => {});
}
