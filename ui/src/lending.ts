// How much this PC lends, and when: the disk and its space, the processor time (a preset or
// every limit the command line offers), and the upload speed. The wizard's "How much?" page shows
// the first two; the settings show each as a card of its own, only for what the user lends.

import type { Choices, Overview } from "./api";
import { h, replace } from "./dom";
import { formatSize } from "./format";
import { bytesPerSecond, megabytesPerSecond, PRESETS, presetOf, splitWindow, type PresetName } from "./limits";
import { preferredDisk, quotaNumbers, sliderRange, type Disk } from "./quota";
import type { Section } from "./sections";

/// The disk the vault goes on and how much of it to lend.
export function diskSection(overview: Overview, disks: Disk[]): Section {
  const chosen = overview.settings.storage.quota_bytes;
  let disk = preferredDisk(disks);
  const select = h("select", { id: "vault-disk", test: "vault-disk" });
  for (const d of disks) {
    const option = h("option", { value: d.mount_point }, `${d.mount_point} (${formatSize(d.free_bytes)} free)`);
    option.selected = d === disk;
    select.append(option);
  }
  const slider = h("input", { type: "range", id: "quota", test: "quota" });
  const sliderValue = h("output", { for: "quota", test: "quota-value" });
  const numbers = h("ul", { class: "numbers", test: "quota-numbers" });
  const show = () => {
    if (!disk) return;
    const size = formatSize(Number(slider.value));
    sliderValue.textContent = size;
    slider.setAttribute("aria-valuetext", size);
    replace(numbers, ...quotaNumbers(disk, Number(slider.value)).map((line) => h("li", {}, line)));
  };
  const range = (keep: number | null) => {
    if (!disk) return;
    const r = sliderRange(disk, keep);
    slider.min = String(r.min);
    slider.max = String(r.max);
    slider.step = String(r.step);
    slider.value = String(r.value);
    slider.disabled = r.max === 0;
    show();
  };
  select.addEventListener("change", () => {
    disk = disks.find((d) => d.mount_point === select.value);
    range(null);
  });
  slider.addEventListener("input", show);
  range(chosen);
  const element =
    disks.length === 0
      ? h("p", { class: "error" }, "No disk with room to spare was found.")
      : h(
          "div",
          {},
          h("label", { for: "vault-disk" }, "Disk"),
          select,
          h("label", { for: "quota" }, "Lend at most ", sliderValue),
          slider,
          numbers,
        );
  return {
    element,
    read: () => (disk ? { vault_disk: disk.mount_point, quota_bytes: Number(slider.value) } : {}),
  };
}

/// A slider whose value is also said in words, to the eye and to a screen reader.
function slider(id: string, min: number, max: number, step: number, value: number, say: (value: number) => string) {
  const input = h("input", { type: "range", id, min: String(min), max: String(max), step: String(step), test: id });
  input.value = String(value);
  const output = h("output", { for: id, test: `${id}-value` });
  const show = () => {
    output.textContent = say(Number(input.value));
    input.setAttribute("aria-valuetext", say(Number(input.value)));
  };
  input.addEventListener("input", show);
  show();
  return { input, output, set: (to: number) => ((input.value = String(to)), show()) };
}

