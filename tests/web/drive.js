// Drives phone.html in headless Chromium (Debian's /usr/bin/chromium, through playwright-core:
// no browser download) for tests/e2e/test_webrtc.py. Prints one JSON line with what the page
// saw: call state, timings, WebRTC stats of the inbound and outbound audio.
//   node drive.js URL HOLD_SECONDS FAKE_AUDIO_WAV USER_DATA_DIR
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [url, holdSeconds, audioFile, userDataDir] = process.argv.slice(2);
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      // what works on these machines (no sandbox as root, no background connections)
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // fake microphone playing the test's tone, no permission prompt
      "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${audioFile}`,
      // the test's self-signed WSS certificate (and rtpengine's DTLS one is checked by fingerprint)
      "--ignore-certificate-errors",
      // host candidates as addresses, not mDNS names rtpengine cannot resolve
      "--disable-features=WebRtcHideLocalIpsWithMdns",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  const out = { ok: false };
  try {
    const page = context.pages()[0] || (await context.newPage());
    page.on("console", (m) => process.stderr.write(`page: ${m.text()}\n`));
    await page.goto(url);
    // as callee: say when registered (the test then lets the phone call), wait for the call
    await page.waitForFunction(() => window.kemiPhone.registered || window.kemiPhone.state === "registration failed",
      null, { timeout: 30000 }).catch(() => {});
    process.stderr.write(`kemi-phone: ${await page.evaluate(() => window.kemiPhone.state)}\n`);
    await page.waitForFunction(() => ["confirmed", "failed", "ended", "registration failed"]
      .includes(window.kemiPhone.state), null, { timeout: 45000 });
    out.state = await page.evaluate(() => window.kemiPhone.state);
    if (out.state === "confirmed") {
      // media must be connected (ICE + DTLS) before the hold time counts
      await page.waitForFunction(() => window.kemiPhone.times.media, null, { timeout: 20000 }).catch(() => {});
      await page.waitForTimeout(Number(holdSeconds) * 1000);
      out.stats = await page.evaluate(() => window.kemiPhone.stats());
      await page.evaluate(() => window.kemiPhone.hangup());
      await page.waitForFunction(() => window.kemiPhone.state === "ended", null, { timeout: 10000 }).catch(() => {});
    }
    out.times = await page.evaluate(() => window.kemiPhone.times);
    out.events = await page.evaluate(() => window.kemiPhone.events);
    out.failure = await page.evaluate(() => window.kemiPhone.failure || null);
    out.ok = true;
  } catch (err) {
    out.error = String(err);
  } finally {
    await context.close();
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => { process.stdout.write(JSON.stringify({ ok: false, error: String(err) }) + "\n"); });
