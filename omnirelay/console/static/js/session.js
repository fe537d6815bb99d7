// What pages share about the signed-in user beyond ctx.me: the header's balance after a change.
import { get } from "./api.js";
import { usd } from "./format.js";

/** Re-read the balance (after a redeem, a top-up or a playground call) into the header and return it. */
export async function refreshBalance(me) {
  const fresh = await get("/me");
  if (me) me.balance_usd = fresh.balance_usd;
  const el = document.getElementById("who-balance");
  if (el) el.textContent = usd(fresh.balance_usd);
  return fresh.balance_usd;
}
