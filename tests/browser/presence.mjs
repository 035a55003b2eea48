// The agents page shows an agent's presence as it changes, without a reload, and stays
// accessible. Usage: node presence.mjs <server-url> <artifacts-dir> <admin-email> <admin-password> <agent-id> <agent-api-token>
import { launch, openPage, signIn } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password, agentId, agentToken] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const admin = await openPage(browser, { width: 1280, height: 900 });
  await signIn(admin, serverUrl, email, password);
  await admin.goto(`${serverUrl}/panel/admin/agents`);
  await admin.waitForFunction(() => document.body.dataset.liveReady === '1');
  const presence = admin.locator(`[data-test="agent-row"][data-id="${agentId}"] [data-test="agent-presence"]`);
  assert.equal((await presence.innerText()).trim(), 'offline');

  for (const now of ['online', 'away']) {
    step(`the agent goes ${now} through the API; the page shows it live`);
    const status = await admin.evaluate(async ([token, state]) => {
      const reply = await fetch('/api/presence', {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ presence: state }),
      });
      return reply.status;
    }, [agentToken, now]);
    assert.equal(status, 200);
    await presence.filter({ hasText: now }).waitFor({ timeout: 10000 });
    assert.ok(await presence.locator(`.presence-dot.presence-${now}`).count() === 1, 'the dot follows');
  }
  await expectAccessible(admin, 'agents page after live presence changes');
  console.log('browser presence test passed');
} finally {
  await browser.close();
}
