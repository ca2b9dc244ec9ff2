// Drives Debian's Chromium (puppeteer-core) through the Verge console of a running
// `verge dev`, as an operator would, and checks every page with axe-core. Run by
// core/tests/console.rs, which starts `verge dev` and passes what it printed:
//   CORE_URL, EDGE_URL, INVITE_URL (the first owner's link), CHROMIUM, SCREENSHOTS.
// Prints one JSON line of findings on success; throws (exit 1) at the first failure.

import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createHmac } from 'node:crypto';
import puppeteer from 'puppeteer-core';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const { CORE_URL, EDGE_URL, INVITE_URL, CHROMIUM, SCREENSHOTS } = process.env;
for (const [name, value] of Object.entries({ CORE_URL, EDGE_URL, INVITE_URL, CHROMIUM, SCREENSHOTS })) {
  if (!value) throw new Error(`${name} is not set`);
}
mkdirSync(SCREENSHOTS, { recursive: true });
const BROWSER_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/148.0.0.0 Safari/537.36';
const PASSWORD = 'a long console passphrase';
const findings = { pages: [], axe: {}, timings: {} };

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// RFC 6238 with HMAC-SHA-1, as authenticator apps compute it; `offset` in 30 s steps.
function totp(secret, offset = 0) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secret) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + offset));
  const digest = createHmac('sha1', key).update(counter).digest();
  const at = digest[19] & 0x0f;
  return String((digest.readUInt32BE(at) & 0x7fffffff) % 1000000).padStart(6, '0');
}

async function until(what, probe, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await probe();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  defaultViewport: { width: 1280, height: 900 },
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});

// Opens `path` in `page`, times it, screenshots it as `name`, and runs axe: any serious or
// critical violation fails the run.
async function visit(page, path, name) {
  const started = Date.now();
  const response = await page.goto(new URL(path, CORE_URL).href, { waitUntil: 'load' });
  findings.timings[name] = Date.now() - started;
  await audit(page, name);
  return response;
}

async function audit(page, name) {
  await page.screenshot({ path: `${SCREENSHOTS}/${name}.png`, fullPage: true });
  findings.pages.push(name);
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(AXE);
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  findings.axe[name] = result.violations.map((v) => `${v.impact}:${v.id}`);
  check(bad.length === 0, `axe on ${name}: ${JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) })))}`);
}

async function submit(page, formSelector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.$eval(formSelector, (form) => form.requestSubmit())]);
}

async function text(page, selector) {
  return page.$eval(selector, (el) => el.textContent.trim());
}

async function join(context, link, email, name) {
  const page = await context.newPage();
  await page.goto(link, { waitUntil: 'load' });
  await page.type('#f-email', email);
  await page.type('#f-name', name);
  await page.type('#f-password', PASSWORD);
  await submit(page, 'form');
  check(page.url().endsWith('/console/overview'), `${email} did not land on the overview: ${page.url()}`);
  return page;
}

async function invite(page, role) {
  await visit(page, '/console/operators', `operators-before-${role}`);
  await page.select('#f-role', role);
  await submit(page, 'form[action="/console/operators"]');
  return text(page, '[data-testid="invitation"]');
}

// --- The first owner joins by the link `verge dev` printed -------------------------------
const ownerContext = await browser.createBrowserContext();
const invitePage = await ownerContext.newPage();
await invitePage.goto(INVITE_URL, { waitUntil: 'load' });
await audit(invitePage, 'invitation');
// A weak password is refused next to its field, and nothing is created.
await invitePage.type('#f-email', 'owner@example.com');
await invitePage.type('#f-name', 'Olive Owner');
await invitePage.type('#f-password', 'short');
await submit(invitePage, 'form');
check((await text(invitePage, '#f-password-error')).includes('at least'), 'a short password is not refused at its field');
await invitePage.close();
const owner = await join(ownerContext, INVITE_URL, 'owner@example.com', 'Olive Owner');
await audit(owner, 'overview');
check((await text(owner, 'h1')) === 'Overview', 'the overview has no heading');
// The printed link is single-use.
const reused = await (await browser.createBrowserContext()).newPage();
const reusedAnswer = await reused.goto(INVITE_URL, { waitUntil: 'load' });
check(reusedAnswer.status() === 409, `a used invitation answered ${reusedAnswer.status()}`);

