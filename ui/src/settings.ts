// Settings: the wizard's choices and every limit the command line offers, in one form with one
// Save. Only what the user lends is shown (ticking a resource shows its card at once); closing
// the window with changes not saved asks first. The account's actions act at once.

import { getCurrentWindow } from "@tauri-apps/api/window";
import { api, type Choices } from "./api";
import { ask, busy, errorLine, h, replace } from "./dom";
import { computeSection, diskSection, networkSection } from "./lending";
import { consentSection, foldersSection, passphraseSection, type Section } from "./sections";

export async function settings(root: HTMLElement): Promise<void> {
  const [overview, disks, suggested] = await Promise.all([api.overview(), api.disks(), api.suggestedFolders()]);
  document.body.dataset.page = "settings";

  const card = (title: string, test: string, ...children: (Node | false | null)[]) =>
    h("section", { class: "card", test }, h("h2", {}, title), ...children);
  const consent = consentSection(overview);
  const disk = diskSection(overview, disks);
  const compute = computeSection(overview);
  const network = networkSection(overview);
  const folders = foldersSection(overview, suggested);
  const sections: Section[] = [consent, disk, compute, network, folders];

  const diskCard = card("Disk space to lend", "card-disk", disk.element);
  const computeCard = card("Processor time to lend", "card-compute", compute.element);
  // Nothing is shown for a resource the user does not lend.
  const showLent = () => {
    const choices = consent.read();
    diskCard.hidden = !choices.consent_storage;
    computeCard.hidden = !choices.consent_compute;
  };
  consent.element.addEventListener("change", showLent);
  showLent();

  const autostart = h("input", { type: "checkbox", id: "autostart", test: "autostart" });
  autostart.checked = overview.autostart;

  // One Save for the whole form; what it would change is said beside it until it is saved.
  const form = h("form", { class: "settings-form", test: "settings-form" });
  const error = errorLine();
  const state = h("span", { class: "saved", role: "status", "aria-live": "polite", test: "settings-state" });
  const save = h("button", { type: "submit", class: "primary", test: "save" }, "Save");
  let dirty = false;
  const changed = (now: boolean) => {
    dirty = now;
    state.textContent = now ? "Unsaved changes" : "Saved";
  };
  form.addEventListener("input", () => changed(true));
  form.addEventListener("change", () => changed(true));
  const withdrawing = (choices: Choices) =>
    overview.settings.consent.storage && choices.consent_storage === false
      ? "Stop lending disk space? The vault empties gracefully: what it holds for others moves to other PCs first, then it is deleted here."
      : null;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void busy(save, "Saving...", error, async () => {
      const lent = consent.read();
      // A card that is hidden is not lent: its choices stay as they were.
      const choices: Choices = Object.assign(
        {},
        ...sections.filter((s) => (s === disk ? lent.consent_storage : s === compute ? lent.consent_compute : true)).map((s) => s.read()),
      );
      const question = withdrawing(choices);
      if (question && !(await ask(question, "Stop lending"))) return;
      await api.apply(choices);
      if (autostart.checked !== overview.autostart) {
        await api.setAutostart(autostart.checked);
        overview.autostart = autostart.checked;
      }
      overview.settings.consent.storage = !!lent.consent_storage;
      changed(false);
    });
  });
  void getCurrentWindow().onCloseRequested(async (event) => {
    if (dirty && !(await ask("Close without saving your changes?", "Close without saving", "Keep editing"))) event.preventDefault();
  });

  const passphraseCard = () => {
    const section = passphraseSection(true);
    const error = errorLine();
    const unlock = h("button", { type: "button", class: "primary" }, "Unlock backups");
    unlock.addEventListener("click", async () => {
      let done = false;
      if (!(await busy(unlock, "Unlocking...", error, async () => void (done = await section.save())))) return;
      // Unlocked; or unlocked with a passphrase too weak to keep, and a better one is asked for.
      unlock.textContent = done ? "Unlocked" : "Keep the new passphrase";
      unlock.disabled = done;
    });
    return card("Recovery passphrase", "card-passphrase", section.element, error, h("div", { class: "row end" }, unlock));
  };

  const accountCard = () => {
    const who = h("p", { test: "account" });
    const hub = overview.hub_url ?? "no server";
    const say = (email: string | null) => {
      who.textContent = email
        ? `Logged in as ${email} at ${hub}. This PC is “${overview.device_name}”.`
        : `This PC is “${overview.device_name}”, at ${hub}. No one is logged in here; it backs up and lends on its own.`;
    };
    say(overview.email);
    const error = errorLine();
    const everywhere = h("button", { type: "button", class: "secondary", test: "logout-everywhere" }, "Log out everywhere");
    everywhere.hidden = !overview.email;
    everywhere.addEventListener("click", async () => {
      const question =
        "Log out of your account on every PC, this one too? Use this if a PC was lost or stolen. " +
        "Your PCs go on backing up and lending; forgetting snapshots or changing the recovery passphrase will ask you to log in again.";
      if (!(await ask(question, "Log out everywhere"))) return;
      if (await busy(everywhere, "Logging out...", error, api.logOutEverywhere)) {
        say(null);
        everywhere.hidden = true;
      }
    });
    return card("Account", "card-account", who, error, h("div", { class: "row end" }, everywhere));
  };

  replace(
    form,
    card("Lending", "consent", consent.element),
    diskCard,
    computeCard,
    card("Upload speed", "card-network", network.element),
    card("Backed-up folders", "folders", folders.element),
    card("Start-up", "card-startup", h("label", { class: "inline", for: "autostart" }, autostart, " Start Surplus when I log in")),
    h("div", { class: "save-bar" }, error, h("div", { class: "row end" }, state, save)),
  );
  replace(
    root,
    h("header", {}, h("h1", {}, "Settings")),
    accountCard(),
    !overview.has_backup_key && overview.registered && passphraseCard(),
    form,
  );
}
