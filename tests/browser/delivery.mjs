// An agent answers a Telegram customer who blocked the bot: the panel shows the reply as not
// delivered, with the reason, live; the conversation is flagged and the reply box warns.
// Usage: node delivery.mjs <server-url> <artifacts-dir> <agent-email> <agent-password> <conversation-id>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password, conversation] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const agent = await openPage(browser, { width: 1280, height: 860 });
  const t = (name) => agent.locator(`[data-test="${name}"]`);

  step('the agent signs in, takes the conversation and answers');
  await signIn(agent, serverUrl, email, password);
  await agent.goto(`${serverUrl}/panel/conversations/${conversation}`);
  await t('take').click();
  await t('release').waitFor();
  await agent.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  await t('reply-text').fill('Hello Ann, we refunded you.');
  await t('reply-submit').click();

  step('the reply shows as not delivered, with the reason');
  const reply = t('message').filter({ hasText: 'we refunded you' });
  await reply.locator('[data-test="delivery"][data-state="failed"]').waitFor({ timeout: 15000 });
  assert.equal(await reply.locator('[data-test="delivery-reason"]').innerText(), 'The customer blocked the bot on Telegram.');
  // The joined notice failed too: notices count as much as replies.
  await t('undelivered-badge').filter({ hasText: '2 replies not delivered' }).waitFor();

  step('a retry that fails again is told live to the agent on another page');
  const elsewhere = await agent.context().newPage();
  await elsewhere.goto(`${serverUrl}/panel/`);
  await elsewhere.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  await reply.locator('[data-test="retry"]').click();
  await elsewhere.locator('[data-test="failed-notice"]').waitFor({ timeout: 10000 });
  // The live region is filled 50 ms after the notice (a change screen readers announce).
  const announced = 'A reply you wrote was not delivered.';
  await elsewhere.waitForFunction((text) => document.getElementById('announcer').textContent === text, announced, { timeout: 5000 });
  await expectAccessible(elsewhere, 'dashboard with a live notice');
  await elsewhere.close();

  step('the customer shows as unreachable, and the reply box warns');
  await agent.reload();
  assert.match(await t('unreachable').innerText(), /blocked the bot on Telegram/);
  assert.match(await t('reply-warning').innerText(), /will probably not arrive/);
  await expectAccessible(agent, 'conversation with an undelivered reply');
  await agent.screenshot({ path: path.join(artifacts, 'delivery-failed.png'), fullPage: true });

  step('the list flags it and filters by it');
  await agent.goto(`${serverUrl}/panel/conversations?undelivered=1`);
  const rows = t('conversation-row');
  assert.equal(await rows.count(), 1);
  assert.equal(await rows.first().getAttribute('data-id'), conversation);
  await rows.first().locator('[data-test="undelivered-badge"]').waitFor();
  await expectAccessible(agent, 'list of conversations with undelivered replies');
  console.log('browser delivery test passed');
} finally {
  await browser.close();
}
