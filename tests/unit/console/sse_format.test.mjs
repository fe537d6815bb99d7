// Unit tests of the console's pure JS modules (SSE parsing, value formatting, the codes CSV), run with node's test
// runner by tests/unit/console/test_console_js.py.
import assert from "node:assert/strict";
import test from "node:test";

import { SSEParser } from "../../../omnirelay/console/static/js/sse.js";
import { count, localToEpoch, epochToLocal, ms, numberOrNull, price, splitList, usd } from "../../../omnirelay/console/static/js/format.js";
import { query, requestInit, setCsrfToken } from "../../../omnirelay/console/static/js/api.js";

const STREAM =
  'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n' +
  ': keep-alive comment\n\n' +
  'event: message\r\ndata: {"choices":[{"delta":{"content":"lo"}}]}\r\n\r\n' +
  "data: line one\ndata: line two\n\n" +
  "data: [DONE]\n\n";

const EXPECTED = [
  { event: "message", data: '{"choices":[{"delta":{"content":"Hel"}}]}' },
  { event: "message", data: '{"choices":[{"delta":{"content":"lo"}}]}' },
  { event: "message", data: "line one\nline two" },
  { event: "message", data: "[DONE]" },
];

test("SSE events parse the same whole and split at every offset", () => {
  assert.deepEqual(new SSEParser().feed(STREAM), EXPECTED);
  for (let cut = 0; cut <= STREAM.length; cut++) {
    const p = new SSEParser();
    const events = [...p.feed(STREAM.slice(0, cut)), ...p.feed(STREAM.slice(cut))];
    assert.deepEqual(events, EXPECTED, `cut at ${cut}`);
  }
});

test("SSE: one character at a time, a lone CR line end, a field without a colon", () => {
  const p = new SSEParser();
  const text = "data: a\r\rdata\n\nevent: error\ndata:{\"x\":1}\n\n";
  const events = [...text].flatMap((c) => p.feed(c));
  assert.deepEqual(events, [
    { event: "message", data: "a" },
    { event: "message", data: "" },
    { event: "error", data: '{"x":1}' },
  ]); // a bare `data` line is an event with empty data (WHATWG: the buffer is "\n" before the last one is cut)
});

test("an event without its closing blank line stays pending", () => {
  const p = new SSEParser();
  assert.deepEqual(p.feed("data: partial\n"), []);
  assert.deepEqual(p.feed("\n"), [{ event: "message", data: "partial" }]);
});

test("money, prices, counts and durations", () => {
  assert.equal(usd(12.5), "$12.50");
  assert.equal(usd(0), "$0.00");
  assert.equal(usd(0.000123), "$0.000123");
  assert.equal(usd(-3), "-$3.00");
  assert.equal(usd(0.65), "$0.65");
  assert.equal(usd(0.5), "$0.50");
  assert.equal(usd(0.00008), "$0.00008");
  assert.equal(usd(null), "—");
  assert.equal(price(2), "$2");
  assert.equal(price(0.15), "$0.15");
  assert.equal(price(null), "—");
  assert.equal(count(1234567), "1,234,567");
  assert.equal(ms(250.4), "250 ms");
  assert.equal(ms(1500), "1.50 s");
});

test("form values", () => {
  assert.deepEqual(splitList(" gpt-4.1, claude-*  o3 "), ["gpt-4.1", "claude-*", "o3"]);
  assert.deepEqual(splitList(""), []);
  assert.equal(numberOrNull(""), null);
  assert.equal(numberOrNull("  "), null);
  assert.equal(numberOrNull("60"), 60);
  assert.equal(numberOrNull("abc"), null);
  assert.equal(localToEpoch(""), "");
  const t = 1796190000; // a whole minute
  assert.equal(localToEpoch(epochToLocal(t)), t);
});

test("query strings skip empty filters; the CSRF header goes on non-GET only", () => {
  assert.equal(query({ a: 1, b: "", c: null, d: "x y" }), "?a=1&d=x+y");
  assert.equal(query({}), "");
  setCsrfToken("tok-123");
  assert.equal(requestInit("GET").headers["X-CSRF-Token"], undefined);
  const post = requestInit("POST", { name: "k" });
  assert.equal(post.headers["X-CSRF-Token"], "tok-123");
  assert.equal(post.body, '{"name":"k"}');
  assert.equal(requestInit("DELETE").headers["X-CSRF-Token"], "tok-123");
  assert.equal(requestInit("PATCH", {}).credentials, "same-origin");
});
