// The embedding site's signed-in user chats under their name, which agents see in the panel;
// another user on the same browser does not see their chat; an anonymous visitor answers the
// pre-chat form (which passes axe).
// Usage: node widget-identity.mjs <server-url> <artifacts-dir> <user-json> <agent-email> <password>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, userJson, agentEmail, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);
const user = JSON.parse(userJson);

const browser = await launch();
try {
  step('the signed-in user writes; the pre-chat form is not asked of them');
  const page = await openPage(browser, { width: 420, height: 760 });
  await page.addInitScript((signed) => { window.SwitchboardWidget = signed ? { user: signed } : {}; }, user);
  const w = (name) => page.locator(`[data-sb="${name}"]`);
  await page.goto(`${serverUrl}/`);
  await w('launcher').click();
  await w('input').fill('Where is my order 1234?');
  await w('send').click();
  await page.locator('[data-sb="message"][data-sender="customer"][data-state="sent"]').waitFor({ timeout: 15000 });
  assert.equal(await w('prechat').isVisible(), false);

  step('agents see her name in the panel');
  const agent = await openPage(browser, { width: 1280, height: 900 });
  await signIn(agent, serverUrl, agentEmail, password);
  await agent.goto(`${serverUrl}/panel/conversations`);
  await agent.getByText('Ann Lee').first().waitFor({ timeout: 15000 });

  step('another user on the same browser starts a chat of their own');
  await page.evaluate(() => { window.SwitchboardWidget = {}; });
  await page.addInitScript(() => { window.SwitchboardWidget = {}; });
  await page.reload();
  await w('input').waitFor(); // the chat stays open across the reload
  assert.equal(await page.locator('[data-sb="message"][data-sender="customer"]').count(), 0, "the previous user's chat is gone");

  step('an anonymous visitor answers the pre-chat form');
  await w('prechat').waitFor({ timeout: 10000 });
  await expectAccessible(page, 'widget with the pre-chat form');
  await page.screenshot({ path: path.join(artifacts, 'widget-prechat.png') });
  await w('prechat-name').fill('Bo Visitor');
  await w('prechat-email').fill('bo@example.com');
  await w('prechat-save').click();
  await w('prechat').waitFor({ state: 'hidden', timeout: 10000 });
  await w('input').fill('hello');
  await w('send').click();
  await page.locator('[data-sb="message"][data-sender="customer"][data-state="sent"]').waitFor({ timeout: 15000 });
  await agent.goto(`${serverUrl}/panel/conversations`);
  await agent.getByText('Bo Visitor').first().waitFor({ timeout: 15000 });
  console.log('browser widget identity test passed');
} finally {
  await browser.close();
}
