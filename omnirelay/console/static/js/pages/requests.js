// Request log: one row per request (newest first), paged with the API's cursor, filtered by time, key, model,
// status and channel; the CSV link exports the same filter.
import { API, get, query } from "../api.js";
import { field, fill, h, table } from "../dom.js";
import { count, localToEpoch, ms, time, usd } from "../format.js";

const PAGE = 50;

export async function render(ctx) {
  const { data: keys } = await get("/keys");
  const inputs = {
    since: h("input", { type: "datetime-local", name: "since", id: "filter-since" }),
    until: h("input", { type: "datetime-local", name: "until", id: "filter-until" }),
    key_id: h("select", { name: "key_id", id: "filter-key" }, h("option", { value: "" }, "any"), keys.map((k) => h("option", { value: k.id }, k.name))),
    model: h("input", { name: "model", id: "filter-model", placeholder: "any" }),
    status: h("input", { name: "status", id: "filter-status", placeholder: "any, e.g. 200 or 429" }),
    channel: h("input", { name: "channel", id: "filter-channel", placeholder: "any" }),
  };
  const csv = h("a.button", { id: "requests-csv", download: "requests.csv" }, "Export CSV");
  const form = h(
    "form.card.toolbar",
    { id: "request-filters", on: { submit: (e) => { e.preventDefault(); cursors = [""]; load(); } } },
    field("From", inputs.since),
    field("To", inputs.until),
    field("Key", inputs.key_id),
    field("Model", inputs.model),
    field("Status", inputs.status),
    field("Channel", inputs.channel),
    h("div.actions", h("button.primary", { type: "submit" }, "Filter"), csv),
  );
  const list = h("div", { id: "request-list" });
  const prev = h("button", { type: "button", id: "page-prev", on: { click: () => { cursors.pop(); load(); } } }, "← Newer");
  const next = h("button", { type: "button", id: "page-next", on: { click: () => { cursors.push(nextCursor); load(); } } }, "Older →");
  const pageInfo = h("span.muted", { id: "page-info" });
  fill(ctx.main, h("h1", "Request log"), form, list, h("div.pager", prev, pageInfo, next));

  let cursors = [""]; // cursors[i] = where page i starts
  let nextCursor = null;
  await load();

  function filters() {
    return {
      since: localToEpoch(inputs.since.value),
      until: localToEpoch(inputs.until.value),
      key_id: inputs.key_id.value,
      model: inputs.model.value.trim(),
      status: inputs.status.value.trim(),
      channel: inputs.channel.value.trim(),
    };
  }

  async function load() {
    const f = filters();
    csv.href = API + "/requests.csv" + query(f);
    const page = await get("/requests", { ...f, limit: PAGE, cursor: cursors[cursors.length - 1] });
    nextCursor = page.next_cursor;
    prev.disabled = cursors.length <= 1;
    next.disabled = !nextCursor;
    pageInfo.textContent = `Page ${cursors.length}`;
    fill(list, table(
      [
        { label: "Time", cls: "nowrap", value: (r) => time(r.created_at) },
        { label: "Key", value: (r) => h("span.key-name", r.key_name ?? r.key_id ?? "—") },
        { label: "Model", cls: "nowrap", value: (r) => h("span.model-name", r.model_requested, r.model_used && r.model_used !== r.model_requested ? h("span.muted", " → ", r.model_used) : null) },
        { label: "Channel", value: (r) => r.channel ?? "—" },
        { label: "Status", value: (r) => h(Number(r.status) >= 400 ? "span.badge.bad" : "span.badge.good", String(r.status)) },
        { label: "Tokens in / out", cls: "num", value: (r) => `${count(r.input_tokens)} / ${count(r.output_tokens)}` },
        { label: "Cost", cls: "num", value: (r) => usd(r.cost_usd) },
        { label: "Latency", cls: "num", value: (r) => ms(r.latency_ms) },
        { label: "TTFT", cls: "num", value: (r) => (r.stream ? ms(r.ttft_ms) : "—") },
        { label: "Attempts", cls: "num", value: (r) => count(r.attempts) },
        { label: "Request id", value: (r) => h("code.request-id", r.request_id) },
      ],
      page.data,
      "No requests match.",
    ));
    list.dataset.loads = String(Number(list.dataset.loads || 0) + 1); // tells a watcher a new answer is shown
  }
}
