// Invalid models for the checker, each with the one diagnostic it must produce. The base model is
// valid; each case replaces one line of it (or appends text) so the error's position is known.
export const BASE = `model m {
  vocab = 256
  context = 64
  width = 32
  layers = 2
  heads = 4
  kv_heads = 2
  mlp_width = 64
  attention attn { qk_norm = none  rope = rope(base = 10000) }
  mlp ffn { activation = swiglu }
  block {
    h = h + attn(rmsnorm(h))
    h = h + ffn(rmsnorm(h))
  }
  precision = bf16
  train { batch = 2  seq_len = 16  steps = 10 }
}
`;

/** [name, line to replace (1-based; [from, to] for several; 0 appends before the last '}'), new text] */
export type CheckCase = [string, number | [number, number], string];

export const CHECK_CASES: CheckCase[] = [
  ["unknown property with suggestion", 4, "  widht = 32"],
  ["missing required size", 5, ""],
  ["width not divisible by heads", 6, "  heads = 5"],
  ["heads not a multiple of kv_heads", 7, "  kv_heads = 3"],
  ["zero layers", 5, "  layers = 0"],
  ["fractional layers", 5, "  layers = 2.5"],
  ["unknown name in expression", 8, "  mlp_width = 2 * widht"],
  ["self-referential property", 8, "  mlp_width = mlp_width * 2"],
  ["unknown activation", 10, "  mlp ffn { activation = swiglo }"],
  ["unknown key in attention", 9, "  attention attn { qk_nrom = none }"],
  ["unknown section", 0, "  decoder { layers = 2 }"],
  ["unknown component in block", 12, "    h = h + atn(rmsnorm(h))"],
  ["unknown tensor in block", 12, "    h = x + attn(rmsnorm(h))"],
  ["block never assigns h", [12, 13], "    y = h + attn(rmsnorm(h))"],
  ["unknown precision mode", 15, "  precision = fp16"],
  ["unknown scaling", 15, "  precision { mode = fp8  scaling = delayd(history = 16) }"],
  ["blockwise with fp8dpa", 15, "  precision { mode = fp8dpa  scaling = blockwise }"],
  ["override unknown component", 15, "  precision { mode = fp8  override atn.qk { mode = bf16 } }"],
  ["override wrong gemm", 15, "  precision { mode = fp8  override ffn.qk { mode = bf16 } }"],
  ["override layer out of range", 15, "  precision { mode = fp8  override layers 0, 2 { mode = bf16 } }"],
  ["conflicting overrides", 15, "  precision { mode = fp8  override layers 0..1 { mode = bf16 } override layers 1 { mode = fp8dpa } }"],
  ["seq_len beyond context", 16, "  train { batch = 2  seq_len = 128  steps = 10 }"],
  ["tokenizer larger than vocab", 16, "  train { tokenizer = gpt2  steps = 10 }"],
  ["warmup longer than run", 16, "  train { steps = 10  schedule = wsd(warmup = 10) }"],
  ["negative learning rate", 16, "  train { optimizer = adamw(lr = -1) }"],
  ["positional argument to a constructor", 16, "  train { optimizer = adamw(0.001) }"],
  ["unknown optimizer", 16, "  train { optimizer = adam(lr = 1e-3) }"],
  ["duplicate property", 0, "  width = 64"],
  ["bad gain", 12, "    h = h + attn(rmsnorm(h, gain = frozen))"],
  ["xielu alpha_n below beta", 10, "  mlp ffn { activation = xielu(alpha_n = 0.4, beta = 0.5) }"],
  ["odd head_dim with rope", 6, "  heads = 4  head_dim = 7"],
  ["unknown probe tensor", 0, "  probes { tensors = [qkv, mlp_outt] }"],
  ["block section inside block", 13, "    train { steps = 1 }"],
];

export function applyCase(c: CheckCase): string {
  const lines = BASE.split("\n");
  const [, line, text] = c;
  if (line === 0) lines.splice(lines.lastIndexOf("}"), 0, text);
  else if (Array.isArray(line)) lines.splice(line[0] - 1, line[1] - line[0] + 1, text);
  else lines[line - 1] = text;
  return lines.join("\n");
}