// --- A short link, followed at the edge, and its click in the chart -----------------------
await visit(owner, '/console/links', 'links');
await owner.type('#f-url', 'not a url');
await submit(owner, 'form[action="/console/links"][method="post"]');
check(owner.url().endsWith('/console/links'), 'a refused link left the page');
check((await owner.$('#f-url[aria-invalid="true"]')) !== null, 'the bad URL is not marked at its field');
check((await owner.$('#f-url-error')) !== null, 'the bad URL has no message at its field');
await owner.$eval('#f-url', (el) => { el.value = ''; });
await owner.type('#f-url', 'https://example.com/from-the-console');
await owner.type('#f-alias', 'console-made');
await owner.type('#f-tags', 'console, test');
await submit(owner, 'form[action="/console/links"][method="post"]');
check(/\/console\/links\/lnk_/.test(owner.url()), `creating a link went to ${owner.url()}`);
const shortUrl = await text(owner, 'section a[href^="http"]');
check(shortUrl.startsWith(EDGE_URL), `the short URL ${shortUrl} is not on the printed edge ${EDGE_URL}`);
const followed = await until('the edge to serve the new link', async () => {
  const answer = await fetch(shortUrl, { redirect: 'manual', headers: { 'user-agent': BROWSER_UA } });
  return answer.status === 302 ? answer : null;
}, 5000);
check(followed.headers.get('location') === 'https://example.com/from-the-console', `the edge sent ${followed.headers.get('location')}`);
const linkPage = owner.url().split('?')[0];
await until('the click to reach the analytics', async () => {
  await owner.goto(linkPage, { waitUntil: 'load' });
  const clicks = Number(await text(owner, '[data-testid="clicks"]'));
  const charted = Number(await owner.$eval('figure.chart', (f) => f.dataset.total));
  return clicks >= 1 && charted >= 1;
}, 20000);
check((await owner.$('figure.chart svg polyline, figure.chart svg path')) !== null, 'the chart has no line');
await audit(owner, 'link-detail');
// The QR code and the CSV export are served to the signed-in operator.
const qr = await owner.evaluate(async (src) => (await fetch(src)).headers.get('content-type'), `${linkPage}/qr.svg`);
check(qr.startsWith('image/svg+xml'), `QR answered ${qr}`);
const csv = await owner.evaluate(async () => (await fetch('/console/links/export.csv')).text());
check(csv.includes('console-made'), 'the CSV export lacks the link');

// --- A CSV import shows its progress and what it refused ----------------------------------
await visit(owner, '/console/links/import', 'links-import');
const rows = Array.from({ length: 230 }, (_, i) => `https://example.com/imported/${i},imported-${i},imported`);
rows[7] = 'ftp://example.com/nope,imported-7,imported';
await owner.$eval('#f-csv', (el, csv) => { el.value = csv; }, `url,alias,tags\n${rows.join('\n')}\n`);
await submit(owner, 'form[action="/console/links/import"]');
check((await text(owner, '[data-testid="import-done"]')) === 'Done: 229 created, 1 refused, of 230.', 'the import summary is wrong');
check((await owner.$$('progress')).length === 3, 'the import did not report each batch');
check((await text(owner, 'ul.error li')).startsWith('line 9:'), 'the refused line is not named');
await audit(owner, 'links-imported');

// --- A request without the CSRF token is refused -----------------------------------------
const forged = await owner.evaluate(async () => {
  const answer = await fetch('/console/links', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'url=https%3A%2F%2Fexample.com%2Fforged',
  });
  return answer.status;
});
check(forged === 403, `a form without its CSRF token answered ${forged}`);

