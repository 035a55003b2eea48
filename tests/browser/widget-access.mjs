// The widget for keyboard and screen-reader users, checked by axe in every state.
// Usage: node widget-access.mjs <server-url> <artifacts-dir>
import { launch, openPage } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll, focused, tabTo } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const page = await openPage(browser, { width: 1100, height: 760 });
  const w = (name) => page.locator(`[data-sb="${name}"]`);
  const bubble = (sender, text) => page.locator(`[data-sb="message"][data-sender="${sender}"]`).filter({ hasText: text });
  const spokenSender = (locator) => locator.evaluate((el) => el.previousElementSibling.textContent);

  step('the demo page with the widget closed passes axe');
  await page.goto(`${serverUrl}/`);
  await w('launcher').waitFor();
  await expectAccessible(page, 'demo page, widget closed');

  step('by keyboard: Tab reaches the launcher; Enter opens the chat with focus in the message box');
  await tabTo(page, 'launcher');
  await page.keyboard.press('Enter');
  await w('panel').waitFor({ state: 'visible' });
  assert.equal(await focused(page), 'input', 'focus moves into the message box');
  assert.equal(await w('panel').getAttribute('aria-modal'), 'false', 'beside the page the chat is not modal');
  await expectAccessible(page, 'widget open');

  step('typing is announced, and each message is announced with who wrote it');
  await page.evaluate(() => {
    const announcer = document.getElementById('switchboard-widget').shadowRoot.querySelector('[data-sb="announcer"]');
    window.__announced = [];
    new MutationObserver(() => window.__announced.push(announcer.textContent))
      .observe(announcer, { childList: true, characterData: true, subtree: true });
  });
  await page.keyboard.type('hello');
  await page.keyboard.press('Enter');
  const answer = bubble('bot', 'How can I help');
  await answer.waitFor({ timeout: 10000 });
  assert.equal(await spokenSender(answer), 'Switchboard Support bot:');
  assert.equal(await spokenSender(bubble('customer', 'hello')), 'You:');
  const announced = await page.evaluate(() => window.__announced);
  assert.ok(announced.some((text) => /is typing/.test(text)), `typing announced: ${JSON.stringify(announced)}`);
  assert.equal(await focused(page), 'input', 'focus stays in the message box after sending');

  step('a question the bot is unsure of offers quick replies; that state passes axe');
  await page.keyboard.type('zxqv plorb wuggle');
  await page.keyboard.press('Enter');
  await w('quick-reply').first().waitFor({ timeout: 10000 });
  await expectAccessible(page, 'widget with quick replies');

  step('a message over the length limit shows its error; that state passes axe');
  await w('input').fill('a'.repeat(4100));
  await page.keyboard.press('Enter');
  await w('error').waitFor();
  await expectAccessible(page, 'widget with a refused message');

  step('right-to-left text is shown right to left');
  await w('input').fill('مرحبا، أحتاج مساعدة في طلبي');
  assert.ok(await w('input').evaluate((el) => el.matches(':dir(rtl)')), 'the message box follows the text direction');
  await page.keyboard.press('Enter');
  const arabic = bubble('customer', 'مرحبا');
  await arabic.waitFor();
  assert.ok(await arabic.evaluate((el) => el.matches(':dir(rtl)')), 'an Arabic message reads right to left');
  assert.ok(await bubble('customer', 'hello').evaluate((el) => el.matches(':dir(ltr)')), 'English stays left to right');

  step('the conversation can be scrolled by keyboard');
  await tabTo(page, 'scroll', { limit: 8, backwards: true });

  step('Escape closes the chat and returns focus to the launcher');
  await page.keyboard.press('Escape');
  await w('panel').waitFor({ state: 'hidden' });
  assert.equal(await focused(page), 'launcher');
  await page.keyboard.press('Enter');
  await w('panel').waitFor({ state: 'visible' });
  await w('close').click();
  await w('panel').waitFor({ state: 'hidden' });
  assert.equal(await focused(page), 'launcher', 'the close button also returns focus to the launcher');

  step('on a phone the chat is modal: the page behind is inert and Tab stays in the chat');
  await page.setViewportSize({ width: 390, height: 780 });
  await page.keyboard.press('Enter');
  await w('panel').waitFor({ state: 'visible' });
  assert.equal(await w('panel').getAttribute('aria-modal'), 'true');
  assert.ok(await page.evaluate(() => document.querySelector('main').inert), 'the page behind is inert');
  for (let i = 0; i < 12; i++) {
    await page.keyboard.press('Tab');
    const inside = await page.evaluate(() => document.activeElement && document.activeElement.id === 'switchboard-widget');
    assert.ok(inside, `Tab ${i + 1} stayed in the chat (focus on ${await focused(page)})`);
  }
  await expectAccessible(page, 'widget full screen on a phone');
  await page.screenshot({ path: path.join(artifacts, 'widget-access-phone.png') });
  await page.keyboard.press('Escape');
  await w('panel').waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.querySelector('main').inert), false, 'closing gives the page back');

  step('the demo page reflows at 375 and 320 CSS px');
  for (const width of [375, 320]) {
    await page.setViewportSize({ width, height: 700 });
    await expectNoSidewaysScroll(page, `demo page at ${width}px`);
  }

  step('at 400 % zoom (320 × 256 CSS px) at least three lines of conversation stay visible while typing');
  await page.setViewportSize({ width: 320, height: 256 });
  await w('launcher').click();
  await w('panel').waitFor({ state: 'visible' });
  await w('input').fill('one\ntwo\nthree\nfour\nfive\nsix');
  await w('input').dispatchEvent('input');
  const room = await w('scroll').evaluate((el) => {
    const line = parseFloat(getComputedStyle(el.querySelector('[data-sb="message"]')).lineHeight) || 20;
    return { height: el.clientHeight, lines: el.clientHeight / line };
  });
  assert.ok(room.lines >= 3, `the conversation keeps ${room.height}px (${room.lines.toFixed(1)} lines) while typing`);
  await expectAccessible(page, 'widget at 400 % zoom');
  await page.screenshot({ path: path.join(artifacts, 'widget-access-zoom.png') });

  step('on a page in German the widget speaks German, says so to screen readers, and passes axe');
  const german = await openPage(browser, { width: 1100, height: 760 });
  await german.route(`${serverUrl}/`, async (route) => {
    const response = await route.fetch();
    const body = (await response.text()).replace('<html lang="en">', '<html lang="de">');
    await route.fulfill({ response, body });
  });
  await german.goto(`${serverUrl}/`);
  const g = (name) => german.locator(`[data-sb="${name}"]`);
  await g('launcher').waitFor();
  assert.equal(await g('launcher').getAttribute('aria-label'), 'Chat öffnen');
  assert.equal(await german.locator('#switchboard-widget').getAttribute('lang'), 'de');
  await g('launcher').click();
  await g('panel').waitFor({ state: 'visible' });
  assert.equal(await g('input').getAttribute('placeholder'), 'Nachricht schreiben…');
  assert.equal(await g('send').getAttribute('aria-label'), 'Senden');
  await g('input').fill('hallo');
  await german.keyboard.press('Enter');
  const mine = german.locator('[data-sb="message"][data-sender="customer"]').filter({ hasText: 'hallo' });
  await mine.waitFor();
  assert.equal(await spokenSender(mine), 'Sie:');
  await g('input').fill('a'.repeat(4100));
  await german.keyboard.press('Enter');
  await g('error').waitFor();
  assert.match(await g('error').innerText(), /Die Nachricht hat 4100 Zeichen; erlaubt sind 4000\./, 'the widget\'s own notices are German, their numbers filled in');
  await expectAccessible(german, 'widget in German');
  await german.context().close();
  console.log('browser widget accessibility test passed');
} finally {
  await browser.close();
}
