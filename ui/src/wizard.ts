// The first-run wizard: welcome, account, consent, quotas, folders, recovery passphrase, done.
// Nothing is donated before the consent page is answered: the agent's settings keep both
// resources off until then.

import { api, type Enrolled } from "./api";
import { busy, errorLine, h, replace } from "./dom";
import { quotaSection } from "./lending";
import { consentSection, foldersSection, passphraseSection } from "./sections";
import { next, pagesFor, previous, type Answers, type Page } from "./wizard-flow";

const TITLES: Record<Page, string> = {
  welcome: "Welcome to Surplus",
  account: "Your account",
  consent: "What may this PC lend?",
  quota: "How much?",
  folders: "What to back up",
  passphrase: "Your recovery passphrase",
  done: "All set",
};

export async function wizard(root: HTMLElement): Promise<void> {
  let overview = await api.overview();
  let enrolled: Enrolled | null = null;
  const answers: Answers = { ...overview.settings.consent };
  let page: Page = overview.registered ? "consent" : "welcome";
  // The server to sign up at: the one this build or its installer names, else the one the user
  // gives on the first page.
  let hubUrl = overview.hub_url ?? "";

  const steps = h("ol", { class: "steps", "aria-label": "Setup steps" });
  const body = h("section", { class: "page" });
  const error = errorLine();
  const back = h("button", { type: "button", class: "secondary", test: "back" }, "Back");
  const forward = h("button", { type: "button", class: "primary", test: "next" }, "Continue");
  root.append(h("header", {}, h("h1", { test: "title" }), steps), body, error, h("footer", {}, back, forward));

  let leave: () => Promise<void> = async () => {};
  // Set by a page that has more to ask before the wizard moves on.
  let stay = false;

  const go = async (to: Page) => {
    page = to;
    overview = await api.overview();
    document.body.dataset.page = page;
    root.querySelector("h1")!.textContent = TITLES[page];
    replace(
      steps,
      ...pagesFor(answers).map((p) =>
        h("li", { class: p === page ? "current" : "", "aria-current": p === page ? "step" : false }, TITLES[p]),
      ),
    );
    back.hidden = page === "welcome" || page === "done" || (page === "consent" && overview.registered);
    forward.textContent = page === "done" ? "Finish" : page === "welcome" ? "Get started" : "Continue";
    error.show(null);
    leave = await render(page);
  };

  const render = async (p: Page): Promise<() => Promise<void>> => {
    switch (p) {
      case "welcome": {
        const intro = [
          h("p", { class: "lead" }, "Surplus lends this PC's spare disk space and idle processor time to other subscribers, only as far as you allow."),
          h("p", {}, "In return, your folders are backed up, encrypted and spread over many PCs, and you can run compute jobs on theirs."),
          h("p", {}, "This takes about two minutes."),
        ];
        if (overview.hub_url) {
          replace(body, ...intro);
          return async () => {};
        }
        // No server came with this copy of Surplus: ask for it, and check that it answers
        // before going on.
        const hub = h("input", {
          type: "url",
          id: "hub",
          value: hubUrl,
          placeholder: "https://hub.example.com",
          autocomplete: "url",
          "aria-describedby": "hub-hint",
          test: "hub",
        });
        replace(
          body,
          ...intro,
          h("label", { for: "hub" }, "Your Surplus server"),
          hub,
          h("p", { class: "hint", id: "hub-hint" }, "The address your Surplus provider gave you, such as https://hub.example.com."),
        );
        hub.focus();
        return async () => {
          await api.checkHub(hub.value);
          hubUrl = hub.value.trim();
        };
      }
      case "account": {
        const signup = h("input", { type: "radio", name: "mode", id: "mode-signup", test: "mode-signup" });
        const login = h("input", { type: "radio", name: "mode", id: "mode-login", test: "mode-login" });
        signup.checked = true;
        const hub = h("input", { type: "url", id: "hub-address", value: hubUrl, test: "hub-address" });
        const email = h("input", { type: "email", id: "email", autocomplete: "email", test: "email" });
        const password = h("input", { type: "password", id: "password", autocomplete: "new-password", test: "password" });
        const name = h("input", { type: "text", id: "device-name", value: overview.device_name, test: "device-name" });
        replace(
          body,
          h(
            "div",
            { class: "row" },
            h("label", { class: "inline" }, signup, " I am new: create my account"),
            h("label", { class: "inline" }, login, " I have an account"),
          ),
          h("label", { for: "email" }, "Email"),
          email,
          h("label", { for: "password" }, "Password"),
          password,
          h("label", { for: "device-name" }, "Name of this PC"),
          name,
          h("details", {}, h("summary", {}, "Server"), h("label", { for: "hub-address" }, "Surplus server address"), hub),
        );
        email.focus();
        return async () => {
          enrolled = await api.enroll({
            hub: hub.value,
            email: email.value,
            password: password.value,
            signup: signup.checked,
            device_name: name.value,
          });
        };
      }
      case "consent": {
        const section = consentSection(overview);
        replace(body, section.element);
        return async () => {
          const choices = section.read();
          answers.storage = !!choices.consent_storage;
          answers.compute = !!choices.consent_compute;
          await api.apply(choices);
        };
      }
      case "quota": {
        const disks = answers.storage ? await api.disks() : [];
        const section = quotaSection(overview, disks, answers.storage, answers.compute);
        replace(body, section.element);
        return async () => {
          await api.apply(section.read());
        };
      }
      case "folders": {
        const section = foldersSection(overview, await api.suggestedFolders());
        replace(body, section.element);
        return async () => {
          await api.apply(section.read());
        };
      }
      case "passphrase": {
        if (overview.has_backup_key) {
          replace(body, h("p", {}, "This PC already holds the key to your backups."));
          return async () => {};
        }
        const section = passphraseSection(enrolled?.has_backup_key ?? false);
        replace(body, section.element);
        return async () => {
          // An old passphrase too weak to keep: the page now asks for a better one.
          if (!(await section.save())) stay = true;
        };
      }
      case "done": {
        const autostart = h("input", { type: "checkbox", id: "autostart", test: "autostart" });
        autostart.checked = true;
        const lent = [answers.storage && "disk space", answers.compute && "processor time"].filter(Boolean);
        replace(
          body,
          h(
            "p",
            { class: "lead" },
            lent.length > 0 ? `This PC now lends ${lent.join(" and ")}.` : "This PC lends nothing for now; you can change that in Settings.",
          ),
          h("p", {}, "Your first backup starts now. Surplus lives in the tray: pause it, back up or restore from there."),
          h("label", { class: "inline" }, autostart, " Start Surplus when I log in"),
        );
        return async () => {
          await api.finishWizard(autostart.checked);
          await api.openWindow("status");
          await api.closeWindow("wizard");
        };
      }
    }
  };

  forward.addEventListener("click", async () => {
    stay = false;
    if ((await busy(forward, "Working...", error, leave)) && !stay && page !== "done") {
      await go(next(page, answers));
    }
  });
  back.addEventListener("click", () => go(previous(page, answers)));
  // Enter in a field submits the page, as in any form.
  root.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement;
    if (event.key === "Enter" && !event.defaultPrevented && target.tagName === "INPUT" && !forward.disabled) {
      event.preventDefault();
      forward.click();
    }
  });
  await go(page);
}
