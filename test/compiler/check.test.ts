// Semantic errors: each case of check-cases.ts must produce exactly this text (file:line:col,
// message, source line, caret and notes), and no model. Reviewed by hand when the cases were written.
import { describe, expect, it } from "vitest";
import { check } from "../../compiler/check.js";
import { formatDiagnostic } from "../../grammar/diagnostics.js";
import { BASE, CHECK_CASES, applyCase } from "./check-cases.js";

const EXPECTED: [string, string][] = [
  ["unknown property with suggestion", "m.fog:1:7: error: model 'm' needs 'width'\n1 | model m {\n  |       ^\nm.fog:4:3: error: unknown model property 'widht'\n4 |   widht = 32\n  |   ^^^^^\n  = did you mean 'width'?"],
  ["missing required size", "m.fog:1:7: error: model 'm' needs 'layers'\n1 | model m {\n  |       ^"],
  ["width not divisible by heads", "m.fog:6:11: error: width 32 is not divisible by heads 5\n6 |   heads = 5\n  |           ^\n  = set head_dim explicitly, or choose heads dividing width\nm.fog:7:14: error: heads 5 is not a multiple of kv_heads 2\n7 |   kv_heads = 2\n  |              ^"],
  ["heads not a multiple of kv_heads", "m.fog:7:14: error: heads 4 is not a multiple of kv_heads 3\n7 |   kv_heads = 3\n  |              ^"],
  ["zero layers", "m.fog:5:12: error: 'layers' must be at least 1, found 0\n5 |   layers = 0\n  |            ^"],
  ["fractional layers", "m.fog:5:12: error: 'layers' must be a whole number, found 2.5\n5 |   layers = 2.5\n  |            ^^^"],
  ["unknown name in expression", "m.fog:8:19: error: unknown name 'widht'\n8 |   mlp_width = 2 * widht\n  |                   ^^^^^\n  = did you mean 'width'?"],
  ["self-referential property", "m.fog:8:15: error: 'mlp_width' is defined in terms of itself\n8 |   mlp_width = mlp_width * 2\n  |               ^^^^^^^^^"],
  ["unknown activation", "m.fog:10:26: error: 'activation' must be one of gelu, silu, swiglu, geglu, smooth_swiglu, xielu; found 'swiglo'\n10 |   mlp ffn { activation = swiglo }\n   |                          ^^^^^^\n   = did you mean 'swiglu'?"],
  ["unknown key in attention", "m.fog:9:20: error: unknown key 'qk_nrom' in attention 'attn'\n9 |   attention attn { qk_nrom = none }\n  |                    ^^^^^^^\n  = did you mean 'qk_norm'?"],
  ["unknown section", "m.fog:17:3: error: unknown section 'decoder' in model 'm'\n17 |   decoder { layers = 2 }\n   |   ^^^^^^^"],
  ["unknown component in block", "m.fog:12:13: error: unknown component or op 'atn'\n12 |     h = h + atn(rmsnorm(h))\n   |             ^^^\n   = did you mean 'attn'?"],
  ["unknown tensor in block", "m.fog:12:9: error: unknown tensor 'x'\n12 |     h = x + attn(rmsnorm(h))\n   |         ^\n   = did you mean 'h'?"],
  ["block never assigns h", "m.fog:11:3: error: the block never assigns 'h', its output (e.g. 'h = h + attn(h)')\n11 |   block {\n   |   ^^^^^"],
  ["unknown precision mode", "m.fog:15:15: error: 'precision' must name a recipe or a mode (bf16, fp8, fp8dpa); found 'fp16'\n15 |   precision = fp16\n   |               ^^^^"],
  ["unknown scaling", "m.fog:15:37: error: 'scaling' must be delayed(...), current(...) or blockwise(...); found 'delayd(...)'\n15 |   precision { mode = fp8  scaling = delayd(history = 16) }\n   |                                     ^^^^^^^^^^^^^^^^^^^^\n   = did you mean 'delayed'?"],
  ["blockwise with fp8dpa", "m.fog:15:3: error: blockwise scaling cannot be combined with fp8dpa: FP8 attention needs one scale per tensor (use delayed or current scaling, or mode = fp8)\n15 |   precision { mode = fp8dpa  scaling = blockwise }\n   |   ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"],
  ["override unknown component", "m.fog:15:36: error: unknown component 'atn'\n15 |   precision { mode = fp8  override atn.qk { mode = bf16 } }\n   |                                    ^^^^^^\n   = did you mean 'attn'?"],
  ["override wrong gemm", "m.fog:15:36: error: 'ffn' has no GEMM 'qk' (its GEMMs: fc1, fc2)\n15 |   precision { mode = fp8  override ffn.qk { mode = bf16 } }\n   |                                    ^^^^^^"],
  ["override layer out of range", "m.fog:15:46: error: layer 2 does not exist (the model has layers 0..1)\n15 |   precision { mode = fp8  override layers 0, 2 { mode = bf16 } }\n   |                                              ^"],
  ["conflicting overrides", "m.fog:15:64: error: conflicting precision overrides: 'mode' is set differently by the override at m.fog:15:27 for the same GEMMs\n15 |   precision { mode = fp8  override layers 0..1 { mode = bf16 } override layers 1 { mode = fp8dpa } }\n   |                                                                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"],
  ["seq_len beyond context", "m.fog:16:22: error: seq_len 128 exceeds the model's context 64\n16 |   train { batch = 2  seq_len = 128  steps = 10 }\n   |                      ^^^^^^^"],
  ["tokenizer larger than vocab", "m.fog:16:23: error: the gpt2 tokenizer produces 50257 token ids, more than the model's vocab 256\n16 |   train { tokenizer = gpt2  steps = 10 }\n   |                       ^^^^"],
  ["warmup longer than run", "m.fog:16:34: error: warmup (10 steps) must be shorter than the run (10 steps)\n16 |   train { steps = 10  schedule = wsd(warmup = 10) }\n   |                                  ^^^^^^^^^^^^^^^^"],
  ["negative learning rate", "m.fog:16:34: error: 'lr' must be greater than 0, found -1\n16 |   train { optimizer = adamw(lr = -1) }\n   |                                  ^^"],
  ["positional argument to a constructor", "m.fog:16:29: error: adamw(...) takes named arguments only (write adamw(name = value))\n16 |   train { optimizer = adamw(0.001) }\n   |                             ^^^^^"],
  ["unknown optimizer", "m.fog:16:23: error: 'optimizer' must be adamw(...); found 'adam(...)'\n16 |   train { optimizer = adam(lr = 1e-3) }\n   |                       ^^^^^^^^^^^^^^^\n   = did you mean 'adamw'?"],
  ["duplicate property", "m.fog:17:3: error: 'width' is already set at m.fog:4:3\n17 |   width = 64\n   |   ^^^^^"],
  ["bad gain", "m.fog:12:36: error: 'gain' must be a number (trainable, initial value), frozen(value) or none; found 'frozen'\n12 |     h = h + attn(rmsnorm(h, gain = frozen))\n   |                                    ^^^^^^"],
  ["xielu alpha_n below beta", "m.fog:10:26: error: xielu needs alpha_n > beta (α_n = β + softplus(ρ_n)); found alpha_n 0.4, beta 0.5\n10 |   mlp ffn { activation = xielu(alpha_n = 0.4, beta = 0.5) }\n   |                          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"],
  ["odd head_dim with rope", "m.fog:9:43: error: rope needs an even head_dim, found 7\n9 |   attention attn { qk_norm = none  rope = rope(base = 10000) }\n  |                                           ^^^^^^^^^^^^^^^^^^"],
  ["unknown probe tensor", "m.fog:17:28: error: 'tensors' must be one of activation, qkv_input, qkv, q, k, mlp_intermediate, mlp_post_act, mlp_out; found 'mlp_outt'\n17 |   probes { tensors = [qkv, mlp_outt] }\n   |                            ^^^^^^^^\n   = did you mean 'mlp_out'?"],
  ["block section inside block", "m.fog:13:5: error: unexpected section 'train' inside block (statements look like 'h = h + attn(h)')\n13 |     train { steps = 1 }\n   |     ^^^^^"],
];

function diagnose(text: string): string {
  const r = check("m.fog", { readFile: () => text });
  if (r.diagnostics.some((d) => d.severity === "error")) expect(r.model).toBeUndefined();
  return r.diagnostics.map((d) => formatDiagnostic(d, text)).join("\n");
}

describe("checker diagnostics", () => {
  it("the base model is valid", () => {
    expect(diagnose(BASE)).toBe("");
  });

  it("has an expectation for every case", () => {
    expect(EXPECTED.map(([n]) => n)).toEqual(CHECK_CASES.map(([n]) => n));
  });

  it.each(CHECK_CASES.map((c, i) => [c[0], c, EXPECTED[i][1]] as const))("%s", (_, c, want) => {
    const got = diagnose(applyCase(c));
    expect(got).not.toBe("");
    expect(got).toBe(want);
  });
});
