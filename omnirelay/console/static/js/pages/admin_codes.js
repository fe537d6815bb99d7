// Codes (admin): create a batch of one-time redemption codes (shown once here, downloadable as CSV), and list the
// codes of a batch with who redeemed them (the codes themselves are never shown again).
import { API, get, post, requestInit } from "../api.js";
import { attempt, field, fill, h, table, toast } from "../dom.js";
import { epochToLocal, localToEpoch, numberOrNull, time, usd } from "../format.js";

export async function render(ctx) {
  const inputs = {
    count: h("input", { type: "number", name: "count", min: 1, max: 1000, step: 1, required: true, value: "10" }),
    amount_usd: h("input", { type: "number", name: "amount_usd", min: 0, step: "any", required: true, value: "5" }),
    expires_at: h("input", { type: "datetime-local", name: "expires_at", value: epochToLocal(Math.floor(Date.now() / 1000) + 30 * 86400) }),
    note: h("input", { name: "note", placeholder: "what the batch is for" }),
  };
  const created = h("div", { id: "code-batch" });
  const batchFilter = h("input", { id: "code-batch-filter", placeholder: "batch id (empty: all)" });
  const list = h("div", { id: "code-list" });
  const form = h(
    "form.card.form-grid",
    { id: "create-codes", on: { submit: onCreate } },
    h("h2", "New batch"),
    field("How many", inputs.count),
    field("Amount each (USD)", inputs.amount_usd),
    field("Expires", inputs.expires_at, "Empty: never"),
    field("Note", inputs.note),
    h("div.actions", h("button.primary", { type: "submit" }, "Create codes")),
  );
  const filterForm = h("form.toolbar", { on: { submit: (e) => { e.preventDefault(); reload(); } } }, field("Batch", batchFilter), h("button", { type: "submit" }, "Show"));
  fill(ctx.main, h("h1", "Redemption codes"), form, created, h("h2", "Codes"), filterForm, list);
  await reload();

  function body() {
    const b = { count: numberOrNull(inputs.count.value), amount_usd: numberOrNull(inputs.amount_usd.value) };
    const exp = localToEpoch(inputs.expires_at.value);
    if (exp !== "") b.expires_at = exp;
    if (inputs.note.value.trim()) b.note = inputs.note.value.trim();
    return b;
  }

  async function onCreate(event) {
    event.preventDefault();
    await attempt(async () => {
      // One request with ?format=csv: the CSV is the batch (codes exist once; they are never shown again).
      const resp = await fetch(API + "/admin/codes?format=csv", requestInit("POST", body()));
      if (!resp.ok) {
        const data = await resp.json().catch(() => ({}));
        throw new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
      }
      const csv = await resp.text();
      const rows = parseCsv(csv);
      const url = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
      const batch = rows.length ? rows[0].batch_id || "" : "";
      fill(
        created,
        h(
          "div.card.secret-box",
          { role: "alert" },
          h("strong", `${rows.length} codes created.`),
          h("p", "Download or copy them now: the codes are shown only once."),
          h("a.button.primary", { href: url, download: `codes${batch ? "-" + batch : ""}.csv`, id: "codes-download" }, "Download CSV"),
          table(
            [
              { label: "Code", value: (r) => h("code.redeem-code", r.code) },
              { label: "Amount", cls: "num", value: (r) => usd(Number(r.amount_usd)) },
              { label: "Expires", value: (r) => (r.expires_at ? time(isNaN(r.expires_at) ? r.expires_at : Number(r.expires_at)) : "never") },
            ],
            rows,
          ),
        ),
      );
      await reload();
    });
  }

  async function reload() {
    const { data } = await get("/admin/codes", { batch_id: batchFilter.value.trim() });
    fill(list, table(
      [
        { label: "Id", value: (c) => h("code", String(c.id)) },
        { label: "Batch", value: (c) => h("code", String(c.batch_id)) },
        { label: "Amount", cls: "num", value: (c) => usd(c.amount_usd) },
        { label: "Expires", value: (c) => (c.expires_at ? time(c.expires_at) : "never") },
        { label: "Redeemed by", value: (c) => c.redeemed_by ?? "—" },
        { label: "Redeemed", value: (c) => (c.redeemed_at ? time(c.redeemed_at) : "—") },
        { label: "Note", value: (c) => c.note ?? "" },
      ],
      data,
      "No codes yet.",
    ));
  }
}

/** The codes CSV (header id,code,amount_usd,expires_at[,...]) -> objects; plain fields, no quoting expected, but
 * quoted fields are handled. */
export function parseCsv(text) {
  const lines = text.split(/\r?\n/).filter((l) => l.trim());
  if (!lines.length) return [];
  const cells = (line) => {
    const out = [];
    let cur = "";
    let quoted = false;
    for (let i = 0; i < line.length; i++) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cur += '"'; i++; }
        else if (c === '"') quoted = false;
        else cur += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { out.push(cur); cur = ""; }
      else cur += c;
    }
    out.push(cur);
    return out;
  };
  const header = cells(lines[0]);
  return lines.slice(1).map((l) => Object.fromEntries(cells(l).map((v, i) => [header[i], v])));
}
