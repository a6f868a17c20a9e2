// Debian's Chromium, headless, as every benchmark here drives it.
import { chromium } from "@playwright/test";

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });

/** Log in through the form (demo password) and land on the board. */
export async function logIn(page, email) {
  await page.goto("/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("turns-demo");
  await page.getByRole("button", { name: "Log in" }).click();
  await page.waitForURL(/\/board/);
}
