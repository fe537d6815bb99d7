// Usage: spend, tokens and requests over time (hour or day buckets) by model or by key, as stacked bar charts,
// the same totals as a table, and latency / time-to-first-token percentiles.
import { get } from "../api.js";
import { loadChartLibrary, stackedBars } from "../charts.js";
import { field, fill, h, table } from "../dom.js";
import { bucketLabel, count, ms, usd } from "../format.js";

const RANGES = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };
const METRICS = [
  ["spend_usd", "Spend (USD)"],
  ["tokens", "Tokens"],
  ["requests", "Requests"],
];

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

export async function render(ctx) {
  const admin = ctx.me.role === "admin";
  const bucket = h("select", { name: "bucket", id: "usage-bucket" }, h("option", { value: "hour" }, "Hour"), h("option", { value: "day" }, "Day"));
  const by = h("select", { name: "by", id: "usage-by" }, h("option", { value: "model" }, "Model"), h("option", { value: "key" }, "Key"));
  const range = h("select", { name: "range", id: "usage-range" }, Object.keys(RANGES).map((r) => h("option", { value: r }, "Last " + r)));
  const all = admin ? h("input", { type: "checkbox", name: "all", id: "usage-all" }) : null;
  const controls = h(
    "form.card.toolbar",
    { on: { change: draw, submit: (e) => { e.preventDefault(); draw(); } } },
    field("Bucket", bucket),
    field("By", by),
    field("Range", range),
    all ? h("label.check", all, " All users") : null,
  );
  const chartNote = h("p.muted", { id: "charts-status" });
  const charts = h("div.charts", METRICS.map(([m]) => h("div.chart-box", h("canvas", { id: "chart-" + m.replace("_usd", "") }))));
  const totals = h("div", { id: "usage-totals" });
  const latency = h("div", { id: "usage-latency" });
  fill(ctx.main, h("h1", "Usage"), controls, chartNote, charts, h("h2", "Totals"), totals, h("h2", "Latency percentiles"), latency);
  await draw();

  async function draw() {
    // No `until`: the server's "now" (a request made this very second is after a browser-side floor(now)).
    const since = Math.floor(Date.now() / 1000) - RANGES[range.value];
    const scope = all && all.checked ? { all: 1 } : {};
    const [series, lat, Chart] = await Promise.all([
      get("/usage/series", { bucket: bucket.value, since, by: by.value, ...scope }),
      get("/usage/latency", { since, by: "model", ...scope }),
      loadChartLibrary(),
    ]);
    const labels = series.buckets.map((t) => bucketLabel(t, series.bucket));
    if (Chart) {
      chartNote.textContent = "";
      charts.hidden = false;
      for (const [metric, title] of METRICS) {
        stackedBars(Chart, document.getElementById("chart-" + metric.replace("_usd", "")), labels, series.series, metric, title);
      }
    } else {
      charts.hidden = true;
      chartNote.textContent = "Charts are unavailable (the chart library is not installed: run `make serve`); the tables below have the same numbers.";
    }
    const rows = series.series.map((s) => ({ name: s.name, spend: sum(s.spend_usd), tokens: sum(s.tokens), requests: sum(s.requests) }));
    fill(totals, table(
      [
        { label: by.value === "key" ? "Key" : "Model", value: (r) => h("span.series-name", r.name) },
        { label: "Requests", cls: "num", value: (r) => count(r.requests) },
        { label: "Tokens", cls: "num", value: (r) => count(r.tokens) },
        { label: "Spend", cls: "num", value: (r) => usd(r.spend) },
      ],
      rows,
      "No usage in this range.",
    ));
    const pct = (p) => (p ? `${ms(p.p50)} / ${ms(p.p90)} / ${ms(p.p99)}` : "—");
    fill(latency, table(
      [
        { label: "Model", value: (r) => h("span.series-name", r.name) },
        { label: "Requests", cls: "num", value: (r) => count(r.requests) },
        { label: "Latency p50 / p90 / p99", cls: "num", value: (r) => pct(r.latency_ms) },
        { label: "Time to first token p50 / p90 / p99", cls: "num", value: (r) => pct(r.ttft_ms) },
      ],
      lat.data,
      "No requests in this range.",
    ));
  }
}
