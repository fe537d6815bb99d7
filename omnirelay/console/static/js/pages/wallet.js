// Wallet: the balance keys draw from (the user's own or the team's), its ledger (every change, with who and
// why), and redeeming a code.
import { get, post } from "../api.js";
import { field, fill, h, table, toast } from "../dom.js";
import { time, usd } from "../format.js";
import { refreshBalance } from "../session.js";

export async function render(ctx) {
  const balance = h("span.stat-value", { id: "wallet-balance" });
  const code = h("input", { name: "code", id: "redeem-code", required: true, autocomplete: "off", placeholder: "XXXX-XXXX-XXXX" });
  const result = h("p", { id: "redeem-result", role: "status" });
  const form = h(
    "form.card.inline-form",
    { id: "redeem-form", on: { submit: onRedeem } },
    h("h2", "Redeem a code"),
    field("Code", code),
    h("button.primary", { type: "submit" }, "Redeem"),
    result,
  );
  const ledger = h("div", { id: "ledger" });
  const more = h("button", { type: "button", id: "ledger-more", hidden: true, on: { click: () => load(false) } }, "Older entries");
  const walletLabel = h("span.stat-label");
  fill(ctx.main, h("h1", "Wallet"), h("div.stats", h("div.stat", walletLabel, balance)), form, h("h2", "Ledger"), ledger, more);
  let rows = [];
  let cursor = null;
  await load(true);

  async function load(first) {
    const page = await get("/wallet", { limit: 50, cursor: first ? "" : cursor });
    walletLabel.textContent = page.wallet === "team" ? "Team balance" : "Balance";
    balance.textContent = usd(page.balance_usd);
    rows = first ? page.ledger : rows.concat(page.ledger);
    cursor = page.next_cursor;
    more.hidden = !cursor;
    fill(ledger, table(
      [
        { label: "When", value: (e) => time(e.created_at) },
        { label: "Kind", value: (e) => h("span.badge", e.kind) },
        { label: "Amount", cls: "num", value: (e) => h(e.amount_usd < 0 ? "span.neg" : "span.pos", usd(e.amount_usd)) },
        { label: "Reason", value: (e) => e.reason ?? "" },
        { label: "By", value: (e) => e.actor ?? "" },
      ],
      rows,
      "No entries yet.",
    ));
  }

  async function onRedeem(event) {
    event.preventDefault();
    result.textContent = "";
    result.className = "";
    try {
      const answer = await post("/redeem", { code: code.value.trim() });
      result.textContent = `Added ${usd(answer.amount_usd)}; balance now ${usd(answer.balance_usd)}.`;
      result.className = "ok";
      code.value = "";
      await Promise.all([load(true), refreshBalance(ctx.me)]);
    } catch (err) {
      const why = { 404: "Unknown code.", 409: "This code was already redeemed.", 410: "This code has expired." }[err.status];
      result.textContent = why || err.message;
      result.className = "error";
      toast(result.textContent, "error");
    }
  }
}
