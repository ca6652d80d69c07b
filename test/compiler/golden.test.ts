// Golden IR: the forward and training-step graphs of every tiny example, printed as text and
// compared with the committed files in test/golden/ir/. A refactor that changes no graph shows no
// diff; a change that does shows exactly which nodes moved (tinygrad's process replay, in miniature).
import { readdirSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { printGraph } from "../../compiler/ir-text.js";
import { compile } from "../../compiler/pipeline.js";

const tiny = readdirSync("examples").filter((f) => f.endsWith("-tiny.fog"));

describe("golden IR of the examples", () => {
  it("covers every architecture", () => expect(tiny.length).toBe(7));
  it.each(tiny)("%s", async (file) => {
    const r = compile(`examples/${file}`, { batch: 1, seqLen: 4 });
    expect(r.diagnostics).toEqual([]);
    const name = file.replace(/\.fog$/, "");
    await expect(printGraph(r.program!.forward)).toMatchFileSnapshot(`../golden/ir/${name}.forward.ir`);
    await expect(printGraph(r.program!.train)).toMatchFileSnapshot(`../golden/ir/${name}.train.ir`);
  });
});
