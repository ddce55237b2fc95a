// The pages the wizard walks through and the settings window shows again: consent, quotas,
// folders, the recovery passphrase. Each builds its part of the form and reads back the choices.

import { api, problem, type Choices, type Overview } from "./api";
import { errorLine, h, replace } from "./dom";
import { passphraseProblem } from "./wizard-flow";

export interface Section {
  element: HTMLElement;
  read(): Choices;
}

export function consentSection(overview: Overview): Section {
  const storage = h("input", { type: "checkbox", id: "consent-storage", test: "consent-storage" });
  const compute = h("input", { type: "checkbox", id: "consent-compute", test: "consent-compute" });
  storage.checked = overview.settings.consent.storage;
  compute.checked = overview.settings.consent.compute;
  const element = h(
    "div",
    { class: "consent" },
    h(
      "label",
      { class: "choice", for: "consent-storage" },
      storage,
      h(
        "div",
        {},
        h("strong", {}, "Lend spare disk space"),
        h(
          "p",
          {},
          "Surplus keeps small pieces of other subscribers' backups in a hidden folder on this PC, within the space you set next. ",
          "Every piece is encrypted before it leaves its owner's PC: nobody, not you, not us, can read it, and no piece is a whole file.",
        ),
      ),
    ),
    h(
      "label",
      { class: "choice", for: "consent-compute" },
      compute,
      h(
        "div",
        {},
        h("strong", {}, "Lend idle processor time"),
        h(
          "p",
          {},
          "When you are away from the PC and it is plugged in, Surplus runs small compute tasks for other subscribers, within limits you set next. ",
          "They run sealed off from your files and the network, and stop within a second when you come back.",
        ),
      ),
    ),
    h(
      "p",
      { class: "hint" },
      "You can withdraw either at any time in Settings. Withdrawing storage empties the vault gracefully: what it holds moves to other PCs first, then it is deleted here.",
    ),
  );
  return {
    element,
    read: () => ({ consent_storage: storage.checked, consent_compute: compute.checked }),
  };
}

export function foldersSection(overview: Overview, suggested: string[]): Section {
  const folders = new Set<string>(overview.settings.backup.folders);
  // The first time, the usual folders are offered ticked.
  if (folders.size === 0 && !overview.wizard_done) suggested.forEach((f) => folders.add(f));
  const list = h("ul", { class: "folders", test: "folders" });
  const input = h("input", { type: "text", id: "folder-path", placeholder: "/home/you/Projects", test: "folder-path", "aria-label": "Folder to add, typed" });
  const error = errorLine("folder-error");
  const show = () => {
    const all = [...new Set([...suggested, ...folders])];
    replace(
      list,
      ...all.map((folder) => {
        const box = h("input", { type: "checkbox" });
        box.checked = folders.has(folder);
        box.addEventListener("change", () => (box.checked ? folders.add(folder) : folders.delete(folder)));
        return h("li", {}, h("label", {}, box, " ", folder));
      }),
    );
    if (all.length === 0) list.append(h("li", { class: "hint" }, "No folders yet."));
  };
  // Each folder added, picked or typed, is checked by the core: it exists and can be read.
  const add = async (paths: string[]) => {
    error.show(null);
    for (const path of paths) {
      try {
        folders.add(await api.checkFolder(path));
      } catch (failure) {
        error.show(problem(failure));
      }
    }
    show();
  };
  const addTyped = async () => {
    const path = input.value.trim();
    if (!path) return;
    await add([path]);
    if (folders.has(path)) input.value = "";
  };
  const choose = async () => {
    try {
      await add(await api.chooseFolders("Choose folders to back up", true, overview.home_dir));
    } catch (failure) {
      error.show(problem(failure));
    }
  };
  input.addEventListener("keydown", (event) => {
    if ((event as KeyboardEvent).key !== "Enter") return;
    // Enter here adds the folder; it does not also submit the page.
    event.preventDefault();
    void addTyped();
  });
  show();
  const element = h(
    "div",
    {},
    h("p", {}, "Surplus backs these folders up whenever something in them changes, and every hour. Backups are encrypted on this PC before they leave it."),
    list,
    h("div", { class: "row" }, h("button", { type: "button", class: "secondary", on: { click: () => void choose() }, test: "choose-folders" }, "Choose folders...")),
    h(
      "div",
      { class: "row" },
      input,
      h("button", { type: "button", class: "secondary", on: { click: () => void addTyped() }, test: "add-folder" }, "Add typed folder"),
    ),
    error,
  );
  return { element, read: () => ({ folders: [...folders] }) };
}

/// The recovery passphrase: typed to unlock the key made on another PC (`hasKeyElsewhere`), or
/// chosen, with the agent's strength rule shown as it is typed. `save()` hands it to the agent.
/// An old passphrase that unlocks the key but is too weak turns the section into the choice of a
/// better one: `save()` then answers false, and true once the better one is kept.
export function passphraseSection(hasKeyElsewhere: boolean): {
  element: HTMLElement;
  save(): Promise<boolean>;
} {
  const element = h("div", {});
  let replacing = false;
  let form = hasKeyElsewhere ? unlockForm() : chooseForm(null);
  replace(element, form.element);
  return {
    element,
    save: async () => {
      const value = await form.read();
      if (replacing) {
        await api.changeRecoveryPassphrase(value);
        return true;
      }
      const tooWeak = await api.setRecoveryPassphrase(value);
      if (tooWeak === null) return true;
      replacing = true;
      form = chooseForm(tooWeak);
      replace(element, form.element);
      return false;
    },
  };
}

