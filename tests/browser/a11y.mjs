// Accessibility checks shared by the browser scripts: axe-core's WCAG 2.1 A/AA rules, where the
// keyboard focus is (also inside the widget's shadow root), and reflow without sideways scrolling.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const WCAG_21_AA = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

/** Runs axe on the page as it is now; throws with every violation, where and why. */
export async function expectAccessible(page, label) {
  await animationsFinished(page);
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const violations = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }).then((r) => r.violations),
    WCAG_21_AA,
  );
  if (violations.length === 0) return;
  const detail = violations
    .map((v) => `  ${v.id} (${v.impact}): ${v.help}\n` +
      v.nodes.map((n) => `    at ${JSON.stringify(n.target)}: ${n.failureSummary.replace(/\n/g, ' ')}`).join('\n'))
    .join('\n');
  throw new Error(`${label}: ${violations.length} accessibility violation(s)\n${detail}`);
}

/** A short name for the focused element, looking into shadow roots: data-sb, data-test, id or tag. */
export function focused(page) {
  return page.evaluate(() => {
    let el = document.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    if (!el || el === document.body) return 'body';
    return el.getAttribute('data-sb') || el.getAttribute('data-test') || el.id || el.tagName.toLowerCase();
  });
}

/** Presses Tab (or Shift+Tab) until `name` has focus; fails after `limit` presses. */
export async function tabTo(page, name, { limit = 30, backwards = false } = {}) {
  for (let presses = 1; presses <= limit; presses++) {
    await page.keyboard.press(backwards ? 'Shift+Tab' : 'Tab');
    if ((await focused(page)) === name) return presses;
  }
  throw new Error(`Tab never reached ${name} in ${limit} presses (focus ended on ${await focused(page)})`);
}

/** The page does not scroll sideways at this width (WCAG 1.4.10 reflow). */
export async function expectNoSidewaysScroll(page, label) {
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
  if (scrollWidth > innerWidth) throw new Error(`${label}: the page is ${scrollWidth}px wide in a ${innerWidth}px window`);
}

/** Waits for running finite animations (also in shadow roots): colours mid-fade are not the page's. */
function animationsFinished(page) {
  return page.evaluate(() => {
    const roots = [document, ...[...document.querySelectorAll('*')].map((el) => el.shadowRoot).filter(Boolean)];
    const running = roots.flatMap((root) => root.getAnimations())
      .filter((animation) => animation.effect && animation.effect.getComputedTiming().iterations !== Infinity);
    return Promise.all(running.map((animation) => animation.finished.catch(() => {})));
  });
}
