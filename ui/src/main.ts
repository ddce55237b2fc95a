// One page per window: the window's address names it (index.html#wizard and so on).

import "./style.css";
import { problem } from "./api";
import { h } from "./dom";
import { restore } from "./restore";
import { settings } from "./settings";
import { status } from "./status";
import { wizard } from "./wizard";

const PAGES: Record<string, (root: HTMLElement) => Promise<void>> = { wizard, settings, status, restore };

const root = document.getElementById("app")!;
const page = PAGES[location.hash.slice(1)] ?? status;
page(root).catch((failure) => root.append(h("p", { class: "error", role: "alert" }, problem(failure).message)));
