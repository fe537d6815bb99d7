// Sign in: email and password -> POST /console/api/login; the answer carries the CSRF token for later calls.
import { post, setCsrfToken } from "../api.js";
import { field, fill, h } from "../dom.js";

export function render(ctx) {
  const email = h("input", { type: "email", name: "email", id: "signin-email", autocomplete: "username", required: true });
  const password = h("input", {
    type: "password", name: "password", id: "signin-password", autocomplete: "current-password", required: true,
  });
  const error = h("p.error", { id: "signin-error", role: "alert" });
  const button = h("button.primary", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h(
    "form.card.signin",
    { on: { submit: onSubmit } },
    h("h1", "Sign in"),
    h("p.muted", "Use the account your omnirelay admin gave you."),
    field("Email", email),
    field("Password", password),
    error,
    button,
  );

  async function onSubmit(event) {
    event.preventDefault();
    error.textContent = "";
    button.disabled = true;
    try {
      const answer = await post("/login", { email: email.value.trim(), password: password.value });
      setCsrfToken(answer.csrf_token);
      password.value = "";
      await ctx.refreshMe();
      const here = location.pathname.replace(/^\/console\/?/, "");
      ctx.navigate(here, true);
    } catch (err) {
      error.textContent = err.status === 429 ? "Too many attempts; try again later." : err.message;
    } finally {
      button.disabled = false;
    }
  }

  fill(ctx.main, h("div.center", form));
  email.focus();
}
