// Overview: the balance, the user's tokens and the last 24 hours at a glance, with links to the detail pages.
import { get } from "../api.js";
import { fill, h } from "../dom.js";
import { count, usd } from "../format.js";

function stat(label, value, href, id) {
  return h("a.stat", { href }, h("span.stat-label", label), h("span.stat-value", { id }, value));
}

export async function render(ctx) {
  const now = Math.floor(Date.now() / 1000);
  const [keys, series] = await Promise.all([
    get("/keys"),
    get("/usage/series", { bucket: "hour", since: now - 86400, by: "model" }),
  ]);
  const sum = (field) => series.series.reduce((t, s) => t + s[field].reduce((a, b) => a + b, 0), 0);
  const me = ctx.me;
  fill(
    ctx.main,
    h("h1", "Overview"),
    h(
      "p.muted",
      `Signed in as ${me.email}`,
      me.team ? ` · team ${me.team.name}` : "",
      ` · group ${me.group} (price ×${me.multiplier})`,
    ),
    h(
      "div.stats",
      stat(`Balance (${me.wallet} wallet)`, usd(me.balance_usd), "/console/wallet", "overview-balance"),
      stat("Tokens", count(keys.data.length), "/console/tokens", "overview-keys"),
      stat("Requests, last 24 h", count(sum("requests")), "/console/usage", "overview-requests"),
      stat("Spend, last 24 h", usd(sum("spend_usd")), "/console/usage", "overview-spend"),
    ),
    h(
      "p",
      "Create a token on the ",
      h("a", { href: "/console/tokens" }, "Tokens"),
      " page and use it with any OpenAI or Anthropic SDK, or try a model in the ",
      h("a", { href: "/console/playground" }, "Playground"),
      ".",
    ),
  );
}