// --- A flag, its kill switch, and the OFREP answer at the edge ----------------------------
await visit(owner, '/console/flags', 'flags');
await owner.type('#f-project', 'web');
await owner.type('#f-name', 'production');
await submit(owner, 'form[action="/console/flags"]');
check(owner.url().endsWith('/console/flags/web/production'), `creating an environment went to ${owner.url()}`);
await owner.type('#f-client_key_name', 'browser test');
await submit(owner, 'form:has(input[value="client-key"])');
const clientKey = await text(owner, '[data-testid="client-key"]');
await owner.type('#f-key', 'new-checkout');
await submit(owner, 'form:has(input[value="put-flag"])');
check((await text(owner, '.notice')).includes('Saved new-checkout'), 'saving the flag said nothing');
const ofrep = async () => {
  const answer = await fetch(`${EDGE_URL}/ofrep/v1/evaluate/flags/new-checkout`, {
    method: 'POST',
    headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ context: { targetingKey: 'u1' } }),
  });
  return { status: answer.status, body: await answer.json() };
};
const before = await until('the edge to serve the flag', async () => {
  const answer = await ofrep();
  return answer.status === 200 && answer.body.value === true ? answer : null;
}, 5000);
// A broken rule is refused and located.
await owner.$eval('#f-key', (el) => { el.value = 'broken'; });
await owner.$eval('#f-definition', (el) => {
  el.value = JSON.stringify({ state: 'ENABLED', variants: { on: true }, defaultVariant: 'missing' });
});
await submit(owner, 'form:has(input[value="put-flag"])');
check((await owner.$('#f-definition-error')) !== null, 'a broken flag is not refused at its rule');
await audit(owner, 'flag-environment');
await owner.goto(new URL('/console/flags/web/production', CORE_URL).href, { waitUntil: 'load' });
await submit(owner, 'form[action$="/flags/new-checkout/kill"]');
const after = await until('the kill switch to reach the edge', async () => {
  const answer = await ofrep();
  return answer.body.value !== true ? answer : null;
}, 5000);
findings.ofrep = { before: before.body, after: after.body };

// --- A protected environment: a second operator approves ---------------------------------
await owner.goto(new URL('/console/flags', CORE_URL).href, { waitUntil: 'load' });
await owner.type('#f-project', 'web');
await owner.type('#f-name', 'staging');
await owner.select('#f-protected', 'true');
await submit(owner, 'form[action="/console/flags"]');
await owner.type('#f-key', 'guarded');
await submit(owner, 'form:has(input[value="put-flag"])');
check((await text(owner, '.notice')).includes('Proposed guarded'), 'a protected edit did not become a change request');
// Its author cannot approve it.
await submit(owner, 'form[action$="/approve"]');
const selfApproval = await text(owner, '.problem');
check(/own|author/i.test(selfApproval), `self-approval was not refused: ${selfApproval}`);
const editorLink = await invite(owner, 'editor');
const editorContext = await browser.createBrowserContext();
const editor = await join(editorContext, editorLink, 'editor@example.com', 'Eddie Editor');
await visit(editor, '/console/flags/web/staging', 'flag-change-request');
await submit(editor, 'form[action$="/approve"]');
check((await text(editor, '.notice')).includes('Approved'), 'the approval said nothing');
check((await editor.$$eval('td code', (cells) => cells.map((c) => c.textContent))).includes('guarded'), 'the approved flag is not listed');

// --- A viewer sees no controls, and the server refuses them anyway -----------------------
const viewerLink = await invite(owner, 'viewer');
const viewerContext = await browser.createBrowserContext();
const viewer = await join(viewerContext, viewerLink, 'viewer@example.com', 'Vera Viewer');
await visit(viewer, '/console/links', 'links-as-viewer');
check((await viewer.$('form[action="/console/links"][method="post"]')) === null, 'a viewer sees the new-link form');
await visit(viewer, '/console/flags/web/production', 'flags-as-viewer');
check((await viewer.$('button.danger')) === null, 'a viewer sees a kill switch');
const viewerCsrf = await viewer.$eval('input[name="csrf"]', (el) => el.value);
const refused = await viewer.evaluate(async (csrf) => {
  const body = new URLSearchParams({ csrf, url: 'https://example.com/by-a-viewer' });
  return (await fetch('/console/links', { method: 'POST', body })).status;
}, viewerCsrf);
check(refused === 403, `a viewer's forged create answered ${refused}`);
const killByViewer = await viewer.evaluate(async (csrf) => {
  const body = new URLSearchParams({ csrf });
  return (await fetch('/console/flags/web/production/flags/new-checkout/kill', { method: 'POST', body })).status;
}, viewerCsrf);
check(killByViewer === 403, `a viewer's kill answered ${killByViewer}`);

