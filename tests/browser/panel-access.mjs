// The agents' panel for keyboard and screen-reader users, checked by axe on every page.
// Usage: node panel-access.mjs <server-url> <artifacts-dir> <admin-email> <admin-password>
import { customerAsksForAPerson, launch, openPage, waitUntilInPage } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll, focused, tabTo } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const agent = await openPage(browser, { width: 1280, height: 860 });
  const t = (name) => agent.locator(`[data-test="${name}"]`);

  step('the sign-in page passes axe, and signing in works by keyboard');
  await agent.goto(`${serverUrl}/panel/login`);
  await expectAccessible(agent, 'sign-in page');
  assert.equal(await focused(agent), 'login-email', 'the email field has focus');
  await agent.keyboard.type(email);
  await agent.keyboard.press('Tab');
  assert.equal(await focused(agent), 'login-password');
  await agent.keyboard.type(password);
  await agent.keyboard.press('Enter');
  await agent.waitForURL(`${serverUrl}/panel/`);

  step('a canned response to insert later');
  await agent.goto(`${serverUrl}/panel/canned`);
  await agent.fill('#canned-title', 'Refund time');
  await agent.fill('#canned-body', 'Refunds reach your card within five working days.');
  await t('canned-submit').click();
  await t('canned-item').first().waitFor();

  step('a live update on the queue never moves the agent\'s focus');
  await agent.goto(`${serverUrl}/panel/conversations?assignee=queue`);
  await agent.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  await agent.locator('.qf-clear').focus();
  const customer = await customerAsksForAPerson(browser, serverUrl);
  const row = t('conversation-row').first();
  await row.waitFor({ timeout: 10000 });
  assert.equal(await agent.evaluate(() => document.activeElement.className), 'qf qf-clear', 'focus stayed on the link');

  step('an anonymous visitor is listed by a readable label, not an id');
  assert.match(await row.locator('.cr-name').innerText(), /^Visitor \d{4} · web chat$/);
  await expectAccessible(agent, 'queue with a conversation');

  step('the conversation opens by keyboard; the message log can be focused');
  await row.focus();
  await agent.keyboard.press('Enter');
  await t('take').waitFor();
  await expectAccessible(agent, 'conversation page');
  assert.equal(await agent.locator('[data-region="messages"]').getAttribute('role'), 'log');

  step('taking it confirms itself in a live region and puts focus in the reply box');
  await t('take').focus();
  await agent.keyboard.press('Enter');
  await t('release').waitFor();
  await assertAnnounced(agent, 'You took this conversation.');
  assert.equal(await focused(agent), 'reply-text');

  step('arrow keys in the canned-response menu choose without inserting; Insert inserts');
  await t('canned-select').focus();
  await agent.keyboard.press('ArrowDown');
  assert.equal(await t('reply-text').inputValue(), '', 'choosing a response does not insert it');
  await tabTo(agent, 'canned-insert', { limit: 3 });
  await agent.keyboard.press('Enter');
  assert.equal(await t('reply-text').inputValue(), 'Refunds reach your card within five working days.');
  assert.equal(await focused(agent), 'reply-text', 'focus returns to the reply box');

  step('a reply sent by keyboard confirms itself and leaves focus in the reply box');
  await t('reply-text').fill('Hello, I am looking at your order now.');
  await tabTo(agent, 'reply-submit', { limit: 6 });
  await agent.keyboard.press('Enter');
  await t('message').filter({ hasText: 'looking at your order' }).waitFor();
  await assertAnnounced(agent, 'Reply sent.');
  assert.equal(await focused(agent), 'reply-text');

  step('a new customer message is added to the log without redrawing it');
  await agent.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  await agent.evaluate(() => { document.querySelector('[data-test="message"]').__kept = true; });
  await customer.locator('[data-sb="input"]').fill('شكرا، أنتظر ردكم');
  await customer.locator('[data-sb="send"]').click();
  const arabic = t('message').filter({ hasText: 'شكرا' });
  await arabic.waitFor({ timeout: 10000 });
  assert.ok(await agent.evaluate(() => document.querySelector('[data-test="message"]').__kept === true), 'earlier messages were kept, not redrawn');
  assert.ok(await arabic.locator('.msg-text').evaluate((el) => el.matches(':dir(rtl)')), 'Arabic reads right to left');

  // The message is stored, then answered in a step of its own: wait until the page's forms
  // carry the conversation's version after that step, as they do once the page settles.
  await waitUntilInPage(agent, "the page's forms carry the conversation's current version", async () => {
    const html = await fetch(location.href, { credentials: 'same-origin' }).then((r) => r.text());
    const now = new DOMParser().parseFromString(html, 'text/html').querySelector('input[name="version"]');
    const shown = document.querySelector('input[name="version"]');
    return !now || !shown || now.value === shown.value;
  }, null, { timeout: 10000, every: 200 });

  step('a status change by keyboard confirms itself and keeps focus on the status field');
  await agent.locator('#set-status').focus();
  await agent.selectOption('#set-status', 'waiting_on_customer');
  await tabTo(agent, 'status-submit', { limit: 2 });
  await agent.keyboard.press('Enter');
  await t('status').filter({ hasText: 'Waiting on customer' }).waitFor();
  await assertAnnounced(agent, 'Status changed.');
  assert.equal(await focused(agent), 'set-status');
  await agent.screenshot({ path: path.join(artifacts, 'panel-access-conversation.png'), fullPage: true });
  const conversationUrl = agent.url();

  step("the customer's reply is in the agent's notifications, read since the conversation showed it");
  await agent.goto(`${serverUrl}/panel/notifications`);
  const replied = t('notification').filter({ hasText: 'شكرا' });
  await replied.waitFor();
  assert.equal(await replied.getAttribute('data-kind'), 'customer_replied');
  assert.ok(!(await replied.evaluate((el) => el.classList.contains('unread'))), 'the open conversation page read it');
  await agent.goto(conversationUrl);

  step('every page passes axe, at desktop size and at 320 CSS px (400 % zoom) without sideways scrolling');
  const pages = [
    '/panel/', '/panel/conversations', '/panel/conversations?assignee=queue', '/panel/customers', conversationUrl.replace(serverUrl, ''),
    '/panel/canned', '/panel/account', '/panel/account/tokens', '/panel/admin/agents', '/panel/admin/audit', '/panel/admin/hours',
    '/panel/admin/system', '/panel/admin/widget', '/panel/conversations/00000000-0000-4000-8000-000000000000', '/panel/notifications',
    '/panel/conversations?sort=due', '/panel/documents', '/panel/admin/webhooks',
  ];
  for (const width of [1280, 320]) {
    await agent.setViewportSize({ width, height: width === 320 ? 640 : 860 });
    for (const page of pages) {
      await agent.goto(`${serverUrl}${page}`);
      await expectAccessible(agent, `${page} at ${width}px`);
      await expectNoSidewaysScroll(agent, `${page} at ${width}px`);
    }
  }
  await agent.goto(`${serverUrl}/panel/`);
  await agent.screenshot({ path: path.join(artifacts, 'panel-access-320.png'), fullPage: true });
  console.log('browser panel accessibility test passed');
} finally {
  await browser.close();
}

/** The live region says `text` (it is filled just after the page loads). */
async function assertAnnounced(page, text) {
  await page.waitForFunction((expected) => document.getElementById('announcer').textContent === expected, text, { timeout: 5000 });
}
