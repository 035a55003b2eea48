// A widget customer confirms an agent's resolution, rates it with the stars and comments; each
// state passes axe. The agent's side (reply, resolve) is done by the Rust test meanwhile.
// Usage: node widget-rating.mjs <server-url> <artifacts-dir>
import { launch, customerAsksForAPerson } from './chromium.mjs';
import { expectAccessible } from './a11y.mjs';
import fs from 'node:fs';
import path from 'node:path';
import assert from 'node:assert/strict';

const [serverUrl, artifacts] = process.argv.slice(2);
fs.mkdirSync(artifacts, { recursive: true });
const step = (name) => console.log(`- ${name}`);

const browser = await launch();
try {
  const page = await customerAsksForAPerson(browser, serverUrl);
  const w = (name) => page.locator(`[data-sb="${name}"]`);
  const bubble = (sender, text) => page.locator(`[data-sb="message"][data-sender="${sender}"]`).filter({ hasText: text });

  step("the agent's reply shows her name and initials, the bot's its mark");
  const dana = w('speaker').filter({ hasText: 'Dana' });
  await dana.waitFor({ timeout: 20000 });
  assert.equal(await dana.locator('.sb-avatar').textContent(), 'D');
  assert.ok(await page.locator('.sb-row-bot [data-sb="speaker"]:not([hidden])').count() >= 1, 'the bot is marked too');

  step('the agent resolves: the customer is asked whether it is fixed, with two buttons');
  await bubble('bot', 'marked this as solved').waitFor({ timeout: 20000 });
  const answers = await w('quick-reply').allTextContents();
  assert.deepEqual(answers, ["Yes, it's fixed", 'No, not yet']);
  await expectAccessible(page, 'widget asking to confirm a resolution');

  step('yes: the rating is five stars, each named for screen readers');
  await w('quick-reply').filter({ hasText: "Yes, it's fixed" }).click();
  await w('rating').waitFor({ timeout: 10000 });
  const names = await w('rating-star').evaluateAll((stars) => stars.map((s) => s.getAttribute('aria-label')));
  assert.deepEqual(names, ['1 of 5 stars', '2 of 5 stars', '3 of 5 stars', '4 of 5 stars', '5 of 5 stars']);
  await w('rating-star').nth(3).hover();
  await expectAccessible(page, 'widget asking for a rating');
  await page.screenshot({ path: path.join(artifacts, 'widget-rating.png') });

  step('four stars, then a comment');
  await w('rating-star').nth(3).click();
  await bubble('bot', "Anything you'd like to tell us").waitFor({ timeout: 10000 });
  assert.equal(await w('rating').count(), 0, 'the stars go once rated');
  await w('input').fill('Sorted in minutes, thank you');
  await w('send').click();
  await bubble('bot', 'Thank you for your feedback').waitFor({ timeout: 10000 });
  await expectAccessible(page, 'widget after feedback');

  step("the visitor's requests list this one as solved, and passes axe");
  await w('requests-toggle').click();
  await w('request').first().waitFor({ timeout: 10000 });
  assert.equal(await w('requests-toggle').getAttribute('aria-expanded'), 'true');
  assert.deepEqual(await w('request').evaluateAll((rows) => rows.map((r) => r.dataset.state)), ['solved']);
  assert.match(await w('request').first().textContent(), /^SolvedI want to talk to a person \(this chat\)/);
  await expectAccessible(page, 'widget listing the visitor\'s requests');
  await page.screenshot({ path: path.join(artifacts, 'widget-requests.png') });
  await w('requests-toggle').click();
  assert.ok(await w('requests').isHidden(), 'the toggle goes back to the chat');
  console.log('browser widget rating test passed');
} finally {
  await browser.close();
}
