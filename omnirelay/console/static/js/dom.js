// The only way pages build markup: elements and text nodes, never HTML strings, so a key or model name such as
// `<img src=x onerror=alert(1)>` is always shown as text.

/** h("tag.class1.class2", {attr: value, on: {click: fn}}, ...children) -> Element. Children are nodes or values
 * (rendered as text); null/undefined/false children are skipped; arrays are flattened. */
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "value" || name === "checked" || name === "disabled" || name === "selected") {
      el[name] = value;
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A table from column specs [{label, value: row => node|text, cls?}] and rows. */
export function table(columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p.muted.empty", empty);
  return h(
    "div.table-wrap",
    h(
      "table",
      h("thead", h("tr", columns.map((c) => h("th", { class: c.cls || null, scope: "col" }, c.label)))),
      h("tbody", rows.map((row) => h("tr", columns.map((c) => h("td", { class: c.cls || null }, c.value(row)))))),
    ),
  );
}

/** A labelled form field. `input` is an element (input/select/textarea). */
export function field(label, input, hint) {
  return h("label.field", h("span.field-label", label), input, hint ? h("span.hint", hint) : null);
}

let toastTimer = null;
/** A short status message at the bottom of the page (errors stay until the next one). */
export function toast(message, kind = "ok") {
  const el = document.getElementById("toast");
  if (!el) return;
  el.textContent = message;
  el.className = "toast toast-" + kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  if (kind !== "error") toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

/** Only http(s) URLs become links; anything else (javascript:, data:) stays text. */
export function safeUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

const URL_IN_TEXT = /https?:\/\/[^\s<>"')\]]+/g;

/** Text with every http(s) URL in it as a link (opening in a new tab, no referrer). */
export function linkify(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(URL_IN_TEXT)) {
    const url = m[0].replace(/[.,;:!?]+$/, "");
    const href = safeUrl(url);
    if (!href) continue;
    out.push(text.slice(last, m.index));
    out.push(h("a", { href, target: "_blank", rel: "noopener noreferrer" }, url));
    last = m.index + url.length;
  }
  out.push(text.slice(last));
  return out;
}

// Runs what a user's click or form asked for (``action``, async): its failure becomes an error toast instead of
// an unhandled rejection. Resolves to whether it succeeded.
export async function attempt(action) {
  try {
    await action();
    return true;
  } catch (err) {
    toast(err.message, "error");
    return false;
  }
}

// A delete button asks once more, with no window.confirm: the first click arms it ("Really delete?") and
// answers false, the second answers true.
export function confirmed(button) {
  if (button.dataset.armed) return true;
  button.dataset.armed = "1";
  button.textContent = "Really delete?";
  return false;
}

// A form in ``panel`` beside a table (an edit, a top-up): a heading of ``title`` (nodes), ``fields``, a submit
// button labelled ``submit`` and Cancel. ``onSubmit`` (async) resolves truthy when it is done (it toasts its own
// failures, see attempt): the panel is emptied then, as on Cancel. A "form-grid" form has its buttons in a row.
export function panelForm(panel, { title, fields, submit, onSubmit, grid = false }) {
  const close = () => fill(panel);
  const buttons = [h("button.primary", { type: "submit" }, submit), h("button", { type: "button", on: { click: close } }, "Cancel")];
  const submitted = async (e) => {
    e.preventDefault();
    if (await onSubmit()) close();
  };
  fill(panel, h(
    grid ? "form.card.form-grid" : "form.card.inline-form",
    { on: { submit: submitted } },
    h("h2", ...title),
    ...fields,
    ...(grid ? [h("div.actions", ...buttons)] : buttons),
  ));
}
