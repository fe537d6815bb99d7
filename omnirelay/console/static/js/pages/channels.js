// Channels (admin): each upstream's health, breaker state, latency and recent errors, and a button that sends it
// one small test request.
import { get, post } from "../api.js";
import { fill, h, table, toast } from "../dom.js";
import { ms, time } from "../format.js";

const BREAKER_CLASS = { closed: "good", half_open: "warn", open: "bad" };

export async function render(ctx) {
  const list = h("div", { id: "channel-list" });
  const refresh = h("button", { type: "button", id: "channels-refresh", on: { click: () => load() } }, "Refresh");
  fill(ctx.main, h("div.title-row", h("h1", "Channels"), refresh), list);
  await load();

  async function load() {
    const { data } = await get("/admin/channels");
    fill(list, table(
      [
        { label: "Upstream", value: (c) => h("strong.channel-name", c.upstream) },
        { label: "Provider", value: (c) => c.provider },
        { label: "Models", value: (c) => h("span.model-list", c.models.join(", ")) },
        { label: "Health", value: (c) => h(c.healthy ? "span.badge.good" : "span.badge.bad", c.healthy ? "healthy" : "unhealthy") },
        { label: "Breaker", value: (c) => h(`span.badge.${BREAKER_CLASS[c.breaker] || "warn"}`, c.breaker.replace("_", "-")) },
        { label: "Latency p50 / p90", cls: "num", value: (c) => (c.latency_ms ? `${ms(c.latency_ms.p50)} / ${ms(c.latency_ms.p90)}` : "—") },
        { label: "Recent errors", value: recentErrors },
        { label: "", value: testCell },
      ],
      data,
      "No upstreams configured.",
    ));
  }

  function recentErrors(c) {
    if (!c.recent_errors.length) return h("span.muted", "none");
    return h("ul.errors", c.recent_errors.slice(0, 5).map((e) => h("li", h("span.muted", time(e.at), " "), String(e.status), ": ", e.message)));
  }

  function testCell(c) {
    const result = h("span.test-result");
    const button = h("button", { type: "button", "data-upstream": c.upstream }, "Test this channel");
    button.addEventListener("click", async () => {
      button.disabled = true;
      result.textContent = "testing…";
      result.className = "test-result muted";
      try {
        const r = await post(`/admin/channels/${encodeURIComponent(c.upstream)}/test`, {});
        result.textContent = r.ok ? `ok · ${ms(r.latency_ms)}` : `failed (${r.status}): ${r.error}`;
        result.className = "test-result " + (r.ok ? "ok" : "error");
      } catch (err) {
        result.textContent = err.message;
        result.className = "test-result error";
        toast(err.message, "error");
      } finally {
        button.disabled = false;
      }
    });
    return h("div.row-actions", button, result);
  }
}
