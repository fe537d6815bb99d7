// Playground: chat with any model the user may call, through POST /console/api/playground/chat (the normal relay,
// charged to the wallet). Streaming reads the SSE body with fetch + ReadableStream: answer text, reasoning /
// progress (delta.reasoning_content of think:, heavy:, deepsearch:) as it arrives, and deepsearch citations
// (annotations, and URLs in the answer) as links.
import { API, get, requestInit } from "../api.js";
import { field, fill, h, linkify, safeUrl, toast } from "../dom.js";
import { count, usd } from "../format.js";
import { refreshBalance } from "../session.js";
import { readEvents } from "../sse.js";

const CHAT_KINDS = new Set(["chat", "compound"]);

let turns = 0;

/** The answer with each cited span (an annotation's start_index..end_index, ending in its [n] marker) as a link:
 * to the source itself when it is a web address, else to its entry in the sources list. Spans that do not
 * match the text (offsets counted differently, overlapping) are left as plain text. */
function citedText(text, spans, citations) {
  const out = [];
  let at = 0;
  for (const c of [...spans].sort((a, b) => a.start_index - b.start_index)) {
    if (c.start_index < at || c.end_index > text.length || !/\]$/.test(text.slice(c.start_index, c.end_index))) continue;
    const marker = text.slice(c.start_index, c.end_index).match(/\[[^\[\]]*\]$/)[0];
    const markerStart = c.end_index - marker.length;
    out.push(...linkify(text.slice(at, markerStart)));
    const n = citations.findIndex((x) => x.url === c.url) + 1;
    const href = safeUrl(c.url) || (n ? `#${c.listId}-${n}` : null);
    out.push(href ? h("a.citation", { href, title: c.title || c.url, rel: "noopener noreferrer" }, marker) : marker);
    at = c.end_index;
  }
  out.push(...linkify(text.slice(at)));
  return out;
}

/** One assistant turn on screen: reasoning (collapsible), answer, sources, usage line. */
function assistantTurn(model) {
  const reasoningText = h("div.reasoning-text");
  const reasoning = h("details.reasoning", { open: true, hidden: true }, h("summary", "Reasoning / progress"), reasoningText);
  const content = h("div.msg-content");
  const sources = h("ol.sources", { hidden: true, id: "sources-" + ++turns });
  const meta = h("div.msg-meta.muted");
  const el = h("div.msg.msg-assistant", h("div.msg-role", "assistant · ", h("span.model-name", model)), reasoning, content, sources, meta);
  const state = { text: "", reasoning: "", citations: [], spans: [] };
  return {
    el,
    state,
    addText(piece) {
      state.text += piece;
      fill(content, linkify(state.text));
    },
    addReasoning(piece) {
      state.reasoning += piece;
      reasoning.hidden = false;
      reasoningText.textContent = state.reasoning;
    },
    addCitations(annotations) {
      for (const a of annotations || []) {
        const c = a && (a.url_citation || a);
        if (!c || !c.url) continue;
        if (Number.isInteger(c.start_index) && Number.isInteger(c.end_index)) state.spans.push({ ...c, listId: sources.id });
        if (state.citations.some((x) => x.url === c.url)) continue;
        state.citations.push(c);
        sources.hidden = false;
        // http(s) sources are links; others (a local corpus's corpus://...) are shown as text.
        const href = safeUrl(c.url);
        const label = c.title ? [c.title, " — "] : [];
        const target = href ? h("a", { href, target: "_blank", rel: "noopener noreferrer" }, c.url) : h("code", c.url);
        sources.append(h("li.source", { id: `${sources.id}-${state.citations.length}` }, label, target));
      }
    },
    done(usage, cost) {
      reasoning.open = false;
      fill(content, citedText(state.text, state.spans, state.citations));
      const parts = [];
      if (usage) parts.push(`${count(usage.prompt_tokens)} in / ${count(usage.completion_tokens)} out tokens`);
      if (cost !== null && cost !== undefined && cost !== "") parts.push(usd(Number(cost)));
      meta.textContent = parts.join(" · ");
      el.classList.add("msg-done");
    },
    fail(message) {
      el.classList.add("msg-failed");
      el.append(h("p.error", message));
    },
  };
}

