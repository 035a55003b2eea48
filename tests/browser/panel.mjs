// The agents' panel and the widget side by side in headless Chromium: a customer asks for a
// person, the agent sees it appear live, takes it, replies, and the customer sees the reply.
// Usage: node panel.mjs <server-url> <artifacts-dir> <agent-email> <agent-password>
import { customerAsksForAPerson, launch, openPage, signIn } from './chromium.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const agent = await openPage(browser, { width: 1280, height: 860 });

  step('the agent signs in and watches the queue');
  await signIn(agent, serverUrl, email, password);
  await agent.goto(`${serverUrl}/panel/conversations?assignee=queue`);
  await agent.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  assert.equal(await agent.locator('[data-test="conversation-row"]').count(), 0, 'the queue starts empty');

  step('a customer asks for a person in the widget; the queue updates live');
  const customer = await customerAsksForAPerson(browser, serverUrl);
  await customer.locator('[data-sb="message"][data-sender="bot"]').filter({ hasText: 'handed your conversation' }).waitFor({ timeout: 10000 });
  const row = agent.locator('[data-test="conversation-row"]').first();
  await row.waitFor({ timeout: 10000 });

  step('the agent opens it, takes it and replies');
  await row.click();
  await agent.locator('[data-test="take"]').click();
  await agent.locator('[data-test="reply-text"]').fill('Hello, this is your agent speaking.');
  await customer.locator('[data-sb="typing"]').waitFor({ state: 'visible', timeout: 10000 }); // the agent is typing
  await agent.locator('[data-test="reply-submit"]').click();
  await agent.locator('[data-test="message"][data-sender="agent"]').filter({ hasText: 'your agent speaking' }).waitFor();
  await agent.screenshot({ path: path.join(artifacts, 'panel-conversation.png'), fullPage: true });

  step('the customer sees who joined and the reply');
  await customer.locator('[data-sb="message"][data-sender="system"]').filter({ hasText: 'joined the conversation' }).waitFor({ timeout: 10000 });
  await customer.locator('[data-sb="message"][data-sender="agent"]').filter({ hasText: 'your agent speaking' }).waitFor({ timeout: 10000 });

  step('the customer answers; the agent sees it without reloading');
  await agent.waitForFunction(() => document.body.dataset.liveReady === '1', null, { timeout: 10000 });
  await customer.locator('[data-sb="input"]').fill('Thanks, my invoice is wrong');
  await agent.locator('[data-test="customer-typing"]').waitFor({ state: 'visible', timeout: 10000 });
  await customer.locator('[data-sb="send"]').click();
  await agent.locator('[data-test="message"][data-sender="customer"]').filter({ hasText: 'my invoice is wrong' }).waitFor({ timeout: 10000 });

  await agent.goto(`${serverUrl}/panel/`);
  await agent.screenshot({ path: path.join(artifacts, 'panel-dashboard.png'), fullPage: true });
  await agent.setViewportSize({ width: 390, height: 800 });
  await agent.screenshot({ path: path.join(artifacts, 'panel-dashboard-phone.png'), fullPage: true });
  console.log('browser panel test passed');
} finally {
  await browser.close();
}
