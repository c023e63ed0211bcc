// End-to-end check of the avitalk web app in headless Chromium (driven by playwright-core).
//
//   node e2e.mjs PLAYWRIGHT_CORE_DIR CHROMIUM URL SPEECH.wav OUT_DIR
//
// Uploads SPEECH.wav, waits for the instruction and the face, takes screenshots of the page and of
// the face canvas (OUT_DIR/page.png, OUT_DIR/face.png) and prints one JSON line with what it saw.
import { createRequire } from 'node:module';
import path from 'node:path';

const [pwDir, chromium, url, speech, outDir] = process.argv.slice(2);
const require = createRequire(path.join(pwDir, 'package.json'));
const { chromium: browserType } = require(pwDir);

const browser = await browserType.launch({
  executablePath: chromium,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'],
});
const result = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
  page.on('console', (m) => result.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => result.console.push(`pageerror: ${e.message}`));
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url);
  await page.waitForFunction(() => document.getElementById('info').textContent.length > 0);
  await page.setInputFiles('#file', speech);
  await page.waitForFunction(() => document.body.dataset.ready !== undefined || document.querySelector('#status.error'),
    null, { timeout: 180000 });
  result.status = await page.textContent('#status');
  result.ready = await page.evaluate(() => document.body.dataset.ready);
  result.instruction = await page.inputValue('#instruction');
  result.errors = await page.$$eval('.viewer .error', (els) => els.map((e) => e.textContent));
  await page.screenshot({ path: path.join(outDir, 'page.png') });
  const canvas = await page.$('.viewer canvas');
  if (canvas) await canvas.screenshot({ path: path.join(outDir, 'face.png') });
  result.links = await page.$$eval('.viewer .links a', (els) => els.map((a) => a.getAttribute('href')));
  result.offsite = requests.filter((u) => !u.startsWith(url) && !u.startsWith('blob:') && !u.startsWith('data:'));
  // regenerate with an edited, timed instruction and two samples
  await page.fill('#instruction', '0-0.7s: calm and neutral; 0.7s-: increasingly angry, brows lowered');
  await page.selectOption('#samples', '2');
  await page.evaluate(() => { delete document.body.dataset.ready; });
  await page.click('#go');
  await page.waitForFunction(() => document.body.dataset.ready !== undefined || document.querySelector('#status.error'),
    null, { timeout: 180000 });
  result.ready2 = await page.evaluate(() => document.body.dataset.ready);
  result.used2 = await page.textContent('#instruction-used');
  result.canvases2 = await page.$$eval('.viewer canvas', (els) => els.length);
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
