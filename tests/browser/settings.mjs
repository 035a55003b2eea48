// An admin changes what the bot says on the Settings page; the widget's next handoff says it,
// without a restart. A refused value keeps what was typed and says why. The page passes axe at
// desktop and phone widths. The Widget page previews the look while typing and the widget takes it. Usage: node settings.mjs <server-url> <artifacts-dir> <admin-email> <admin-password>
import { launch, openPage, signIn, customerAsksForAPerson } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll } from './a11y.mjs';
import fs from 'node:fs';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);
const said = 'Nobody is in right now. We answer first thing tomorrow.';

const browser = await launch();
try {
  const admin = await openPage(browser, { width: 1280, height: 900 });
  await signIn(admin, serverUrl, email, password);
  step('the Settings page is in the admin menu and accessible');
  await admin.click('[data-test="settings-link"]');
  await admin.waitForURL(`${serverUrl}/panel/admin/settings`);
  await expectAccessible(admin, 'settings page');

  step('a threshold out of range is refused, naming the setting, and the typed text stays');
  const offline = admin.locator('[data-test="setting-bot-handoff-offline"]');
  await offline.fill(said);
  await admin.locator('[data-test="setting-bot-low-confidence-threshold"]').fill('1.5');
  await admin.click('[data-test="settings-save"]');
  const error = admin.locator('[data-test="settings-error"]');
  await error.waitFor();
  assert.match(await error.innerText(), /Unsure below .*not within 0\.\.=1/);
  assert.equal(await offline.inputValue(), said, 'what was typed is kept');
  assert.equal(await admin.locator('[data-test="setting-bot-low-confidence-threshold"]').getAttribute('aria-invalid'), 'true');
  await expectAccessible(admin, 'settings page with a refused value');

  step('saved, the new text is in force: the widget customer is told it');
  await admin.locator('[data-test="setting-bot-low-confidence-threshold"]').fill('0.5');
  // Saved: the form's answer sends the page on to ?done=1; refused: say why.
  const [answer] = await Promise.all([
    admin.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/panel/admin/settings'), { timeout: 90000 }),
    admin.click('[data-test="settings-save"]'),
  ]);
  if (answer.status() !== 303) throw new Error(`the save was refused (${answer.status()}): ${await answer.text()}`);
  // The saved page's own text, not its URL: the page drops `?done=1` from the address as soon as
  // it has loaded (history.replaceState), so on a busy machine the URL may never be seen with it.
  await admin.locator('[data-test="flash"]').filter({ hasText: 'Settings saved' }).waitFor({ timeout: 90000 });
  assert.match(await admin.locator('[data-test="setting-bot-handoff-offline-source"]').innerText(), /Set here by Robin/);
  const customer = await customerAsksForAPerson(browser, serverUrl);
  await customer.locator('[data-sb="message"][data-sender="bot"]').filter({ hasText: said }).waitFor({ timeout: 10000 });

  step('the Widget page previews the look as the admin types, and the widget takes it once saved');
  await admin.click('[data-test="widget-link"]');
  await admin.waitForURL(`${serverUrl}/panel/admin/widget`);
  await expectAccessible(admin, 'widget page');
  await admin.locator('[data-test="setting-webchat-title"]').fill('Acme help');
  await admin.locator('[data-test="setting-webchat-primary-color"]').fill('#0f766e');
  await admin.locator('[data-test="setting-webchat-position"]').fill('left');
  const header = admin.locator('[data-preview="title"]');
  assert.equal(await header.innerText(), 'Acme help', 'the preview follows before saving');
  assert.equal(await header.evaluate((e) => getComputedStyle(e).backgroundColor), 'rgb(15, 118, 110)');
  assert.equal(await admin.locator('[data-test="widget-preview"]').getAttribute('data-position'), 'left');
  await admin.click('[data-test="settings-save"]');
  await admin.locator('[data-test="flash"]').filter({ hasText: 'Settings saved' }).waitFor({ timeout: 90000 });
  // The demo page names its own title on the script tag; the colour comes from the server.
  const visitor = await openPage(browser, { width: 1280, height: 900 });
  await visitor.goto(`${serverUrl}/`);
  const launcher = visitor.locator('[data-sb="launcher"]');
  const deadline = Date.now() + 10000;
  let colour = '';
  while (colour !== 'rgb(15, 118, 110)') {
    if (Date.now() > deadline) throw new Error(`the widget kept the old colour: ${colour}`);
    colour = await launcher.evaluate((e) => getComputedStyle(e).backgroundColor).catch(() => '');
    if (colour !== 'rgb(15, 118, 110)') await visitor.waitForTimeout(100);
  }
  await visitor.close();

  step('at phone width the page reflows and stays accessible');
  await admin.goto(`${serverUrl}/panel/admin/settings`);
  await admin.setViewportSize({ width: 390, height: 844 });
  await expectNoSidewaysScroll(admin, 'settings page at phone width');
  await expectAccessible(admin, 'settings page at phone width');
  await admin.screenshot({ path: `${artifacts}/settings-phone.png`, fullPage: true });
  console.log('browser settings test passed');
} finally {
  await browser.close();
}
