// Models and prices: every model the gateway serves, with per-million-token prices already multiplied by the
// user's group multiplier.
import { get } from "../api.js";
import { fill, h, table } from "../dom.js";
import { price } from "../format.js";

export async function render(ctx) {
  const models = await get("/models");
  const filter = h("input", { type: "search", id: "model-filter", placeholder: "Filter models", "aria-label": "Filter models" });
  const list = h("div", { id: "model-list" });
  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const rows = models.data.filter((m) => !needle || m.id.toLowerCase().includes(needle));
    fill(list, table(
      [
        { label: "Model", value: (m) => h("code.model-name", m.id) },
        { label: "Kind", value: (m) => m.kind },
        { label: "Input", cls: "num", value: (m) => price(m.input_usd_per_mtok) },
        { label: "Cached input", cls: "num", value: (m) => price(m.cached_input_usd_per_mtok) },
        { label: "Output", cls: "num", value: (m) => price(m.output_usd_per_mtok) },
        { label: "Batch input", cls: "num", value: (m) => price(m.batch_input_usd_per_mtok) },
        { label: "Batch output", cls: "num", value: (m) => price(m.batch_output_usd_per_mtok) },
      ],
      rows,
      "No model matches.",
    ));
  };
  filter.addEventListener("input", draw);
  fill(
    ctx.main,
    h("h1", "Models & prices"),
    h("p.muted", { id: "model-multiplier" }, `USD per million tokens, with your group's multiplier ×${models.multiplier} applied. — means not priced.`),
    filter,
    list,
  );
  draw();
}
