// Small DOM helpers shared by every page: element builder, notices, time formatting.

import { describeError } from "./api.js";

// h("li", {class: "x", dataset: {seq: 1}, onclick}, "text", child, ...)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function $(selector, root = document) {
  const el = root.querySelector(selector);
  if (!el) throw new Error(`missing element ${selector}`);
  return el;
}

export function formatClock(ts) {
  if (!ts) return "";
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function formatDate(ts) {
  if (!ts) return "";
  return new Date(ts).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function formatOffset(ms) {
  if (typeof ms !== "number" || ms < 0) return "";
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function formatMoney(amount, currency) {
  if (typeof amount !== "number") return "";
  try {
    return new Intl.NumberFormat([], { style: "currency", currency: currency || "USD" }).format(amount);
  } catch {
    return `${amount.toFixed(2)} ${currency || ""}`.trim();
  }
}

export function since(ts) {
  if (!ts) return "";
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

// The page's message area: one line for errors (role="alert", read at once) and a polite
// status line for progress. Errors stay until replaced or cleared.
export class Notices {
  constructor(root) {
    this.alert = $(".notice-error", root);
    this.status = $(".notice-status", root);
    this._timer = null;
  }

  error(errorOrText) {
    const text = typeof errorOrText === "string" ? errorOrText : describeError(errorOrText);
    // The role="alert" element stays in the page (empty is invisible) so that screen
    // readers announce each new text.
    this.alert.textContent = text;
  }

  clearError() {
    this.error("");
  }

  info(text, { fade = 0 } = {}) {
    clearTimeout(this._timer);
    this.status.textContent = text;
    if (fade) this._timer = setTimeout(() => { this.status.textContent = ""; }, fade);
  }

  // A server `status` event: errors and warnings visibly, info politely.
  serverStatus(event) {
    const text = event.message || event.code || "";
    if (event.level === "error") this.error(`Server: ${text}`);
    else this.info(event.level === "warning" ? `Warning: ${text}` : text, { fade: 8000 });
  }
}

// Runs `task` now and then every `ms` while the page is open, never two at a time;
// `now()` runs it again as soon as the current run (if any) is over.
export function poll(task, ms) {
  let stopped = false;
  let running = false;
  let again = false;
  let timer = null;
  const run = async () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = true;
    clearTimeout(timer);
    try {
      await task();
    } catch (error) {
      console.error(error);
    } finally {
      running = false;
      if (!stopped) timer = setTimeout(run, again ? 0 : ms);
      again = false;
    }
  };
  run();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    now: run,
  };
}
