// Lighthouse accessibility audit of the page in its finished state (not only as first loaded):
// photos picked, rendered, checked; the cards with their images, check tables, buttons and
// snippets are what get audited. Usage (CHROME_PATH set):
//   node snapshot.mjs URL OUT.json PHOTO [PHOTO ...]
// Writes {score, failing: {audit id: title}} to OUT.json. tests/web/test_lighthouse.py runs it.
import {writeFileSync} from 'node:fs';
import puppeteer from 'puppeteer-core';
import {snapshot} from 'lighthouse';

const [url, out, ...photos] = process.argv.slice(2);
const browser = await puppeteer.launch({
  executablePath: process.env.CHROME_PATH,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const page = await browser.newPage();
  await page.setViewport({width: 1280, height: 900});
  await page.goto(url, {waitUntil: 'load'});
  await page.waitForFunction(() => document.querySelector('#preset').options.length > 2);
  await (await page.$('#files')).uploadFile(...photos);
  await page.click('#go');
  await page.waitForFunction((n) => {
    const items = [...document.querySelectorAll('#items .item')];
    return items.length === n && items.every(e => e.classList.contains('failed')
      || (e.classList.contains('done') && e.querySelector('table.rules')));
  }, {timeout: 120000}, photos.length);
  // one card's before/after slider moved and its HTML shown: those states get audited too
  await page.$eval('#items .item.done .compare input', el => { el.value = 50; el.dispatchEvent(new Event('input')); });
  await page.$eval('#items .item.done .snippet', el => { el.open = true; });
  const result = await snapshot(page, {config: {extends: 'lighthouse:default',
                                                settings: {onlyCategories: ['accessibility']}}});
  const lhr = result.lhr;
  const failing = Object.fromEntries(Object.values(lhr.audits)
    .filter(a => a.score !== null && a.score < 1 && a.scoreDisplayMode === 'binary')
    .map(a => [a.id, a.title]));
  writeFileSync(out, JSON.stringify({score: lhr.categories.accessibility.score, failing}, null, 2) + '\n');
} finally {
  await browser.close();
}