// --- Every other page renders and passes axe ---------------------------------------------
for (const section of ['ratelimit', 'customers', 'autocomplete', 'catalog', 'inventory', 'orders', 'jobs', 'webhooks', 'keys']) {
  const answer = await visit(owner, `/console/${section}`, section);
  check(answer.status() === 200, `/console/${section} answered ${answer.status()}`);
}
// Item pages with their actions, and a document created through the JSON editor.
const policy = await visit(owner, '/console/ratelimit/policies/rl_default_ofrep_client', 'ratelimit-policy');
check(policy.status() === 200 && (await text(owner, 'h1')).includes('rl_default_ofrep_client'), 'the policy page is missing');
await visit(owner, '/console/webhooks', 'webhooks-create');
await owner.$eval('details', (d) => { d.open = true; });
await owner.$eval('#f-endpoints-json', (el) => { el.value = '{"url": "https://example.com/hooks/verge"}'; });
await submit(owner, 'form[action^="/console/webhooks/endpoints"]');
check((await text(owner, 'pre.secret')).includes('whsec_'), 'the new endpoint\'s secret is not shown once');
await audit(owner, 'webhooks-created');
await Promise.all([owner.waitForNavigation({ waitUntil: 'load' }), owner.click('table a[href^="/console/webhooks/endpoints/"]')]);
await audit(owner, 'webhook-endpoint');
check((await owner.$('form[action*="/console/webhooks/endpoints/"] button.danger')) !== null, 'the endpoint has no delete action');
await visit(owner, '/console/audit', 'audit');
const actors = await owner.$$eval('tbody tr td:nth-child(2)', (cells) => cells.map((c) => c.textContent));
check(actors.includes('editor@example.com'), 'the audit log does not name the approving operator');
await visit(owner, '/console/operators', 'operators');
await visit(owner, '/console/overview', 'overview-after');
await owner.setViewport({ width: 390, height: 844 });
await visit(owner, '/console/links', 'links-phone');
const overflow = await owner.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
check(overflow <= 1, `the links page overflows a phone by ${overflow}px`);
await owner.setViewport({ width: 1280, height: 900 });

// --- A second factor: set up, then required at sign-in -------------------------------------
await visit(owner, '/console/account', 'account');
await submit(owner, 'form[action="/console/account/totp"]');
const secret = await text(owner, '[data-testid="totp-secret"]');
await audit(owner, 'account-totp-setup');
await owner.type('#f-code', '000000' === totp(secret) ? '111111' : '000000');
await submit(owner, 'form[action="/console/account/totp"]');
check((await owner.$('#f-code-error')) !== null, 'a wrong code turned the second factor on');
await owner.type('#f-code', totp(secret));
await submit(owner, 'form[action="/console/account/totp"]');
check((await text(owner, 'section .ok')).includes('On'), 'the second factor is not on');

// --- Sign out; sign in again ---------------------------------------------------------------
await submit(owner, 'form[action="/console/sign-out"]');
check(owner.url().includes('/console/sign-in'), `signing out went to ${owner.url()}`);
await owner.goto(new URL('/console/overview', CORE_URL).href, { waitUntil: 'load' });
check(owner.url().includes('/console/sign-in?next='), 'a signed-out operator still sees the overview');
await audit(owner, 'sign-in');
await owner.type('#f-email', 'owner@example.com');
await owner.type('#f-password', 'not the password');
await submit(owner, 'form');
check((await text(owner, '.problem')).includes('do not match'), 'a wrong password is not refused');
await owner.$eval('#f-email', (el) => { el.value = ''; });
await owner.type('#f-email', 'owner@example.com');
await owner.type('#f-password', PASSWORD);
await submit(owner, 'form');
check((await text(owner, '.problem')).includes('6-digit code'), 'the password alone signed in past the second factor');
await owner.$eval('#f-email', (el) => { el.value = ''; });
await owner.type('#f-email', 'owner@example.com');
await owner.type('#f-password', PASSWORD);
// The code that turned it on is used up; the next step's code is good (one step of drift).
await owner.type('#f-code', totp(secret, 1));
await submit(owner, 'form');
check(owner.url().endsWith('/console/overview'), `signing in went to ${owner.url()}`);

await browser.close();
console.log(JSON.stringify(findings));