/// When and how much processor time to lend: a preset, or each limit.
export function computeSection(overview: Overview): Section {
  const c = overview.settings.compute;
  const cores = slider("cores", 10, 100, 5, c.cores_percent, (v) => `${v}% of the cores`);
  const idle = slider("idle-minutes", 1, 60, 1, c.idle_minutes, (v) => (v === 1 ? "1 minute" : `${v} minutes`));
  const busy = slider("busy-cpu", 5, 100, 5, c.busy_cpu_percent, (v) => `${v}%`);
  const battery = h("input", { type: "checkbox", id: "on-battery", test: "on-battery" });
  battery.checked = c.on_battery;
  const fullScreen = h("input", { type: "checkbox", id: "full-screen", test: "full-screen" });
  fullScreen.checked = c.pause_in_full_screen;
  const hot = h("input", { type: "checkbox", id: "heat-limit", test: "heat-limit" });
  const celsius = h("input", { type: "number", id: "max-celsius", min: "40", max: "100", step: "1", test: "max-celsius", "aria-label": "Degrees Celsius" });
  hot.checked = c.max_cpu_celsius != null;
  celsius.value = String(c.max_cpu_celsius ?? 85);
  const windowed = h("input", { type: "checkbox", id: "window", test: "window" });
  const times = splitWindow(c.window);
  windowed.checked = times !== null;
  const from = h("input", { type: "time", id: "window-from", test: "window-from", "aria-label": "From" });
  const to = h("input", { type: "time", id: "window-to", test: "window-to", "aria-label": "Until" });
  [from.value, to.value] = times ?? ["22:00", "07:00"];

  const presets = h("div", { class: "presets", role: "radiogroup", "aria-label": "How much to lend" });
  const radios = new Map<PresetName | "custom", HTMLInputElement>();
  const hint = h("p", { class: "hint", test: "preset-hint" });
  const limits = () => ({
    cores_percent: Number(cores.input.value),
    idle_minutes: Number(idle.input.value),
    busy_cpu_percent: Number(busy.input.value),
    on_battery: battery.checked,
  });
  const follow = () => {
    const current = presetOf(limits());
    radios.get(current)!.checked = true;
    hint.textContent = current === "custom" ? "Your own mix of the limits below." : PRESETS[current].description;
  };
  for (const [name, label] of [
    ...(Object.entries(PRESETS) as [PresetName, { label: string }][]).map(([n, p]) => [n, p.label] as const),
    ["custom", "Custom"] as const,
  ]) {
    const radio = h("input", { type: "radio", name: "preset", id: `preset-${name}`, value: name, test: `preset-${name}` });
    radio.addEventListener("change", () => {
      if (name === "custom") return follow();
      const p = PRESETS[name].limits;
      cores.set(p.cores_percent);
      idle.set(p.idle_minutes);
      busy.set(p.busy_cpu_percent);
      battery.checked = p.on_battery;
      follow();
    });
    radios.set(name, radio);
    presets.append(h("label", { class: "inline", for: `preset-${name}` }, radio, ` ${label}`));
  }
  for (const input of [cores.input, idle.input, busy.input, battery]) input.addEventListener("input", follow);
  battery.addEventListener("change", follow);
  follow();

  const element = h(
    "div",
    { class: "limits" },
    presets,
    hint,
    h("label", { for: "cores" }, "Use at most ", cores.output),
    cores.input,
    h("label", { for: "idle-minutes" }, "Start lending after ", idle.output, " away from the keyboard and mouse"),
    idle.input,
    h("label", { for: "busy-cpu" }, "Pause while other programs use more than ", busy.output, " of the processor"),
    busy.input,
    h("label", { class: "inline", for: "on-battery" }, battery, " Lend while running on battery"),
    h("label", { class: "inline", for: "full-screen" }, fullScreen, " Pause while a full-screen app is in front (a game, a film, a video call)"),
    h("div", { class: "row" }, h("label", { class: "inline", for: "heat-limit" }, hot, " Pause while the processor is hotter than"), celsius, "°C"),
    h("div", { class: "row" }, h("label", { class: "inline", for: "window" }, windowed, " Lend only between"), from, "and", to),
  );
  return {
    element,
    read: (): Choices => ({
      ...limits(),
      pause_in_full_screen: fullScreen.checked,
      max_cpu_celsius: hot.checked ? Number(celsius.value) : 0,
      window: windowed.checked ? `${from.value}-${to.value}` : "",
    }),
  };
}

/// How fast backups and the blobs this PC holds for others may go out.
export function networkSection(overview: Overview): Section {
  const rate = overview.settings.bandwidth_bytes_per_second;
  const limited = h("input", { type: "checkbox", id: "bandwidth-limit", test: "bandwidth-limit" });
  limited.checked = rate != null;
  const speed = h("input", {
    type: "number",
    id: "bandwidth",
    min: "0.1",
    step: "0.1",
    test: "bandwidth",
    "aria-label": "Megabytes per second",
  });
  speed.value = String(rate ? megabytesPerSecond(rate) : 1);
  const element = h(
    "div",
    {},
    h("div", { class: "row" }, h("label", { class: "inline", for: "bandwidth-limit" }, limited, " Limit upload speed to"), speed, "MB/s"),
    h("p", { class: "hint" }, "For backups and what this PC sends to others. 1 MB/s is about 8 Mbit/s."),
  );
  return {
    element,
    read: () => ({ bandwidth_bytes_per_second: limited.checked ? Math.max(1, bytesPerSecond(Number(speed.value))) : 0 }),
  };
}

/// The wizard's "How much?" page: the disk for what the user lends, the processor for compute.
export function quotaSection(overview: Overview, disks: Disk[], storage: boolean, compute: boolean): Section {
  const disk = storage ? diskSection(overview, disks) : null;
  const processor = compute ? computeSection(overview) : null;
  const element = h(
    "div",
    { class: "quota" },
    disk && h("fieldset", {}, h("legend", {}, "Disk space to lend"), disk.element),
    processor && h("fieldset", {}, h("legend", {}, "Processor time to lend"), processor.element),
  );
  return { element, read: () => ({ ...disk?.read(), ...processor?.read() }) };
}
