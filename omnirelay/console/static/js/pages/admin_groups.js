// Groups (admin): model groups and their price multipliers (a user's or team's group multiplies every price).
import { get, patch, post } from "../api.js";
import { attempt, field, fill, h, table, toast } from "../dom.js";
import { numberOrNull } from "../format.js";

export async function render(ctx) {
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_.-]+" });
  const multiplier = h("input", { name: "multiplier", type: "number", min: 0, step: "any", required: true, value: "1" });
  const list = h("div", { id: "group-list" });
  const form = h(
    "form.card.inline-form",
    { id: "create-group", on: { submit: onCreate } },
    h("h2", "New group"),
    field("Name", name),
    field("Price multiplier", multiplier),
    h("button.primary", { type: "submit" }, "Create group"),
  );
  fill(ctx.main, h("h1", "Groups"), form, list);
  await reload();

  async function reload() {
    const { data } = await get("/admin/groups");
    fill(list, table(
      [
        { label: "Name", value: (g) => h("span.group-name", g.name) },
        { label: "Multiplier", value: multiplierCell },
      ],
      data,
      "No groups.",
    ));
  }

  function multiplierCell(g) {
    const input = h("input.narrow", { type: "number", min: 0, step: "any", value: String(g.multiplier), "aria-label": `multiplier of ${g.name}` });
    const save = h("button", { type: "button" }, "Save");
    save.addEventListener("click", async () => {
      await attempt(async () => {
        await patch(`/admin/groups/${encodeURIComponent(g.name)}`, { multiplier: numberOrNull(input.value) });
        toast("Saved.");
      });
    });
    return h("div.row-actions", input, save);
  }

  async function onCreate(event) {
    event.preventDefault();
    await attempt(async () => {
      await post("/admin/groups", { name: name.value.trim(), multiplier: numberOrNull(multiplier.value) });
      form.reset();
      await reload();
    });
  }
}
