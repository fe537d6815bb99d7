// Tokens: the user's API keys. Create (the secret is shown once, with a copy button), list, disable/enable,
// delete, and edit name, models, limits, credit and expiry.
import { del, get, patch, post } from "../api.js";
import { attempt, confirmed, field, fill, h, table, toast } from "../dom.js";
import { epochToLocal, localToEpoch, numberOrNull, splitList, time, usd } from "../format.js";

/** The form fields of a key (create and edit share them); `key` fills them in for editing. */
function keyFields(key) {
  const v = (x) => (x === null || x === undefined ? "" : String(x));
  const inputs = {
    name: h("input", { name: "name", required: true, maxlength: 200, value: v(key && key.name) }),
    models: h("input", { name: "models", placeholder: "all models", value: key ? key.models.join(", ") : "" }),
    rpm: h("input", { name: "rpm", type: "number", min: 0, step: 1, placeholder: "no limit", value: v(key && key.rpm) }),
    tpm: h("input", { name: "tpm", type: "number", min: 0, step: 1, placeholder: "no limit", value: v(key && key.tpm) }),
    credit_usd: h("input", {
      name: "credit_usd", type: "number", min: 0, step: "any", placeholder: "wallet only", value: v(key && key.credit_usd),
    }),
    expires_at: h("input", { name: "expires_at", type: "datetime-local", value: epochToLocal(key && expiryEpoch(key.expires_at)) }),
  };
  const fields = [
    field("Name", inputs.name),
    field("Models", inputs.models, "Comma-separated names or patterns (gpt-*); empty: every model"),
    field("Requests / minute", inputs.rpm),
    field("Tokens / minute", inputs.tpm),
    field("Own credit cap (USD)", inputs.credit_usd, "Empty: draws on the wallet only"),
    field("Expires", inputs.expires_at, "Empty: never"),
  ];
  const values = () => {
    const expiry = localToEpoch(inputs.expires_at.value);
    return {
      name: inputs.name.value.trim(),
      models: splitList(inputs.models.value),
      rpm: numberOrNull(inputs.rpm.value),
      tpm: numberOrNull(inputs.tpm.value),
      credit_usd: numberOrNull(inputs.credit_usd.value),
      expires_at: expiry === "" ? null : expiry,
    };
  };
  return { inputs, fields, values };
}

function expiryEpoch(value) {
  if (value === null || value === undefined || value === "") return "";
  if (typeof value === "number") return value;
  const t = new Date(value).getTime();
  return Number.isNaN(t) ? "" : Math.floor(t / 1000);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

function secretBox(created) {
  const secret = h("code.secret", { id: "new-key-secret" }, created.secret);
  const status = h("span.muted", { id: "copy-status" });
  const copy = h(
    "button",
    {
      type: "button",
      id: "copy-secret",
      on: {
        click: async () => {
          const ok = await copyText(created.secret);
          if (!ok) window.getSelection().selectAllChildren(secret); // select it for Ctrl+C
          status.textContent = ok ? "Copied." : "Selected: press Ctrl+C to copy.";
        },
      },
    },
    "Copy",
  );
  return h(
    "div.card.secret-box",
    { role: "alert" },
    h("strong", "Token created: ", created.name),
    h("p", "Copy the secret now: it is shown only once and cannot be recovered."),
    h("div.secret-row", secret, copy, status),
  );
}

export async function render(ctx) {
  const notice = h("div", { id: "token-notice" });
  const editor = h("div", { id: "token-editor" });
  const list = h("div", { id: "token-list" });
  const create = keyFields(null);
  const form = h(
    "form.card.form-grid",
    { id: "create-token", on: { submit: onCreate } },
    h("h2", "New token"),
    create.fields,
    h("div.actions", h("button.primary", { type: "submit" }, "Create token")),
  );
  fill(ctx.main, h("h1", "Tokens"), notice, form, editor, h("h2", "Your tokens"), list);
  await reload();

  async function reload() {
    const { data } = await get("/keys");
    fill(list, table(
      [
        { label: "Name", value: (k) => h("span.key-name", k.name) },
        { label: "Key", value: (k) => h("code", k.prefix + "…") },
        { label: "Models", value: (k) => (k.models.length ? k.models.join(", ") : "all") },
        { label: "RPM / TPM", value: (k) => `${k.rpm ?? "∞"} / ${k.tpm ?? "∞"}` },
        { label: "Spent / cap", cls: "num", value: (k) => `${usd(k.spent_usd)} / ${k.credit_usd === null ? "wallet" : usd(k.credit_usd)}` },
        { label: "Created", value: (k) => time(k.created_at) },
        { label: "Expires", value: (k) => (k.expires_at ? time(k.expires_at) : "never") },
        { label: "Status", value: (k) => h(k.disabled ? "span.badge.bad" : "span.badge.good", k.disabled ? "disabled" : "active") },
        { label: "", value: actions },
      ],
      data,
      "No tokens yet: create one above.",
    ));
    for (const row of list.querySelectorAll("tbody tr")) row.classList.add("token-row");
  }

  function actions(key) {
    return h(
      "div.row-actions",
      h("button", { type: "button", "data-action": "edit", on: { click: () => edit(key) } }, "Edit"),
      h(
        "button",
        { type: "button", "data-action": "toggle", on: { click: () => update(key, { disabled: !key.disabled }) } },
        key.disabled ? "Enable" : "Disable",
      ),
      h("button.danger", { type: "button", "data-action": "delete", on: { click: (e) => remove(key, e.currentTarget) } }, "Delete"),
    );
  }

  async function onCreate(event) {
    event.preventDefault();
    const body = Object.fromEntries(Object.entries(create.values()).filter(([, v]) => v !== null && !(Array.isArray(v) && !v.length)));
    await attempt(async () => {
      const created = await post("/keys", body);
      fill(notice, secretBox(created));
      form.reset();
      await reload();
    });
  }

  function edit(key) {
    const f = keyFields(key);
    const close = () => fill(editor);
    fill(
      editor,
      h(
        "form.card.form-grid",
        {
          id: "edit-token",
          on: {
            submit: async (event) => {
              event.preventDefault();
              if (await update(key, f.values())) close();
            },
          },
        },
        h("h2", "Edit token ", h("span.key-name", key.name)),
        f.fields,
        h("div.actions", h("button.primary", { type: "submit" }, "Save"), h("button", { type: "button", on: { click: close } }, "Cancel")),
      ),
    );
    f.inputs.name.focus();
  }

  async function update(key, changes) {
    return attempt(async () => {
      await patch(`/keys/${encodeURIComponent(key.id)}`, changes);
      toast("Saved.");
      await reload();
    });
  }

  async function remove(key, button) {
    if (!confirmed(button)) return; // the first click arms the button, the second deletes
    await attempt(async () => {
      await del(`/keys/${encodeURIComponent(key.id)}`);
      toast("Deleted.");
      await reload();
    });
  }
}
