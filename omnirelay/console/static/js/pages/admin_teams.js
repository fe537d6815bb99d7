// Teams (admin): create, rename, change group, top up the shared balance, delete.
import { del, get, patch, post } from "../api.js";
import { attempt, confirmed, field, fill, h, panelForm, table, toast } from "../dom.js";
import { numberOrNull, usd } from "../format.js";

export async function render(ctx) {
  const groups = await get("/admin/groups");
  const groupOptions = (selected) => groups.data.map((g) => h("option", { value: g.name, selected: g.name === selected }, `${g.name} (×${g.multiplier})`));
  const name = h("input", { name: "name", required: true });
  const group = h("select", { name: "group" }, groupOptions("default"));
  const list = h("div", { id: "team-list" });
  const panel = h("div", { id: "team-panel" });
  const form = h(
    "form.card.inline-form",
    { id: "create-team", on: { submit: onCreate } },
    h("h2", "New team"),
    field("Name", name),
    field("Group", group),
    h("button.primary", { type: "submit" }, "Create team"),
  );
  fill(ctx.main, h("h1", "Teams"), form, panel, list);
  await reload();

  async function reload() {
    const [{ data }, users] = await Promise.all([get("/admin/teams"), get("/admin/users")]);
    const members = (t) => users.data.filter((u) => String(u.team_id) === String(t.id)).length;
    fill(list, table(
      [
        { label: "Name", value: (t) => h("span.team-name", t.name) },
        { label: "Group", value: (t) => t.group ?? "default" },
        { label: "Members", cls: "num", value: members },
        { label: "Balance", cls: "num", value: (t) => usd(t.balance_usd) },
        { label: "", value: actions },
      ],
      data,
      "No teams yet.",
    ));
  }

  function actions(t) {
    return h(
      "div.row-actions",
      h("button", { type: "button", on: { click: () => edit(t) } }, "Edit"),
      h("button", { type: "button", on: { click: () => topup(t) } }, "Top up"),
      h("button.danger", { type: "button", on: { click: (e) => remove(t, e.currentTarget) } }, "Delete"),
    );
  }

  async function onCreate(event) {
    event.preventDefault();
    await attempt(async () => {
      await post("/admin/teams", { name: name.value.trim(), group: group.value });
      form.reset();
      toast("Team created.");
      await reload();
    });
  }

  function edit(t) {
    const newName = h("input", { required: true, value: t.name });
    const newGroup = h("select", groupOptions(t.group ?? "default"));
    panelForm(panel, {
      title: ["Edit ", h("span.team-name", t.name)],
      fields: [field("Name", newName), field("Group", newGroup)],
      submit: "Save",
      onSubmit: () => attempt(async () => {
        await patch(`/admin/teams/${encodeURIComponent(t.id)}`, { name: newName.value.trim(), group: newGroup.value });
        await reload();
      }),
    });
  }

  function topup(t) {
    const amount = h("input", { type: "number", step: "any", required: true, placeholder: "USD" });
    const reason = h("input", { required: true, placeholder: "why (shown in the ledger)" });
    panelForm(panel, {
      title: ["Top up ", h("span.team-name", t.name)],
      fields: [field("Amount (USD)", amount), field("Reason", reason)],
      submit: "Top up",
      onSubmit: () => attempt(async () => {
        const r = await post(`/admin/teams/${encodeURIComponent(t.id)}/topup`, { amount_usd: numberOrNull(amount.value), reason: reason.value.trim() });
        toast(`Team balance now ${usd(r.balance_usd)}.`);
        await reload();
      }),
    });
  }

  async function remove(t, button) {
    if (!confirmed(button)) return; // the first click arms the button, the second deletes
    await attempt(async () => {
      await del(`/admin/teams/${encodeURIComponent(t.id)}`);
      await reload();
    });
  }
}
