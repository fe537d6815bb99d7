// The console shell: who is signed in, the navigation, and which page module draws /console/<page>. Every page
// is a module exporting `render(ctx)`; ctx = {main, me, navigate, refreshMe}.
import { ApiError, get, post, setCsrfToken, setUnauthorizedHandler } from "./api.js";
import { fill, h, toast } from "./dom.js";
import { usd } from "./format.js";

const BASE = "/console";

// path -> [title, module, admin only]
const PAGES = {
  "": ["Overview", "./pages/overview.js", false],
  tokens: ["Tokens", "./pages/tokens.js", false],
  usage: ["Usage", "./pages/usage.js", false],
  requests: ["Request log", "./pages/requests.js", false],
  models: ["Models & prices", "./pages/models.js", false],
  playground: ["Playground", "./pages/playground.js", false],
  wallet: ["Wallet", "./pages/wallet.js", false],
  channels: ["Channels", "./pages/channels.js", true],
  "admin/users": ["Users", "./pages/admin_users.js", true],
  "admin/teams": ["Teams", "./pages/admin_teams.js", true],
  "admin/groups": ["Groups", "./pages/admin_groups.js", true],
  "admin/codes": ["Codes", "./pages/admin_codes.js", true],
};

let me = null;

function pagePath() {
  let p = location.pathname;
  if (p.startsWith(BASE)) p = p.slice(BASE.length);
  return p.replace(/^\/+|\/+$/g, "").replace(/\.html$/, "").replace(/^index$/, "");
}

export function navigate(path, replace = false) {
  const url = BASE + (path ? "/" + path : "");
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  route();
}

async function refreshMe() {
  try {
    me = await get("/me");
    setCsrfToken(me.csrf_token);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) throw err;
    me = null;
  }
  drawChrome();
  return me;
}

function navLink(path, title) {
  const current = pagePath() === path;
  return h("a", { href: BASE + (path ? "/" + path : ""), "aria-current": current ? "page" : null }, title);
}

function drawChrome() {
  const nav = document.getElementById("nav");
  const who = document.getElementById("whoami");
  if (!me) {
    fill(nav);
    fill(who);
    return;
  }
  const links = Object.entries(PAGES).filter(([, [, , admin]]) => !admin || me.role === "admin");
  const user = links.filter(([, [, , admin]]) => !admin).map(([p, [t]]) => navLink(p, t));
  const admin = links.filter(([, [, , a]]) => a).map(([p, [t]]) => navLink(p, t));
  fill(nav, h("div.nav-group", user), admin.length ? h("div.nav-group.nav-admin", h("span.nav-label", "Admin"), admin) : null);
  fill(
    who,
    h("span.who-email", me.email),
    h("span.badge", me.role),
    h("span.who-balance", { id: "who-balance", title: `${me.wallet} wallet` }, usd(me.balance_usd)),
    h("button.link", { type: "button", id: "logout", on: { click: logout } }, "Sign out"),
  );
}

async function logout() {
  try {
    await post("/logout");
  } catch (err) {
    toast(err.message, "error");
  }
  me = null;
  setCsrfToken("");
  navigate("", true);
}

async function route() {
  const main = document.getElementById("app");
  document.getElementById("nav").classList.remove("open");
  if (me === null) await refreshMe();
  else drawChrome();
  shownPath = location.pathname;
  const path = pagePath();
  const ctx = { main, me, navigate, refreshMe };
  if (!me) {
    document.title = "Sign in · omnirelay";
    const mod = await import("./pages/signin.js");
    return mod.render(ctx);
  }
  const page = PAGES[path];
  if (!page) {
    fill(main, h("h1", "Not found"), h("p", "There is no console page here. ", h("a", { href: BASE }, "Back to the overview")));
    return;
  }
  const [title, module, adminOnly] = page;
  if (adminOnly && me.role !== "admin") {
    // Members never see admin pages: back to the overview with a note (the API answers 403 regardless).
    toast("That page is for admins only.", "error");
    navigate("", true);
    return;
  }
  document.title = `${title} · omnirelay`;
  main.dataset.page = path || "overview";
  fill(main, h("p.muted", "Loading…"));
  try {
    const mod = await import(module);
    await mod.render(ctx);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    fill(main, h("h1", title), h("p.error", err.message || String(err)));
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || a.target || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE) || url.pathname.startsWith(BASE + "/api/")) return;
  if (url.pathname.startsWith(BASE + "/vendor/") || /\.\w+$/.test(url.pathname)) return;
  if (url.hash && url.pathname === location.pathname) return; // an anchor on this page (a citation's source)
  event.preventDefault();
  history.pushState(null, "", url.pathname + url.search);
  route();
});
// Back/forward between pages; a fragment change (a citation's #source anchor) also fires popstate: not a new page.
let shownPath = location.pathname;
window.addEventListener("popstate", () => {
  if (location.pathname !== shownPath) route();
});
setUnauthorizedHandler(() => {
  if (me !== null) {
    me = null;
    toast("Your session has ended; please sign in again.", "error");
    route();
  }
});
document.getElementById("nav-toggle").addEventListener("click", (e) => {
  const open = document.getElementById("nav").classList.toggle("open");
  e.currentTarget.setAttribute("aria-expanded", String(open));
});
route();
