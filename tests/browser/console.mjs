// The operator console in Debian's Chromium, driven by playwright-core:
// an operator's ticket ("I paid yesterday but I'm still locked out") with
// JavaScript off, then axe-core (WCAG 2.1 AA) on every page at 1280 and
// 320 px, light and dark, with no sideways overflow. Screenshots go to
// $OUT. Prints one JSON line; exits non-zero on the first failure.
//
// env: BASE (http://127.0.0.1:PORT/admin), TOKEN, ACCOUNT, EMAIL, OUT, CHROMIUM
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');
const { BASE, TOKEN, ACCOUNT, EMAIL, OUT } = process.env;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const ui = `${BASE}/ui`;
const results = { flow: [], pages: [] };

function fail(message) {
  console.log(JSON.stringify({ ok: false, message, ...results }));
  process.exit(1);
}

async function expectText(page, text, step) {
  const body = await page.textContent('body');
  if (!body.includes(text)) fail(`${step}: "${text}" is not on ${page.url()}`);
  results.flow.push(step);
}

const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu'] });
try {
  // 1. The ticket, worked with JavaScript off: every page is plain HTML.
  const noJs = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  const page = await noJs.newPage();
  await page.goto(`${ui}/`);
  if (!page.url().endsWith('/ui/login')) fail(`no session should lead to the sign-in page, got ${page.url()}`);
  await page.fill('#token', TOKEN);
  await Promise.all([page.waitForURL(`${ui}/`), page.click('button[type=submit]')]);
  await expectText(page, "Today's calls", 'signed in: the overview');
  await page.click('a[href$="/ui/accounts"]');
  await page.fill('#q', EMAIL);
  await Promise.all([page.waitForURL(/\/ui\/accounts\?q=/), page.click('form[role=search] button')]);
  await expectText(page, ACCOUNT, 'searched by e-mail');
  await Promise.all([page.waitForURL(new RegExp(`/ui/accounts/${ACCOUNT}$`)), page.click(`a[href$="/ui/accounts/${ACCOUNT}"]`)]);
  await expectText(page, 'suspended', 'opened the account: suspended');
  const frame = page.frameLocator('iframe.preview');
  const preview = await frame.locator('body').textContent();
  if (!preview.includes('€49.00')) fail(`the preview does not show what the customer owes: ${preview.slice(0, 300)}`);
  results.flow.push('previewed the customer page');
  await page.fill('#p-until', '7d');
  await page.fill('#p-reason', 'pays by transfer on Friday');
  await Promise.all([page.waitForURL(/done=promise/), page.click('form[action$="/promise"] button')]);
  await expectText(page, 'Promise recorded', 'recorded a promise');
  await page.fill('#n-text', 'Called: the transfer left their bank yesterday.');
  await Promise.all([page.waitForURL(/done=note/), page.click('form[action$="/notes"] button')]);
  await expectText(page, 'the transfer left their bank yesterday', 'added a note');
  await page.selectOption('#o-mode', 'allow');
  await page.fill('#o-until', '3d');
  await page.fill('#o-reason', 'paid yesterday, transfer on its way');
  await Promise.all([page.waitForURL(/done=override/), page.click('form[action$="/override"] button')]);
  await expectText(page, 'Override set', 'allowed until a date');
  const stage = await page.textContent('.stage');
  if (stage.trim() !== 'active') fail(`after "allow" the stage should be active, is ${stage}`);
  results.flow.push('the stage changed to active');
  await page.click('a[href$="/ui/audit"]');
  await expectText(page, 'override.set', 'the audit log shows it');
  await expectText(page, 'note.added', 'and the note');
  await noJs.close();

  // 2. axe-core on every page, at 1280 and 320 px, light and dark.
  const pages = ['/login', '/', '/accounts', `/accounts?q=${encodeURIComponent(EMAIL)}`, '/accounts?stage=suspended', `/accounts/${ACCOUNT}`, '/audit'];
  for (const [width, scheme] of [[1280, 'light'], [320, 'light'], [1280, 'dark']]) {
    const ctx = await browser.newContext({ bypassCSP: true, viewport: { width, height: 900 }, colorScheme: scheme });
    const p = await ctx.newPage();
    let signedIn = false;
    for (const path of pages) {
      if (path !== '/login' && !signedIn) {
        await p.goto(`${ui}/login`);
        await p.fill('#token', TOKEN);
        await Promise.all([p.waitForURL(`${ui}/`), p.click('button[type=submit]')]);
        signedIn = true;
      }
      await p.goto(`${ui}${path}`);
      await p.addScriptTag({ path: axePath });
      const axe = await p.evaluate(() => axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      const name = `console${path.replace(/[^a-z0-9]+/gi, '-').replace(/-$/, '') || '-overview'}-${width}-${scheme}`;
      await p.screenshot({ path: `${OUT}/${name}.png`, fullPage: true });
      results.pages.push({ path, width, scheme, violations: axe.violations.length, overflow });
      if (axe.violations.length > 0) {
        fail(`axe-core on ${path} at ${width}px (${scheme}): ` + axe.violations.map(v => `${v.id}: ${v.help} (${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', ')})`).join('; '));
      }
      if (overflow > 0) fail(`${path} at ${width}px scrolls sideways by ${overflow}px`);
    }
    await ctx.close();
  }
  console.log(JSON.stringify({ ok: true, ...results }));
} finally {
  await browser.close();
}
