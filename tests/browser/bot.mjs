// An admin teaches the bot from the Reports page's "Needs teaching" list, then reads, edits
// (a refused edit keeps the text and says why) and restores versions on the Bot page, edits one
// intent's answer and its translation, and a widget customer then gets the edited answer; every
// state passes axe, and the Bot page reflows at phone width.
// Usage: node bot.mjs <server-url> <artifacts-dir> <admin-email> <admin-password> <day YYYY-MM-DD>
import { launch, openPage, signIn, waitUntilInPage } from './chromium.mjs';
import { expectAccessible, expectNoSidewaysScroll } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts, email, password, day] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const admin = await openPage(browser, { width: 1280, height: 900 });
  const t = (name) => admin.locator(`[data-test="${name}"]`);

  step('the first group to teach is taught as an existing intent');
  await signIn(admin, serverUrl, email, password);
  await admin.goto(`${serverUrl}/panel/reports?range=custom&from=${day}&to=${day}&zone=UTC`);
  const form = t('teach-form').first();
  await expectAccessible(admin, 'reports with teaching forms');
  const taught = await form.locator('input[name="seq"]:checked').count();
  assert.ok(taught >= 1, 'the group lists messages to teach');
  await form.locator('[data-test="teach-intent"]').selectOption('invoice_copy');
  await form.locator('[data-test="teach-submit"]').click();
  await admin.waitForURL('**taught=2**');
  assert.match(await t('flash').innerText(), /Version 2 of the intents is training/);
  await expectAccessible(admin, 'reports after teaching');

  step('the Bot page lists the intents and the new version');
  await t('bot-link').click();
  await admin.waitForURL('**/panel/bot');
  assert.equal(await t('bot-intent').count(), 39);
  const newest = t('bot-version').first();
  assert.equal(await newest.getAttribute('data-number'), '2');
  assert.match(await newest.innerText(), new RegExp(`taught ${taught} message\\(s\\) as \`invoice_copy\``));
  await admin.fill('#bot-search', 'dark_mode');
  await admin.locator('#bot-search').press('Enter');
  await admin.waitForURL('**/panel/bot?q=dark_mode');
  assert.equal(await t('bot-intent').count(), 1);
  await expectAccessible(admin, 'bot page');
  await admin.screenshot({ path: path.join(artifacts, 'bot.png'), fullPage: true });

  step('an edit that would not load is refused with its line, and the text stays');
  const text = await admin.locator('#bot-text').inputValue();
  assert.match(text, /\nversion = 2\n/);
  await admin.fill('#bot-text', text.replace('category = "billing"', 'category = "money"'));
  await t('bot-save').click();
  assert.match(await t('bot-error').innerText(), /^line \d+: unknown category `money`/);
  assert.match(await admin.locator('#bot-text').inputValue(), /category = "money"/);
  assert.equal(await admin.locator('#bot-text').getAttribute('aria-invalid'), 'true');
  await expectAccessible(admin, 'bot page with a refused edit');

  step('a good edit is saved as version 3');
  await admin.fill('#bot-text', text.replace('the Contact page of our website', 'our Help page'));
  await admin.fill('#bot-note', 'new opening hours');
  await t('bot-save').click();
  await admin.waitForURL('**/panel/bot?saved=3');
  assert.match(await t('flash').innerText(), /Version 3 saved/);
  assert.match(await t('bot-version').first().innerText(), /new opening hours/);

  step('version 1 is restored as version 4');
  await admin.locator('[data-test="bot-version"][data-number="1"] [data-test="bot-restore"]').click();
  await admin.waitForURL('**/panel/bot?saved=4');
  assert.match(await t('bot-version').first().innerText(), /restored version 1/);
  const download = await admin.evaluate(() => fetch('/panel/bot/versions/4/intents.toml').then((r) => r.text()));
  assert.match(download, /\nversion = 4\n/);
  assert.match(download, /the Contact page of our website/);

  step("one intent's editor previews its answer, then saves it as version 5");
  await admin.goto(`${serverUrl}/panel/bot?q=dark_mode`);
  await t('bot-intent-link').first().click();
  await admin.waitForURL('**/panel/bot/intent?name=dark_mode');
  await expectAccessible(admin, 'intent editor');
  await admin.fill('#intent-answer', 'Dark mode is under Settings. You wrote: {{message}}');
  assert.equal(await t('intent-translation').count(), 1, 'no translations yet: one empty row');
  await admin.fill('#translation-text-0', 'Den dunklen Modus finden Sie unter Einstellungen, {{customer.name}}.');
  await t('intent-save').click();
  assert.match(await t('intent-error').innerText(), /has no language: choose one/);
  assert.equal(await admin.locator('#translation-text-0').inputValue(), 'Den dunklen Modus finden Sie unter Einstellungen, {{customer.name}}.', 'the typed translation stays');
  await admin.locator('#translation-language-0').selectOption('de');
  await t('intent-preview-button').click();
  assert.equal(await t('intent-preview').locator('.answer-preview').innerText(), "Dark mode is under Settings. You wrote: (the customer's message)");
  assert.equal(await t('intent-translation-preview').innerText(), "Den dunklen Modus finden Sie unter Einstellungen, (the customer's name).");
  assert.equal(await t('intent-translation').count(), 2, 'the German row and an empty one to add another');
  await expectAccessible(admin, 'intent editor with a preview');
  await t('intent-save').click();
  await admin.waitForURL('**/panel/bot?saved=5');
  assert.match(await t('bot-version').first().innerText(), /edited the intent `dark_mode`/);

  step("the widget's next answer is the edited one, without a restart");
  // Version 5 trains in the background; the Bot page says when this node answers with it.
  await waitUntilInPage(
    admin,
    'the Bot page says version 5 is in use',
    async () => (await (await fetch('/panel/bot')).text()).includes('Version 5 is in use'),
    null,
    { every: 500, timeout: 90000 },
  );
  const customer = await openPage(browser, { width: 420, height: 760 });
  await customer.goto(`${serverUrl}/`);
  await customer.locator('[data-sb="launcher"]').click();
  const question = 'do you have dark mode?';
  const botMessages = customer.locator('[data-sb="message"][data-sender="bot"]');
  const before = await botMessages.count();
  await customer.locator('[data-sb="input"]').fill(question);
  await customer.locator('[data-sb="send"]').click();
  // The bot's answer, whatever it is: a wrong one fails below with its text.
  await botMessages.nth(before).waitFor({ timeout: 30000 });
  assert.equal(await botMessages.nth(before).innerText(), `Dark mode is under Settings. You wrote: ${question}`);
  await customer.context().close();

  step('a new intent with too few examples is refused on its page, the input kept');
  await t('bot-add-intent').click();
  await admin.waitForURL('**/panel/bot/intent');
  await admin.fill('#intent-name', 'gift_cards');
  await admin.fill('#intent-examples', 'do you sell gift cards');
  await t('intent-save').click();
  assert.match(await t('intent-error').innerText(), /give at least 3/);
  assert.equal(await admin.locator('#intent-examples').inputValue(), 'do you sell gift cards');
  await expectAccessible(admin, 'intent editor with an error');

  step('at phone width the Bot page reflows');
  const phone = await openPage(browser, { width: 320, height: 740 });
  await signIn(phone, serverUrl, email, password);
  await phone.goto(`${serverUrl}/panel/bot`);
  await expectNoSidewaysScroll(phone, 'bot page at 320 px');
  await expectAccessible(phone, 'bot page at 320 px');
  await phone.screenshot({ path: path.join(artifacts, 'bot-phone.png'), fullPage: true });
  console.log('browser bot test passed');
} finally {
  await browser.close();
}