interface PassphraseForm {
  element: HTMLElement;
  /// The passphrase, or a thrown sentence saying what is wrong with it.
  read(): Promise<string>;
}

function unlockForm(): PassphraseForm {
  const first = h("input", { type: "password", id: "passphrase", autocomplete: "current-password", test: "passphrase" });
  return {
    element: h(
      "div",
      {},
      h("p", {}, "Your backups already have a recovery passphrase, chosen on your other PC. Type it to let this PC back up and restore."),
      h("label", { for: "passphrase" }, "Recovery passphrase"),
      first,
    ),
    read: async () => {
      if (!first.value) throw "Type your recovery passphrase.";
      return first.value;
    },
  };
}

/// A new passphrase, typed twice or made by the agent. `tooWeak` says why the old one must go.
function chooseForm(tooWeak: string | null): PassphraseForm {
  const first = h("input", { type: "password", id: "passphrase", autocomplete: "new-password", test: "passphrase" });
  const again = h("input", { type: "password", id: "passphrase-again", autocomplete: "new-password", test: "passphrase-again" });
  const strength = h("p", { class: "hint", role: "status", "aria-live": "polite", test: "strength" });
  const judge = async () => {
    const problem = first.value ? await api.passphraseProblem(first.value) : null;
    strength.textContent = first.value ? (problem ? sentence(problem) : "Strong enough.") : "";
  };
  first.addEventListener("input", judge);
  const generated = h("code", { class: "generated", test: "generated" });
  const generatedBox = h(
    "div",
    { class: "generated-box", hidden: true },
    h("p", {}, "Write this down and keep it somewhere safe. It is shown only now:"),
    generated,
    h("p", { class: "hint" }, "Then type it below to confirm you have it."),
  );
  const generate = h(
    "button",
    {
      type: "button",
      class: "secondary",
      test: "generate",
      on: {
        click: async () => {
          generated.textContent = await api.generatePassphrase();
          generatedBox.hidden = false;
          first.value = generated.textContent;
          first.type = "password";
          again.value = "";
          await judge();
          again.focus();
        },
      },
    },
    "Make one for me",
  );
  const intro = tooWeak
    ? h(
        "p",
        { test: "too-weak" },
        `Your passphrase opened your backups, but ${tooWeak.replace(/^the recovery passphrase /, "it ")}. `,
        "Whoever got hold of the hub's copy of your key could guess it. Choose a stronger one: it replaces the old one on all your PCs.",
      )
    : h(
        "p",
        {},
        "Your backups are encrypted with a key only you hold. If this PC is lost, your recovery passphrase opens that key on a new one. ",
        "Without it nobody, including Surplus, can restore your files.",
      );
  return {
    element: h(
      "div",
      {},
      intro,
      h("label", { for: "passphrase" }, tooWeak ? "Choose a new recovery passphrase" : "Choose a recovery passphrase"),
      h("div", { class: "row" }, first, generate),
      strength,
      generatedBox,
      h("label", { for: "passphrase-again" }, "Type it again"),
      again,
      keepACopy(() => first.value),
    ),
    read: async () => {
      const problem = passphraseProblem(first.value, again.value) ?? (await api.passphraseProblem(first.value));
      if (problem) throw sentence(problem);
      return first.value;
    },
  };
}

/// "Keep a copy": the passphrase saved to a file the user chooses, to keep offline (or print).
function keepACopy(passphrase: () => string): HTMLElement {
  const error = errorLine("copy-error");
  const said = h("p", { class: "hint", role: "status", test: "copy-kept" });
  const withPassphrase = async (work: (value: string) => Promise<void>) => {
    error.show(null);
    said.textContent = "";
    if (!passphrase()) {
      error.show("Choose the passphrase first, then keep a copy of it.");
      return;
    }
    try {
      await work(passphrase());
    } catch (failure) {
      error.show(problem(failure));
    }
  };
  const saveToFile = () =>
    withPassphrase(async (value) => {
      const { home_dir } = await api.overview();
      const path = await api.chooseFileToSave("Save your recovery passphrase", `${home_dir}/surplus-recovery-passphrase.txt`);
      if (path === null) return;
      await api.savePassphrase(path, value);
      said.textContent = `Saved to ${path}. Keep that file somewhere safe and offline, not in a folder that is backed up.`;
    });
  return h(
    "div",
    { class: "keep-copy" },
    h("p", {}, "Keep a copy somewhere safe, away from this PC:"),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", class: "secondary", test: "save-passphrase", on: { click: () => void saveToFile() } }, "Save to a file..."),
    ),
    said,
    error,
  );
}

/// An agent's message as a sentence: capitalised, with a full stop.
function sentence(message: string): string {
  const text = message.charAt(0).toUpperCase() + message.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}
