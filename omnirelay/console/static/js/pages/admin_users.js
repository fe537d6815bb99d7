// Users (admin): create, change role / team / group, disable, reset a password, top up, delete.
import { del, get, patch, post } from "../api.js";
import { attempt, confirmed, field, fill, h, panelForm, table, toast } from "../dom.js";
import { numberOrNull, time, usd } from "../format.js";

export async function render(ctx) {
  const list = h("div", { id: "user-list" });
  const panel = h("div", { id: "user-panel" });
  const [teams, groups] = await Promise.all([get("/admin/teams"), get("/admin/groups")]);
  const teamOptions = (selected) => [h("option", { value: "" }, "no team"), teams.data.map((t) => h("option", { value: t.id, selected: String(t.id) === String(selected) }, t.name))];
  const groupOptions = (selected) => groups.data.map((g) => h("option", { value: g.name, selected: g.name === selected }, `${g.name} (×${g.multiplier})`));
  const roleOptions = (selected) => ["member", "admin"].map((r) => h("option", { value: r, selected: r === selected }, r));

  const create = {
    email: h("input", { type: "email", name: "email", required: true }),
    password: h("input", { type: "password", name: "password", required: true, minlength: 8, autocomplete: "new-password" }),
    role: h("select", { name: "role" }, roleOptions("member")),
    team_id: h("select", { name: "team_id" }, teamOptions("")),
    group: h("select", { name: "group" }, groupOptions("default")),
  };
  const form = h(
    "form.card.form-grid",
    { id: "create-user", on: { submit: onCreate } },
    h("h2", "New user"),
    field("Email", create.email),
    field("Password", create.password),
    field("Role", create.role),
    field("Team", create.team_id),
    field("Group", create.group),
    h("div.actions", h("button.primary", { type: "submit" }, "Create user")),
  );
  fill(ctx.main, h("h1", "Users"), form, panel, list);
  await reload();

  async function reload() {
    const { data } = await get("/admin/users");
    const teamName = (id) => (teams.data.find((t) => String(t.id) === String(id)) || {}).name;
    fill(list, table(
      [
        { label: "Email", value: (u) => h("span.user-email", u.email) },
        { label: "Role", value: (u) => h("span.badge", u.role) },
        { label: "Team", value: (u) => (u.team ? u.team.name : teamName(u.team_id)) || "—" },
        { label: "Group", value: (u) => u.group },
        { label: "Balance", cls: "num", value: (u) => usd(u.balance_usd) },
        { label: "Status", value: (u) => h(u.disabled ? "span.badge.bad" : "span.badge.good", u.disabled ? "disabled" : "active") },
        { label: "", value: actions },
      ],
      data,
      "No users.",
    ));
  }

  function actions(u) {
    return h(
      "div.row-actions",
      h("button", { type: "button", on: { click: () => edit(u) } }, "Edit"),
      h("button", { type: "button", on: { click: () => topup(u) } }, "Top up"),
      h("button", { type: "button", on: { click: () => ledger(u) } }, "Ledger"),
      h("button", { type: "button", on: { click: () => save(u, { disabled: !u.disabled }) } }, u.disabled ? "Enable" : "Disable"),
      h("button.danger", { type: "button", on: { click: (e) => remove(u, e.currentTarget) } }, "Delete"),
    );
  }

  async function onCreate(event) {
    event.preventDefault();
    const body = { email: create.email.value.trim(), password: create.password.value, role: create.role.value, group: create.group.value };
    if (create.team_id.value) body.team_id = create.team_id.value;
    await attempt(async () => {
      await post("/admin/users", body);
      form.reset();
      toast("User created.");
      await reload();
    });
  }

  function edit(u) {
    const role = h("select", roleOptions(u.role));
    const team = h("select", teamOptions(u.team_id ?? (u.team && u.team.id) ?? ""));
    const group = h("select", groupOptions(u.group));
    const password = h("input", { type: "password", placeholder: "unchanged", autocomplete: "new-password" });
    panelForm(panel, {
      grid: true,
      title: ["Edit ", h("span.user-email", u.email)],
      fields: [field("Role", role), field("Team", team), field("Group", group), field("New password", password)],
      submit: "Save",
      onSubmit: () => {
        const changes = { role: role.value, team_id: team.value || null, group: group.value };
        if (password.value) changes.password = password.value;
        return save(u, changes);
      },
    });
  }

  function topup(u) {
    const amount = h("input", { type: "number", step: "any", required: true, placeholder: "USD (negative to deduct)" });
    const reason = h("input", { required: true, placeholder: "why (shown in the ledger)" });
    panelForm(panel, {
      grid: true,
      title: ["Top up ", h("span.user-email", u.email)],
      fields: [field("Amount (USD)", amount), field("Reason", reason)],
      submit: "Top up",
      onSubmit: () => attempt(async () => {
        const r = await post(`/admin/users/${encodeURIComponent(u.id)}/topup`, { amount_usd: numberOrNull(amount.value), reason: reason.value.trim() });
        toast(`Balance now ${usd(r.balance_usd)}.`);
        await reload();
      }),
    });
  }

  async function ledger(u) {
    const page = await get("/admin/ledger", { user_id: u.id });
    fill(panel, h(
      "div.card",
      { id: "user-ledger" },
      h("div.title-row", h("h2", "Ledger of ", h("span.user-email", u.email), " · ", usd(page.balance_usd)), h("button", { type: "button", on: { click: () => fill(panel) } }, "Close")),
      table(
        [
          { label: "When", value: (e) => time(e.created_at) },
          { label: "Kind", value: (e) => h("span.badge", e.kind) },
          { label: "Amount", cls: "num", value: (e) => usd(e.amount_usd) },
          { label: "Reason", value: (e) => e.reason ?? "" },
          { label: "By", value: (e) => e.actor ?? "" },
        ],
        page.ledger,
        "No entries.",
      ),
    ));
  }

  async function save(u, changes) {
    return attempt(async () => {
      await patch(`/admin/users/${encodeURIComponent(u.id)}`, changes);
      toast("Saved.");
      await reload();
    });
  }

  async function remove(u, button) {
    if (!confirmed(button)) return; // the first click arms the button, the second deletes
    await attempt(async () => {
      await del(`/admin/users/${encodeURIComponent(u.id)}`);
      toast("Deleted.");
      await reload();
    });
  }
}
