// Settings: the wizard's pages, editable later, each saved on its own.

import { api, problem, type Choices } from "./api";
import { busy, errorLine, h, replace } from "./dom";
import { consentSection, foldersSection, passphraseSection, quotaSection, type Section } from "./sections";

export async function settings(root: HTMLElement): Promise<void> {
  const [overview, disks, suggested] = await Promise.all([api.overview(), api.disks(), api.suggestedFolders()]);
  document.body.dataset.page = "settings";
  const card = (title: string, test: string, section: Section, confirm?: (choices: Choices) => string | null) => {
    const error = errorLine();
    const saved = h("span", { class: "saved", test: `${test}-saved` });
    const save = h("button", { type: "button", class: "primary", test: `${test}-save` }, "Save");
    save.addEventListener("click", () =>
      busy(save, "Saving...", error, async () => {
        const choices = section.read();
        const question = confirm?.(choices);
        if (question && !window.confirm(question)) return;
        await api.apply(choices);
        saved.textContent = "Saved";
      }),
    );
    return h("section", { class: "card", test }, h("h2", {}, title), section.element, error, h("div", { class: "row end" }, saved, save));
  };
  const withdrawing = (choices: Choices) =>
    overview.settings.consent.storage && choices.consent_storage === false
      ? "Stop lending disk space? The vault empties gracefully: what it holds for others moves to other PCs first, then it is deleted here."
      : null;

  const autostart = h("input", { type: "checkbox", id: "autostart", test: "autostart" });
  autostart.checked = overview.autostart;
  const autostartError = errorLine();
  autostart.addEventListener("change", async () => {
    try {
      await api.setAutostart(autostart.checked);
      autostartError.show(null);
    } catch (failure) {
      autostartError.show(problem(failure));
      autostart.checked = !autostart.checked;
    }
  });

  const passphraseCard = () => {
    const section = passphraseSection(true);
    const error = errorLine();
    const save = h("button", { type: "button", class: "primary" }, "Unlock backups");
    save.addEventListener("click", async () => {
      let done = false;
      if (!(await busy(save, "Unlocking...", error, async () => void (done = await section.save())))) return;
      // Unlocked; or unlocked with a passphrase too weak to keep, and a better one is asked for.
      save.textContent = done ? "Unlocked" : "Keep the new passphrase";
      save.disabled = done;
    });
    return h("section", { class: "card" }, h("h2", {}, "Recovery passphrase"), section.element, error, h("div", { class: "row end" }, save));
  };

  const accountCard = () => {
    const who = h("p", { test: "account" });
    const say = (email: string | null) => {
      who.textContent = email
        ? `Logged in as ${email} at ${overview.hub_url}. This PC is “${overview.device_name}”.`
        : `This PC is “${overview.device_name}”, at ${overview.hub_url}. No one is logged in here; it backs up and lends on its own.`;
    };
    say(overview.email);
    const error = errorLine();
    const everywhere = h("button", { type: "button", class: "secondary", test: "logout-everywhere" }, "Log out everywhere");
    everywhere.hidden = !overview.email;
    everywhere.addEventListener("click", async () => {
      const question =
        "Log out of your account on every PC, this one too? Use this if a PC was lost or stolen. " +
        "Your PCs go on backing up and lending; forgetting snapshots or changing the recovery passphrase will ask you to log in again.";
      if (!window.confirm(question)) return;
      if (await busy(everywhere, "Logging out...", error, api.logOutEverywhere)) {
        say(null);
        everywhere.hidden = true;
      }
    });
    return h("section", { class: "card" }, h("h2", {}, "Account"), who, error, h("div", { class: "row end" }, everywhere));
  };

  replace(
    root,
    h("header", {}, h("h1", {}, "Settings")),
    accountCard(),
    card("Lending", "consent", consentSection(overview), withdrawing),
    card("Limits", "limits", quotaSection(overview, disks, true, true)),
    card("Backed-up folders", "folders", foldersSection(overview, suggested)),
    !overview.has_backup_key && overview.registered && passphraseCard(),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Start-up"),
      h("label", { class: "inline" }, autostart, " Start Surplus when I log in"),
      autostartError,
    ),
  );
}
