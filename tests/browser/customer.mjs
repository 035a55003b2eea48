// An agent opens a customer's page: both channels of one person, their conversations and how
// they were joined; the agent separates them again, and the page says so.
// Usage: node customer.mjs <server-url> <artifacts-dir> <agent-email> <agent-password> <customer-id>
// (the customer's Telegram identity, joined with their email address)
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password, customer] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const agent = await openPage(browser, { width: 1280, height: 860 });
  const t = (name) => agent.locator(`[data-test="${name}"]`);

  step('the customers list leads to the customer page');
  await signIn(agent, serverUrl, email, password);
  await agent.goto(`${serverUrl}/panel/customers`);
  await agent.locator(`[data-test="customer-link"][href="/panel/customers/${customer}"]`).click();
  await agent.waitForURL(`**/panel/customers/${customer}`);

  step('both channels, both conversations and the join are shown');
  assert.deepEqual((await t('identity').evaluateAll((rows) => rows.map((r) => r.dataset.channel))).sort(), ['email', 'telegram']);
  const channels = await t('person-conversation').evaluateAll((links) => links.map((l) => l.dataset.channel));
  assert.ok(channels.includes('email') && channels.includes('telegram'), `conversations on ${channels}`);
  assert.match(await t('join').first().innerText(), /link code from the other channel/);
  await expectAccessible(agent, 'customer page with a join');
  await agent.screenshot({ path: path.join(artifacts, 'customer-joined.png'), fullPage: true });

  step('a conversation links back to the whole customer');
  await agent.locator('[data-test="person-conversation"][data-channel="telegram"]').first().click();
  await t('customer-page').click();
  await agent.waitForURL(`**/panel/customers/${customer}`);

  step('the agent separates them again');
  assert.equal(await t('undo-join').count(), 1, `one join to undo: ${await t('join').allInnerTexts()}`);
  await t('undo-join').click();
  // (The page drops `?done=` from its address once shown, so the flash is what to wait for.)
  await t('flash').filter({ hasText: 'Separated again' }).waitFor();
  assert.equal(new URL(agent.url()).pathname, `/panel/customers/${customer}`);
  assert.equal(await t('identity').count(), 1);
  await t('join-undone').waitFor();
  await expectAccessible(agent, 'customer page after separating');

  step('finding a customer to join offers them, not this one');
  await agent.fill('#join-find', 'Ann');
  await t('join-find').click();
  await t('join-candidate').first().waitFor();
  assert.equal(await agent.locator(`[data-test="join-candidate"][data-id="${customer}"]`).count(), 0);
  await expectAccessible(agent, 'customer page with customers to join');
  console.log('browser customer page test passed');
} finally {
  await browser.close();
}
