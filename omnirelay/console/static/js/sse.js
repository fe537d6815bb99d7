// A Server-Sent Events parser for fetch + ReadableStream (EventSource cannot POST): feed it decoded text as it
// arrives, in pieces cut anywhere, and it returns the complete events so far. Follows the WHATWG event-stream
// rules that matter here: lines end in \n, \r\n or \r; `data:` lines of one event are joined with \n; a blank line
// ends the event; lines starting with ':' are comments; one space after the colon is dropped.

export class SSEParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.pendingCR = false;
  }

  /** Feed text; returns [{event, data}] for every event completed by it. */
  feed(text) {
    const out = [];
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1); // \r\n cut between two pieces
    this.pendingCR = false;
    this.buffer += text;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      this.line(this.buffer.slice(start, i), out);
      if (c === "\r") {
        if (i + 1 === this.buffer.length) this.pendingCR = true;
        else if (this.buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  line(line, out) {
    if (line === "") {
      if (this.data.length) out.push({ event: this.event || "message", data: this.data.join("\n") });
      this.data = [];
      this.event = "";
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
  }
}

/** Read an SSE response body, calling onEvent({event, data}) for each event as it arrives. */
export async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  for (;;) {
    const { value, done } = await reader.read();
    const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
    for (const ev of parser.feed(text)) onEvent(ev);
    if (done) break;
  }
  for (const ev of parser.feed("\n\n")) onEvent(ev); // an event the stream ended without its blank line
}
