// The pure helpers: MQTT matching and RFC 7396 merge patch.
import test from "node:test";
import assert from "node:assert/strict";
import { matchTopic, applyMergePatch } from "../tickwire.js";

test("matchTopic: exact, +, # and the quotes/# matches quotes rule", () => {
  const yes = [
    ["quotes/AAPL", "quotes/AAPL"],
    ["quotes/+", "quotes/AAPL"],
    ["+/AAPL", "quotes/AAPL"],
    ["quotes/#", "quotes/AAPL"],
    ["quotes/#", "quotes/AAPL/trades"],
    ["quotes/#", "quotes"],
    ["#", "quotes/AAPL"],
    ["#", "quotes"],
    ["quotes/+/trades", "quotes/AAPL/trades"],
    ["quotes/+", "quotes/"], // an empty last level is still a level
  ];
  const no = [
    ["quotes/AAPL", "quotes/MSFT"],
    ["quotes/+", "quotes"],
    ["quotes/+", "quotes/AAPL/trades"],
    ["quotes/#", "news/AAPL"],
    ["quotes/#", "quotesX"],
    ["quotes/#/x", "quotes/a/x"], // # only counts as the last level
    ["quotes/AAPL", "quotes/AAPL/trades"],
    ["quotes/AAPL/trades", "quotes/AAPL"],
  ];
  for (const [p, t] of yes) assert.equal(matchTopic(p, t), true, `${p} should match ${t}`);
  for (const [p, t] of no) assert.equal(matchTopic(p, t), false, `${p} should not match ${t}`);
});

test("applyMergePatch: the RFC 7396 appendix A examples", () => {
  const cases = [
    [{ a: "b" }, { a: "c" }, { a: "c" }],
    [{ a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    [{ a: "b" }, { a: null }, {}],
    [{ a: "b", b: "c" }, { a: null }, { b: "c" }],
    [{ a: ["b"] }, { a: "c" }, { a: "c" }],
    [{ a: "c" }, { a: ["b"] }, { a: ["b"] }],
    [{ a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    [{ a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    [["a", "b"], ["c", "d"], ["c", "d"]],
    [{ a: "b" }, ["c"], ["c"]],
    [{ a: "foo" }, null, null],
    [{ a: "foo" }, "bar", "bar"],
    [{ e: null }, { a: 1 }, { e: null, a: 1 }],
    [[1, 2], { a: "b", c: null }, { a: "b" }],
    [{}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
  ];
  for (const [target, patch, want] of cases) {
    assert.deepEqual(applyMergePatch(target, patch), want, `${JSON.stringify(target)} + ${JSON.stringify(patch)}`);
  }
});

test("applyMergePatch leaves the target untouched and keeps __proto__ a plain key", () => {
  const target = { q: { bid: 1, ask: 2 }, levels: [1, 2] };
  const frozen = JSON.stringify(target);
  const out = applyMergePatch(target, { q: { bid: 3 }, levels: [9] });
  assert.deepEqual(out, { q: { bid: 3, ask: 2 }, levels: [9] });
  assert.equal(JSON.stringify(target), frozen);

  const evil = applyMergePatch({}, JSON.parse('{"__proto__": {"polluted": true}}'));
  assert.equal(Object.getPrototypeOf(evil), Object.prototype);
  assert.deepEqual(Object.keys(evil), ["__proto__"]);
  assert.equal({}.polluted, undefined);
});