export async function render(ctx) {
  const models = await get("/models");
  const ids = models.data.filter((m) => CHAT_KINDS.has(m.kind)).map((m) => m.id);
  const model = h("input", { id: "pg-model", name: "model", list: "pg-models", required: true, value: ids[0] || "", autocomplete: "off" });
  const datalist = h("datalist", { id: "pg-models" }, ids.map((id) => h("option", { value: id })));
  const system = h("textarea", { id: "pg-system", rows: 2, placeholder: "Optional system prompt" });
  const stream = h("input", { type: "checkbox", id: "pg-stream", checked: true });
  const prompt = h("textarea", { id: "pg-prompt", rows: 3, required: true, placeholder: "Ask something… (Ctrl+Enter sends)" });
  const send = h("button.primary", { type: "submit", id: "pg-send" }, "Send");
  const stop = h("button", { type: "button", id: "pg-stop", disabled: true }, "Stop");
  const clear = h("button", { type: "button", id: "pg-clear" }, "New chat");
  const thread = h("div.thread", { id: "pg-thread" });
  const form = h(
    "form.card.playground-form",
    { id: "pg-form" },
    h("div.form-grid", field("Model", h("span", model, datalist), "think:, heavy: and deepsearch: in front of a model show their reasoning"), field("System", system)),
    field("Message", prompt),
    h("div.actions", send, stop, clear, h("label.check", stream, " Stream")),
  );
  fill(ctx.main, h("h1", "Playground"), thread, form);

  let history = [];
  let controller = null;
  prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clear.addEventListener("click", () => {
    history = [];
    thread.replaceChildren();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    history.push({ role: "user", content: text });
    thread.append(h("div.msg.msg-user", h("div.msg-role", "you"), h("div.msg-content", text)));
    prompt.value = "";
    const turn = assistantTurn(model.value);
    thread.append(turn.el);
    const messages = system.value.trim() ? [{ role: "system", content: system.value.trim() }, ...history] : history;
    const body = { model: model.value.trim(), messages, stream: stream.checked };
    if (stream.checked) body.stream_options = { include_usage: true };
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    try {
      await (stream.checked ? streamChat(body, turn, controller.signal) : oneChat(body, turn, controller.signal));
      history.push({ role: "assistant", content: turn.state.text });
      refreshBalance(ctx.me).catch(() => {});
    } catch (err) {
      history.pop();
      turn.fail(err.name === "AbortError" ? "Stopped." : err.message);
      if (err.name !== "AbortError") toast(err.message, "error");
    } finally {
      controller = null;
      send.disabled = false;
      stop.disabled = true;
    }
  });
}

async function errorOf(resp) {
  try {
    const data = await resp.json();
    return new Error((data.error && data.error.message) || `HTTP ${resp.status}`);
  } catch {
    return new Error(`HTTP ${resp.status}`);
  }
}

function start(body, signal) {
  const init = requestInit("POST", body);
  init.signal = signal;
  init.headers.Accept = body.stream ? "text/event-stream" : "application/json";
  return fetch(API + "/playground/chat", init);
}

async function streamChat(body, turn, signal) {
  const resp = await start(body, signal);
  if (!resp.ok) throw await errorOf(resp);
  let usage = null;
  let failure = null;
  await readEvents(resp.body, (ev) => {
    if (ev.data === "[DONE]") return;
    let chunk;
    try {
      chunk = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (chunk.error) {
      failure = chunk.error.message || "the stream failed";
      return;
    }
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices || []) {
      const d = choice.delta || {};
      if (d.reasoning_content) turn.addReasoning(d.reasoning_content);
      if (d.content) turn.addText(d.content);
      if (d.annotations) turn.addCitations(d.annotations);
    }
  });
  if (failure) throw new Error(failure);
  turn.done(usage, resp.headers.get("x-omnirelay-cost"));
}

async function oneChat(body, turn, signal) {
  const resp = await start(body, signal);
  if (!resp.ok) throw await errorOf(resp);
  const data = await resp.json();
  const msg = (data.choices && data.choices[0] && data.choices[0].message) || {};
  if (msg.reasoning_content) turn.addReasoning(msg.reasoning_content);
  turn.addText(msg.content || "");
  turn.addCitations(msg.annotations);
  turn.done(data.usage, resp.headers.get("x-omnirelay-cost"));
}
