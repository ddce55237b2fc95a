// The wizard's pages and which of them a user sees: the quota page only when storage is
// donated; the passphrase page asks to type the existing passphrase when another device made the
// backup key.

import { MIN_PASSPHRASE } from "./bindings";

export type Page = "welcome" | "account" | "consent" | "quota" | "folders" | "passphrase" | "done";

export const PAGES: Page[] = ["welcome", "account", "consent", "quota", "folders", "passphrase", "done"];

export interface Answers {
  storage: boolean;
  compute: boolean;
}

export function pagesFor(answers: Answers): Page[] {
  return PAGES.filter((page) => page !== "quota" || answers.storage || answers.compute);
}

export function next(page: Page, answers: Answers): Page {
  const pages = pagesFor(answers);
  const at = pages.indexOf(page);
  return pages[Math.min(pages.length - 1, at + 1)];
}

export function previous(page: Page, answers: Answers): Page {
  const pages = pagesFor(answers);
  const at = pages.indexOf(page);
  return pages[Math.max(0, at - 1)];
}

// The core's rule, generated from surplus_agent::passphrase::MIN_CHARS.
export { MIN_PASSPHRASE };

/// Why a chosen passphrase cannot be used, or null when it can.
export function passphraseProblem(passphrase: string, again: string): string | null {
  if ([...passphrase].length < MIN_PASSPHRASE) {
    return `Use at least ${MIN_PASSPHRASE} characters.`;
  }
  if (passphrase !== again) return "The two passphrases differ.";
  return null;
}
